import NIOCore
import NIOHTTP1

/// An HTTP response as it crossed the proxy (mitmproxy's `http.Response`).
public struct HTTPResponse: Sendable, Hashable {
    public var httpVersion: String
    public var statusCode: Int
    public var reason: String
    public var headers: Headers
    /// The body exactly as received (still content-encoded). `nil` while not read, or when streamed.
    public var rawContent: ByteBuffer?
    public var trailers: Headers?
    public var timestampStart: Double
    public var timestampEnd: Double?
    /// When true, the body is forwarded as it arrives instead of being buffered on the flow.
    public var stream: Bool

    public init(
        httpVersion: String = "HTTP/1.1",
        statusCode: Int,
        reason: String? = nil,
        headers: Headers = Headers(),
        rawContent: ByteBuffer? = nil,
        timestampStart: Double = now()
    ) {
        self.httpVersion = httpVersion
        self.statusCode = statusCode
        self.reason = reason ?? HTTPResponseStatus(statusCode: statusCode).reasonPhrase
        self.headers = headers
        self.rawContent = rawContent
        self.trailers = nil
        self.timestampStart = timestampStart
        self.timestampEnd = nil
        self.stream = false
    }

    /// A complete response made by the proxy or an addon (mitmproxy's `Response.make`): the body is
    /// set and `content-length` matches it.
    public static func make(
        _ statusCode: Int = 200,
        body: String = "",
        headers: Headers = ["content-type": "text/plain; charset=utf-8"]
    ) -> HTTPResponse {
        var headers = headers
        headers["content-length"] = String(body.utf8.count)
        let ts = now()
        var response = HTTPResponse(statusCode: statusCode, headers: headers, rawContent: ByteBuffer(string: body), timestampStart: ts)
        response.timestampEnd = ts
        return response
    }

    /// Whether a response to `method` with this status carries no body (RFC 9112 §6.3).
    public static func hasNoBody(statusCode: Int, requestMethod: String) -> Bool {
        requestMethod == "HEAD" || (100..<200).contains(statusCode) || statusCode == 204 || statusCode == 304
    }
}
