import MitmCore
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import MitmServer

/// `ClientConnectionContext.makeRequest`: which server a request head is for, by request form, mode,
/// tunnel and TLS.
@Suite struct MakeRequestTests {
    let harness = TestServices()
    let loop = EmbeddedEventLoop()

    func context(_ mode: ProxyMode, keepHostHeader: Bool = false) -> ClientConnectionContext {
        if keepHostHeader {
            var options = ProxyOptions()
            options.keepHostHeader = true
            return TestServices(options: options).connection(on: loop, mode: mode)
        }
        return harness.connection(on: loop, mode: mode)
    }

    func head(
        _ method: HTTPMethod = .GET,
        _ uri: String,
        version: HTTPVersion = .http1_1,
        host: String? = nil
    ) -> HTTPRequestHead {
        var headers = HTTPHeaders()
        if let host { headers.add(name: "Host", value: host) }
        return HTTPRequestHead(version: version, method: method, uri: uri, headers: headers)
    }

    /// What a request resolved to, for compact comparisons.
    struct Resolved: Equatable, CustomStringConvertible {
        var scheme: String
        var host: String
        var port: Int
        var authority: String
        var path: String

        init(_ scheme: String, _ host: String, _ port: Int, _ authority: String, _ path: String) {
            (self.scheme, self.host, self.port, self.authority, self.path) = (scheme, host, port, authority, path)
        }

        init(_ request: HTTPRequest) {
            self.init(request.scheme, request.host, request.port, request.authority, request.path)
        }

        var description: String { "\(scheme) \(host) \(port) '\(authority)' '\(path)'" }
    }

    // MARK: - Absolute form (regular mode)

    @Test(arguments: [
        ("http://example.com/path?q=1", Resolved("http", "example.com", 80, "example.com", "/path?q=1")),
        ("http://example.com", Resolved("http", "example.com", 80, "example.com", "/")),
        ("http://example.com?q=1", Resolved("http", "example.com", 80, "example.com", "/?q=1")),
        ("https://example.com:8443/a", Resolved("https", "example.com", 8443, "example.com:8443", "/a")),
        ("HTTP://Example.com/", Resolved("http", "Example.com", 80, "Example.com", "/")),
        ("http://[::1]:8080/x", Resolved("http", "::1", 8080, "[::1]:8080", "/x")),
        ("http://127.0.0.1:3000/", Resolved("http", "127.0.0.1", 3000, "127.0.0.1:3000", "/")),
    ])
    func absoluteForm(uri: String, expected: Resolved) throws {
        let request = try context(.regular).makeRequest(head(.GET, uri), isHTTP2: false)
        #expect(Resolved(request) == expected)
        #expect(request.httpVersion == "HTTP/1.1")
    }

    @Test(arguments: [
        ("ftp://example.com/file", "Invalid request scheme 'ftp'"),
        ("http://:80/", "Invalid host"),
        ("http://example.com:99999/", "Invalid host"),
        ("index.html", "Invalid request target 'index.html'"),
        ("/index.html", "expected authority or absolute form, got origin form '/index.html'"),
        ("*", "expected authority or absolute form"),
    ])
    func invalidTargetsInRegularMode(uri: String, message: String) {
        let method: HTTPMethod = uri == "*" ? .OPTIONS : .GET
        #expect {
            try context(.regular).makeRequest(head(method, uri), isHTTP2: false)
        } throws: { error in
            guard let error = error as? ClientConnectionContext.RequestError else { return false }
            return error.message.contains(message)
        }
    }

    // MARK: - Origin form in a tunnel

    @Test func originFormInATunnelGoesToTheConnectTarget() throws {
        let connection = context(.regular)
        connection.tunnelTarget = Address(host: "example.com", port: 8443)
        let request = try connection.makeRequest(head(.GET, "/x?y", host: "example.com"), isHTTP2: false)
        #expect(Resolved(request) == Resolved("http", "example.com", 8443, "", "/x?y"))
        #expect(request.headers["host"] == "example.com", "the Host header is the client's")
    }

    @Test func originFormInsideClientTLSIsHTTPS() throws {
        let connection = context(.regular)
        connection.tunnelTarget = Address(host: "example.com", port: 443)
        connection.client.tls = TLSInfo(sni: "example.com", alpn: "h2")
        let request = try connection.makeRequest(head(.GET, "/"), isHTTP2: true)
        #expect(Resolved(request) == Resolved("https", "example.com", 443, "", "/"))
        #expect(request.httpVersion == "HTTP/2.0")
    }

    @Test func asteriskFormIsAcceptedForOptions() throws {
        let connection = context(.regular)
        connection.tunnelTarget = Address(host: "example.com", port: 80)
        let request = try connection.makeRequest(head(.OPTIONS, "*"), isHTTP2: false)
        #expect(request.path == "*")
        #expect(request.host == "example.com")
        #expect(throws: ClientConnectionContext.RequestError.self) {
            try connection.makeRequest(head(.GET, "*"), isHTTP2: false)
        }
    }

    @Test(arguments: [(HTTPVersion.http1_0, "HTTP/1.0"), (.http1_1, "HTTP/1.1")])
    func versionIsKept(version: HTTPVersion, expected: String) throws {
        let request = try context(.regular).makeRequest(head(.GET, "http://a.test/", version: version), isHTTP2: false)
        #expect(request.httpVersion == expected)
    }

    // MARK: - CONNECT

    @Test(arguments: [
        ("example.com:443", "example.com", 443),
        ("[2001:db8::1]:8443", "2001:db8::1", 8443),
        ("10.0.0.1:22", "10.0.0.1", 22),
    ])
    func connectAuthority(uri: String, host: String, port: Int) throws {
        let request = try context(.regular).makeRequest(head(.CONNECT, uri), isHTTP2: false)
        #expect(request.method == "CONNECT")
        #expect(request.host == host)
        #expect(request.port == port)
        #expect(request.authority == uri)
        #expect(request.path == "")
    }

    @Test(arguments: ["example.com", "example.com:", "example.com:http", "/path", ""])
    func connectWithoutAPortIsRefused(uri: String) {
        #expect {
            try context(.regular).makeRequest(head(.CONNECT, uri), isHTTP2: false)
        } throws: { error in
            (error as? ClientConnectionContext.RequestError)?.message.contains("expected host:port") == true
        }
    }

    // MARK: - Reverse mode

    @Test func reverseModeSendsEverythingToTheTargetAndRewritesHost() throws {
        let mode = try ProxyMode(parsing: "reverse:https://backend.test:8443")
        let request = try context(mode).makeRequest(head(.GET, "/a?b=1", host: "proxy.example"), isHTTP2: false)
        #expect(Resolved(request) == Resolved("https", "backend.test", 8443, "", "/a?b=1"))
        #expect(request.headers["host"] == "backend.test:8443")
    }

    @Test func reverseModeHostLeavesOutTheDefaultPort() throws {
        let mode = try ProxyMode(parsing: "reverse:http://backend.test")
        let request = try context(mode).makeRequest(head(.GET, "/", host: "proxy.example:8080"), isHTTP2: false)
        #expect(Resolved(request) == Resolved("http", "backend.test", 80, "", "/"))
        #expect(request.headers["host"] == "backend.test")
    }

    @Test func reverseModeAddsHostWhenTheClientSentNone() throws {
        let mode = try ProxyMode(parsing: "reverse:http://backend.test:9000")
        let request = try context(mode).makeRequest(head(.GET, "/", version: .http1_0), isHTTP2: false)
        #expect(request.headers["host"] == "backend.test:9000")
    }

    @Test func reverseModeWithKeepHostHeaderForwardsTheClientsHost() throws {
        let mode = try ProxyMode(parsing: "reverse:https://backend.test")
        let request = try context(mode, keepHostHeader: true).makeRequest(head(.GET, "/", host: "proxy.example"), isHTTP2: false)
        #expect(request.host == "backend.test")
        #expect(request.headers["host"] == "proxy.example")
    }

    @Test func reverseModeOverridesAnAbsoluteFormTarget() throws {
        let mode = try ProxyMode(parsing: "reverse:http://backend.test:9000")
        let request = try context(mode).makeRequest(head(.GET, "https://elsewhere.test/x"), isHTTP2: false)
        #expect(Resolved(request) == Resolved("http", "backend.test", 9000, "elsewhere.test", "/x"))
    }

    @Test func reverseModeRefusesATargetThatIsNoPath() {
        let mode = try! ProxyMode(parsing: "reverse:http://backend.test")
        #expect(throws: ClientConnectionContext.RequestError.self) {
            try context(mode).makeRequest(head(.GET, "index.html"), isHTTP2: false)
        }
    }
}
