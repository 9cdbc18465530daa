import MitmCore
import NIOCore
import NIOHTTP1
import Testing

@testable import MitmServer

/// `HTTPProxyHandler.fixFraming` and `serverRequestHead`: the framing headers we send always match
/// the body we send, whatever the client said and whatever an addon changed.
@Suite struct FramingTests {
    // MARK: - fixFraming

    @Test func knownBodyGetsItsContentLength() {
        var headers = HTTPHeaders()
        #expect(HTTPProxyHandler.fixFraming(&headers, bodyLength: 5, chunkedAllowed: true))
        #expect(headers["content-length"] == ["5"])
        #expect(!headers.contains(name: "transfer-encoding"))
    }

    @Test func emptyBodyNeedsNoContentLength() {
        var headers = HTTPHeaders()
        #expect(HTTPProxyHandler.fixFraming(&headers, bodyLength: 0, chunkedAllowed: true))
        #expect(headers.isEmpty)
    }

    @Test func wrongContentLengthIsCorrected() {
        // An addon replaced a 10-byte body with a 4-byte one and left the header alone.
        var headers: HTTPHeaders = ["Content-Length": "10", "Content-Type": "text/plain"]
        #expect(HTTPProxyHandler.fixFraming(&headers, bodyLength: 4, chunkedAllowed: true))
        #expect(headers["content-length"] == ["4"])
        #expect(headers["content-type"] == ["text/plain"])
    }

    @Test func correctContentLengthIsLeftAsIs() {
        var headers: HTTPHeaders = ["Content-Length": "4"]
        #expect(HTTPProxyHandler.fixFraming(&headers, bodyLength: 4, chunkedAllowed: true))
        #expect(headers.map(\.name) == ["Content-Length"])
    }

    @Test func chunkedKnownBodyStaysChunked() {
        var headers: HTTPHeaders = ["Transfer-Encoding": "chunked"]
        #expect(HTTPProxyHandler.fixFraming(&headers, bodyLength: 7, chunkedAllowed: true))
        #expect(headers["transfer-encoding"] == ["chunked"])
        #expect(!headers.contains(name: "content-length"))
    }

    @Test func streamedBodyWithoutLengthGetsChunked() {
        var headers = HTTPHeaders()
        #expect(HTTPProxyHandler.fixFraming(&headers, bodyLength: nil, chunkedAllowed: true))
        #expect(headers["transfer-encoding"] == ["chunked"])
    }

    @Test func streamedBodyWithDeclaredLengthKeepsIt() {
        var headers: HTTPHeaders = ["Content-Length": "1000"]
        #expect(HTTPProxyHandler.fixFraming(&headers, bodyLength: nil, chunkedAllowed: true))
        #expect(headers["content-length"] == ["1000"])
        #expect(!headers.contains(name: "transfer-encoding"))
    }

    @Test func streamedBodyForHTTP10IsCloseDelimited() {
        var headers = HTTPHeaders()
        #expect(!HTTPProxyHandler.fixFraming(&headers, bodyLength: nil, chunkedAllowed: false))
        #expect(headers.isEmpty)
    }

    // MARK: - serverRequestHead

    func request(
        version: String = "HTTP/1.1",
        method: String = "POST",
        headers: Headers = Headers(),
        host: String = "example.com",
        port: Int = 443
    ) -> HTTPRequest {
        HTTPRequest(
            method: method, scheme: "https", host: host, port: port, path: "/upload?x=1",
            httpVersion: version, headers: headers
        )
    }

    @Test func http2RequestToHTTP1ServerGetsHostAndContentLength() {
        let head = HTTPProxyHandler.serverRequestHead(
            request(version: "HTTP/2.0", headers: ["content-type": "application/json"]),
            bodyLength: 11,
            toHTTP2: false
        )
        #expect(head.version == .http1_1)
        #expect(head.method == .POST)
        #expect(head.uri == "/upload?x=1")
        #expect(head.headers["host"] == ["example.com"])
        #expect(head.headers["content-length"] == ["11"])
        #expect(head.headers["content-type"] == ["application/json"])
    }

    @Test func http2RequestHostCarriesANonDefaultPort() {
        let head = HTTPProxyHandler.serverRequestHead(
            request(version: "HTTP/2.0", method: "GET", port: 8443), bodyLength: 0, toHTTP2: false
        )
        #expect(head.headers["host"] == ["example.com:8443"])
        #expect(!head.headers.contains(name: "content-length"))
    }

    @Test func streamedHTTP2RequestToHTTP1ServerIsChunked() {
        let head = HTTPProxyHandler.serverRequestHead(request(version: "HTTP/2.0"), bodyLength: nil, toHTTP2: false)
        #expect(head.version == .http1_1)
        #expect(head.headers["transfer-encoding"] == ["chunked"])
    }

    @Test func streamedHTTP10RequestIsCloseDelimited() {
        let head = HTTPProxyHandler.serverRequestHead(
            request(version: "HTTP/1.0", headers: ["Host": "example.com"]), bodyLength: nil, toHTTP2: false
        )
        #expect(head.version == .http1_0)
        #expect(!head.headers.contains(name: "transfer-encoding"))
        #expect(!head.headers.contains(name: "content-length"))
    }

    @Test func bodyChangedByAnAddonGetsTheRightContentLength() {
        let head = HTTPProxyHandler.serverRequestHead(
            request(headers: ["Host": "example.com", "Content-Length": "100"]), bodyLength: 3, toHTTP2: false
        )
        #expect(head.headers["content-length"] == ["3"])
        #expect(head.headers["host"] == ["example.com"], "an HTTP/1 client's own Host is kept")
    }

    @Test func http1RequestKeepsItsHostHeader() {
        let head = HTTPProxyHandler.serverRequestHead(
            request(method: "GET", headers: ["Host": "alias.example"]), bodyLength: 0, toHTTP2: false
        )
        #expect(head.headers["host"] == ["alias.example"])
    }

    @Test func requestToHTTP2ServerGetsHostButNoFramingHeaders() {
        let head = HTTPProxyHandler.serverRequestHead(request(), bodyLength: nil, toHTTP2: true)
        #expect(head.version == .http1_1)
        #expect(head.headers["host"] == ["example.com"], "the HTTP/2 codec derives :authority from Host")
        #expect(!head.headers.contains(name: "transfer-encoding"))
        #expect(!head.headers.contains(name: "content-length"))
    }

    @Test func http10RequestToHTTP2ServerIsSentAsHTTP11() {
        let head = HTTPProxyHandler.serverRequestHead(request(version: "HTTP/1.0"), bodyLength: 0, toHTTP2: true)
        #expect(head.version == .http1_1)
    }

    @Test func connectRequestTargetIsTheAuthority() {
        var connect = request(method: "CONNECT")
        connect.authority = "example.com:443"
        connect.path = ""
        let head = HTTPProxyHandler.serverRequestHead(connect, bodyLength: 0, toHTTP2: false)
        #expect(head.method == .CONNECT)
        #expect(head.uri == "example.com:443")
    }

    // MARK: - describeParserError

    @Test func oversizedHeadIs431NamingTheLimitAndOption() {
        let (status, reason) = HTTPProxyHandler.describeParserError(.headerOverflow, limit: 4096)
        #expect(status == 431)
        #expect(reason.contains("4096"))
        #expect(reason.contains("header_size_limit"))
    }

    @Test(arguments: [
        (HTTPParserError.invalidMethod, "invalid HTTP method"),
        (.invalidURL, "invalid request target"),
        (.invalidHeaderToken, "invalid character in a header name"),
        (.invalidVersion, "invalid HTTP version"),
        (.invalidContentLength, "invalid Content-Length"),
        (.unexpectedContentLength, "invalid Content-Length"),
        (.invalidChunkSize, "invalid chunk size"),
        (.invalidEOFState, "malformed HTTP request"),
    ])
    func otherParserErrorsAre400WithAReason(error: HTTPParserError, text: String) {
        let (status, reason) = HTTPProxyHandler.describeParserError(error, limit: 1)
        #expect(status == 400)
        #expect(reason.hasPrefix("Bad request: "))
        #expect(reason.contains(text))
    }
}
