import MitmCore
import NIOHTTP1
import Testing

// MARK: - Headers

@Suite("Headers")
struct HeadersTests {
    static let sample = Headers([
        ("Content-Type", "text/html"),
        ("X-Custom-Thing", "1"),
        ("Set-Cookie", "a=1"),
        ("accept", "*/*"),
        ("set-cookie", "b=2"),
    ])

    @Test("field order and name case are kept byte for byte")
    func orderAndCaseKept() {
        let names = Self.sample.fields.map(\.name)
        #expect(names == ["Content-Type", "X-Custom-Thing", "Set-Cookie", "accept", "set-cookie"])
        #expect(Self.sample.fields.map(\.value) == ["text/html", "1", "a=1", "*/*", "b=2"])
        #expect(Self.sample.count == 5)
        #expect(!Self.sample.isEmpty)
        #expect(Headers().isEmpty)
        // Iterating gives the same fields in the same order.
        #expect(Array(Self.sample).map(\.name) == names)
    }

    @Test("lookup ignores case")
    func caseInsensitiveLookup() {
        #expect(Self.sample["content-type"] == "text/html")
        #expect(Self.sample["CONTENT-TYPE"] == "text/html")
        #expect(Self.sample["Accept"] == "*/*")
        #expect(Self.sample["x-missing"] == nil)
        #expect(Self.sample.contains("x-custom-thing"))
        #expect(!Self.sample.contains("x-custom"))
    }

    @Test("repeated fields are joined with \", \", as mitmproxy's headers[name]")
    func multiValued() {
        #expect(Self.sample["set-cookie"] == "a=1, b=2")
        #expect(Self.sample.values(for: "SET-COOKIE") == ["a=1", "b=2"])
        #expect(Self.sample.values(for: "missing") == [])
    }

    @Test("setting replaces every field of that name (the first keeps its place and case); nil removes them")
    func setAndRemove() {
        var headers = Self.sample
        headers["SET-COOKIE"] = "c=3"
        #expect(headers.values(for: "set-cookie") == ["c=3"])
        #expect(headers.count == 4)
        headers["X-New"] = "new"
        #expect(headers.fields.last?.name == "X-New")
        #expect(headers["x-new"] == "new")
        headers["content-type"] = nil
        #expect(!headers.contains("Content-Type"))
        headers.remove("X-CUSTOM-THING")
        #expect(!headers.contains("x-custom-thing"))
        headers.remove("not-there")
        #expect(headers.fields.map(\.name) == ["Set-Cookie", "accept", "X-New"])
    }

    @Test("add appends, keeping what was there")
    func add() {
        var headers: Headers = ["Via": "1.1 a"]
        headers.add("via", "1.1 b")
        #expect(headers.fields.map(\.name) == ["Via", "via"])
        #expect(headers["VIA"] == "1.1 a, 1.1 b")
    }

    @Test("setting an existing field keeps its place and its name's case, as mitmproxy does")
    func setKeepsPosition() {
        var headers: Headers = ["Content-Type": "a", "X-Foo": "1"]
        headers["content-type"] = "b"
        #expect(headers.fields.map(\.name) == ["Content-Type", "X-Foo"])
        #expect(headers["Content-Type"] == "b")
    }

    @Test("equality compares names (with case), values and order")
    func equality() {
        let a: Headers = ["A": "1", "B": "2"]
        #expect(a == Headers([("A", "1"), ("B", "2")]))
        #expect(a != Headers([("B", "2"), ("A", "1")]))
        #expect(a != Headers([("a", "1"), ("B", "2")]))
        #expect(a != Headers([("A", "1"), ("B", "3")]))
        #expect(Set([a, Headers([("A", "1"), ("B", "2")])]).count == 1)
    }

    @Test("NIO's HTTPHeaders go in and out unchanged")
    func nioRoundTrip() {
        let nio = HTTPHeaders([("Host", "x"), ("host", "y")])
        let headers = Headers(nio)
        #expect(headers.storage == nio)
        #expect(headers["HOST"] == "x, y")
    }
}

// MARK: - HTTPRequest URLs

@Suite("HTTPRequest URLs")
struct HTTPRequestURLTests {
    static func request(
        method: String = "GET",
        scheme: String = "http",
        host: String = "example.com",
        port: Int = 80,
        authority: String = "",
        path: String = "/a?b=1",
        httpVersion: String = "HTTP/1.1",
        headers: Headers = [:]
    ) -> HTTPRequest {
        HTTPRequest(
            method: method, scheme: scheme, host: host, port: port, authority: authority, path: path,
            httpVersion: httpVersion, headers: headers
        )
    }

    @Test(
        "url and hostHeaderValue leave out the scheme's default port",
        arguments: [
            ("http", "example.com", 80, "example.com", "http://example.com/a?b=1"),
            ("http", "example.com", 8080, "example.com:8080", "http://example.com:8080/a?b=1"),
            ("http", "example.com", 443, "example.com:443", "http://example.com:443/a?b=1"),
            ("https", "example.com", 443, "example.com", "https://example.com/a?b=1"),
            ("https", "example.com", 80, "example.com:80", "https://example.com:80/a?b=1"),
            ("https", "example.com", 8443, "example.com:8443", "https://example.com:8443/a?b=1"),
            ("http", "10.0.0.1", 80, "10.0.0.1", "http://10.0.0.1/a?b=1"),
            ("http", "::1", 8080, "[::1]:8080", "http://[::1]:8080/a?b=1"),
            ("https", "2001:db8::1", 443, "[2001:db8::1]", "https://[2001:db8::1]/a?b=1"),
        ]
    )
    func urlAndHostHeader(scheme: String, host: String, port: Int, hostHeader: String, url: String) {
        let request = Self.request(scheme: scheme, host: host, port: port)
        #expect(request.hostHeaderValue == hostHeader)
        #expect(request.url == url)
    }

    @Test("default ports")
    func defaultPorts() {
        #expect(HTTPRequest.defaultPort(for: "http") == 80)
        #expect(HTTPRequest.defaultPort(for: "https") == 443)
        #expect(HTTPRequest.defaultPort(for: "ws") == 80)
        #expect(HTTPRequest.defaultPort(for: "wss") == 443)
    }

    @Test("CONNECT: url is host:port")
    func connectURL() {
        let request = Self.request(
            method: "CONNECT", host: "example.com", port: 443, authority: "example.com:443", path: "example.com:443"
        )
        #expect(request.url == "example.com:443")
        #expect(request.prettyURL == "example.com:443")
    }

    @Test("an asterisk-form target adds no path (OPTIONS *)")
    func asteriskForm() {
        let request = Self.request(method: "OPTIONS", path: "*", headers: ["Host": "other.example"])
        #expect(request.url == "http://example.com")
        #expect(request.prettyURL == "http://other.example")
    }

    @Test("isHTTP2")
    func isHTTP2() {
        #expect(Self.request(httpVersion: "HTTP/2.0").isHTTP2)
        #expect(!Self.request(httpVersion: "HTTP/1.1").isHTTP2)
    }

    // Expected values checked against mitmproxy 11.0.2's `Request.pretty_url`.
    @Test(
        "prettyURL names the host the client asked for",
        arguments: [
            // (scheme, host, port, Host header, expected)
            ("http", "1.2.3.4", 80, nil, "http://1.2.3.4/p?q=1"),
            ("http", "1.2.3.4", 80, "example.com", "http://example.com/p?q=1"),
            ("http", "1.2.3.4", 80, "example.com:8080", "http://example.com:8080/p?q=1"),
            ("http", "1.2.3.4", 80, "example.com:80", "http://example.com/p?q=1"),
            ("http", "1.2.3.4", 443, "example.com:443", "http://example.com:443/p?q=1"),
            ("https", "1.2.3.4", 443, "example.com:443", "https://example.com/p?q=1"),
            // The port comes from the Host header (or the scheme), not from `port`.
            ("https", "1.2.3.4", 8443, "example.com", "https://example.com/p?q=1"),
            ("http", "z.com", 80, "", "http://z.com/p?q=1"),
            // A field that is not host[:port] is shown as it is.
            ("http", "1.2.3.4", 80, "a:b:c", "http://a:b:c/p?q=1"),
            // IPv6 keeps its brackets (mitmproxy 11 drops them: http://::1:8080/p?q=1).
            ("http", "1.2.3.4", 80, "[::1]:8080", "http://[::1]:8080/p?q=1"),
            ("http", "1.2.3.4", 80, "[::1]", "http://[::1]/p?q=1"),
            ("http", "::1", 8080, nil, "http://[::1]:8080/p?q=1"),
        ] as [(String, String, Int, String?, String)]
    )
    func prettyURL(scheme: String, host: String, port: Int, hostHeader: String?, expected: String) {
        let headers: Headers = hostHeader.map { ["Host": $0] } ?? [:]
        let request = Self.request(scheme: scheme, host: host, port: port, path: "/p?q=1", headers: headers)
        #expect(request.prettyURL == expected)
    }

    @Test("prettyURL: HTTP/1 absolute form prefers the Host header to the request target")
    func prettyURLAbsoluteForm() {
        let withHost = Self.request(host: "a.com", authority: "a.com", path: "/p", headers: ["Host": "b.com"])
        #expect(withHost.url == "http://a.com/p")
        #expect(withHost.prettyURL == "http://b.com/p")
        let withoutHost = Self.request(host: "a.com", port: 8080, authority: "a.com:8080", path: "/p")
        #expect(withoutHost.prettyURL == "http://a.com:8080/p")
    }

    @Test("prettyURL: HTTP/2 prefers :authority, then the Host header")
    func prettyURLHTTP2() {
        let authority = Self.request(
            scheme: "https", host: "1.2.3.4", port: 443, authority: "h2.example:8443", path: "/p",
            httpVersion: "HTTP/2.0", headers: ["Host": "other.com"]
        )
        #expect(authority.prettyURL == "https://h2.example:8443/p")
        let hostHeader = Self.request(
            scheme: "https", host: "1.2.3.4", port: 443, path: "/p", httpVersion: "HTTP/2.0",
            headers: ["Host": "hh.example"]
        )
        #expect(hostHeader.prettyURL == "https://hh.example/p")
        let neither = Self.request(scheme: "https", host: "x.com", port: 443, path: "/p", httpVersion: "HTTP/2.0")
        #expect(neither.prettyURL == "https://x.com/p")
    }

    @Test("prettyURL: CONNECT gives host:port, IPv6 in brackets")
    func prettyURLConnect() {
        let v6 = Self.request(method: "CONNECT", host: "::1", port: 443, authority: "[::1]:443", path: "")
        #expect(v6.prettyURL == "[::1]:443")
        #expect(v6.url == "::1:443")
        // Follows an edited host, where a stored authority would not.
        var edited = Self.request(
            method: "CONNECT", host: "example.com", port: 443, authority: "example.com:443", path: ""
        )
        edited.host = "example.org"
        #expect(edited.prettyURL == "example.org:443")
    }
}

// MARK: - ProxyMode

@Suite("ProxyMode")
struct ProxyModeTests {
    @Test("regular")
    func regular() throws {
        #expect(try ProxyMode(parsing: "regular") == .regular)
        #expect(ProxyMode.regular.description == "regular")
    }

    @Test(
        "reverse targets",
        arguments: [
            ("reverse:http://h:1", "http", "h", 1, "reverse:http://h:1"),
            ("reverse:https://h", "https", "h", 443, "reverse:https://h"),
            ("reverse:h", "https", "h", 443, "reverse:https://h"),
            ("reverse:h:8443", "https", "h", 8443, "reverse:https://h:8443"),
            ("reverse:http://h", "http", "h", 80, "reverse:http://h"),
            ("reverse:http://h/", "http", "h", 80, "reverse:http://h"),
            ("reverse:http://h:80", "http", "h", 80, "reverse:http://h"),
            ("reverse:HTTP://Example.com:8080", "http", "Example.com", 8080, "reverse:http://Example.com:8080"),
            ("reverse:http://[::1]:8080", "http", "::1", 8080, "reverse:http://[::1]:8080"),
            ("reverse:https://127.0.0.1", "https", "127.0.0.1", 443, "reverse:https://127.0.0.1"),
        ]
    )
    func reverse(spec: String, scheme: String, host: String, port: Int, description: String) throws {
        let mode = try ProxyMode(parsing: spec)
        guard case .reverse(let target) = mode else {
            Issue.record("\(spec) parsed as \(mode)")
            return
        }
        #expect(target.scheme == scheme)
        #expect(target.address == Address(host: host, port: port))
        #expect(target.usesTLS == (scheme == "https"))
        #expect(mode.description == description)
        // The description parses back to the same mode.
        #expect(try ProxyMode(parsing: mode.description) == mode)
    }

    @Test(
        "bad specs are refused with a readable reason",
        arguments: [
            ("bogus", "unknown mode 'bogus'; expected regular, transparent, socks5, upstream:URL or reverse:URL"),
            ("", "unknown mode ''; expected regular, transparent, socks5, upstream:URL or reverse:URL"),
            ("regular:x", "regular mode takes no argument"),
            ("socks5:x", "socks5 mode takes no argument"),
            ("reverse", "reverse mode needs a server URL, as in reverse:https://example.com"),
            ("reverse:", "reverse mode needs a server URL, as in reverse:https://example.com"),
            ("reverse:http://h:99999", "invalid host or port in 'h:99999'"),
            ("reverse:http://h:abc", "invalid host or port in 'h:abc'"),
            ("reverse:http://h:", "invalid host or port in 'h:'"),
            ("reverse:http://", "invalid host or port in ''"),
            ("reverse:http://h/path", "a proxy or server URL takes no path"),
            ("reverse:ftp://h", "unsupported scheme 'ftp' (expected http or https)"),
            ("reverse:tcp://h:22", "unsupported scheme 'tcp' (expected http or https)"),
            ("upstream", "upstream mode needs a proxy URL, as in upstream:http://proxy.example:8080"),
            ("upstream:ftp://p", "unsupported scheme 'ftp' (expected http, https or socks5)"),
            ("wireguard", "wireguard mode is not supported"),
        ]
    )
    func badSpecs(spec: String, reason: String) {
        let error = #expect(throws: ProxyModeError.self) {
            try ProxyMode(parsing: spec)
        }
        #expect(error?.spec == spec)
        #expect(error?.reason == reason)
        #expect(error?.description == "invalid proxy mode '\(spec)': \(reason)")
    }

    @Test("the other modes; names are case-insensitive as in mitmproxy")
    func otherModes() throws {
        #expect(try ProxyMode(parsing: "Regular") == .regular)
        #expect(try ProxyMode(parsing: "transparent") == .transparent)
        #expect(try ProxyMode(parsing: "SOCKS5") == .socks5)
        #expect(try ProxyMode(parsing: "upstream:http://proxy:3128") == .upstream(.init(scheme: .http, address: Address(host: "proxy", port: 3128))))
        #expect(try ProxyMode(parsing: "upstream:proxy") == .upstream(.init(scheme: .http, address: Address(host: "proxy", port: 80))))
        #expect(try ProxyMode(parsing: "upstream:https://proxy") == .upstream(.init(scheme: .https, address: Address(host: "proxy", port: 443))))
        #expect(try ProxyMode(parsing: "upstream:socks5://127.0.0.1") == .upstream(.init(scheme: .socks5, address: Address(host: "127.0.0.1", port: 1080))))
        #expect(ProxyMode.socks5.defaultPort == 1080)
        #expect(ProxyMode.regular.defaultPort == 8080)
    }

    @Test("listen addresses after @, as mitmproxy 11 parses them")
    func listenAddresses() throws {
        let plain = try ProxyModeSpec(parsing: "regular")
        #expect(plain.mode == .regular && plain.listenHost == nil && plain.listenPort == nil)
        let port = try ProxyModeSpec(parsing: "socks5@1234")
        #expect(port.mode == .socks5 && port.listenPort == 1234 && port.listenHost == nil)
        let both = try ProxyModeSpec(parsing: "reverse:https://example.com@127.0.0.1:8443")
        #expect(both.mode == .reverse(.init(scheme: "https", address: Address(host: "example.com", port: 443))))
        #expect(both.listenHost == "127.0.0.1" && both.listenPort == 8443)
        #expect(both.spec == "reverse:https://example.com@127.0.0.1:8443")
        let upstream = try ProxyModeSpec(parsing: "upstream:http://proxy:3128@9000")
        #expect(upstream.mode == .upstream(.init(scheme: .http, address: Address(host: "proxy", port: 3128))))
        #expect(upstream.listenPort == 9000)
        let v6 = try ProxyModeSpec(parsing: "regular@[::1]:8081")
        #expect(v6.listenHost == "::1" && v6.listenPort == 8081)
        #expect(ProxyModeSpec(.regular, listenPort: 8081).spec == "regular@8081")
        for bad in ["regular@", "regular@x", "regular@70000", "socks5@1:2:x"] {
            #expect(throws: ProxyModeError.self, "\(bad)") { try ProxyModeSpec(parsing: bad) }
        }
        let error = #expect(throws: ProxyModeError.self) { try ProxyModeSpec(parsing: "bogus@8080") }
        #expect(error?.spec == "bogus@8080")
    }
}

// MARK: - Authority

@Suite("Authority")
struct AuthorityTests {
    @Test(
        "host[:port]",
        arguments: [
            ("example.com", "example.com", nil),
            ("example.com:8080", "example.com", 8080),
            ("example.com:0", "example.com", 0),
            ("example.com:65535", "example.com", 65535),
            ("127.0.0.1:80", "127.0.0.1", 80),
            ("[::1]:8080", "::1", 8080),
            ("[::1]", "::1", nil),
            ("[2001:db8::1]:443", "2001:db8::1", 443),
            ("localhost", "localhost", nil),
        ] as [(String, String, Int?)]
    )
    func valid(text: String, host: String, port: Int?) throws {
        let authority = try #require(Authority(parsing: text))
        #expect(authority.host == host)
        #expect(authority.port == port)
    }

    @Test(
        "bad inputs",
        arguments: [
            "", ":80", "host:", "host:abc", "host:65536", "host:-1", "host:99999999999999999999",
            "::1", "::1:8080", "[::1", "[::1]x", "[::1]:", "[]:80", "[]",
            "a b", "user@host", "host/path", "host:80:90",
        ]
    )
    func invalid(text: String) {
        #expect(Authority(parsing: text) == nil)
    }
}

// MARK: - parseSize

@Suite("parseSize")
struct ParseSizeTests {
    @Test(
        "sizes",
        arguments: [
            ("1024", 1024),
            ("0", 0),
            ("10k", 10 * 1024),
            ("5m", 5 * 1024 * 1024),
            ("1g", 1024 * 1024 * 1024),
            ("2t", 2 * 1024 * 1024 * 1024 * 1024),
            ("7b", 7),
            // Ours (mitmproxy refuses "10K"): upper case and surrounding spaces are fine.
            ("10K", 10 * 1024),
            (" 3m ", 3 * 1024 * 1024),
        ]
    )
    func valid(text: String, size: Int) {
        #expect(parseSize(text) == size)
    }

    @Test("bad sizes", arguments: ["", " ", "k", "abc", "10x", "10kb", "1.5m", "-1", "-1k", "m5", "1 k"])
    func invalid(text: String) {
        #expect(parseSize(text) == nil)
    }
}
