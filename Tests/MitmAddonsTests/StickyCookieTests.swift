import MitmAddons
import MitmCore
import Testing

/// The stickycookie addon on flows, no sockets (as mitmproxy's `test_stickycookie.py`).
@Suite struct StickyCookieTests {
    static func flow(host: String = "www.example.com", port: Int = 80, path: String = "/", setCookies: [String] = []) -> HTTPFlow {
        let request = HTTPRequest(method: "GET", scheme: "http", host: host, port: port, path: path, headers: ["Host": host])
        let client = ClientConnection(peername: Address(host: "127.0.0.1", port: 1), sockname: Address(host: "127.0.0.1", port: 8080), proxyMode: "regular")
        var flow = HTTPFlow(request: request, clientConnection: client, isLive: true)
        if !setCookies.isEmpty {
            var response = HTTPResponse.make(200)
            for cookie in setCookies { response.headers.add("Set-Cookie", cookie) }
            flow.response = response
        }
        return flow
    }

    /// The Cookie header a request to `host`/`path` gets after the responses set `cookies`.
    static func cookieAfter(
        _ cookies: [String],
        setBy setter: (host: String, path: String) = ("www.example.com", "/"),
        requestTo host: String = "www.example.com",
        port: Int = 80,
        path: String = "/",
        filter: String = ".*"
    ) async throws -> String? {
        let addon = try StickyCookie(filter: filter)
        var response = Self.flow(host: setter.host, path: setter.path, setCookies: cookies)
        try await addon.response(&response, context: AddonContext())
        var request = Self.flow(host: host, port: port, path: path)
        try await addon.request(&request, context: AddonContext())
        return request.request.headers["cookie"]
    }

    @Test("a cookie set by a response is sent with the next request to that host")
    func roundTrip() async throws {
        let addon = try StickyCookie(filter: "~d example.com")
        var first = Self.flow(setCookies: ["session=abc; Path=/; HttpOnly", "theme=dark"])
        try await addon.response(&first, context: AddonContext())
        var second = Self.flow(path: "/account")
        try await addon.request(&second, context: AddonContext())
        #expect(second.request.headers["cookie"] == "session=abc; theme=dark")
        #expect(second.metadata["stickycookie"] == "true")
    }

    @Test("the latest value wins; expired and Max-Age=0 cookies are removed")
    func updatesAndRemovals() async throws {
        let addon = try StickyCookie(filter: ".*")
        for cookies in [["a=1", "b=2", "c=3"], ["a=9"], ["b=; Max-Age=0"], ["c=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT"]] {
            var flow = Self.flow(setCookies: cookies)
            try await addon.response(&flow, context: AddonContext())
        }
        var request = Self.flow()
        try await addon.request(&request, context: AddonContext())
        #expect(request.request.headers["cookie"] == "a=9")
        var gone = Self.flow(setCookies: ["a=; max-age=-1"])
        try await addon.response(&gone, context: AddonContext())
        #expect(addon.cookies.isEmpty, "an origin without cookies leaves the jar: \(addon.cookies)")
    }

    @Test("a future Expires keeps the cookie")
    func futureExpiry() async throws {
        #expect(try await Self.cookieAfter(["k=v; Expires=Fri, 01 Jan 2100 00:00:00 GMT"]) == "k=v")
    }

    @Test("cookies go only to their host, port and path")
    func scope() async throws {
        #expect(try await Self.cookieAfter(["k=v"], requestTo: "other.example.com") == nil)
        #expect(try await Self.cookieAfter(["k=v"], port: 8080) == nil)
        #expect(try await Self.cookieAfter(["k=v; Path=/app"], path: "/") == nil)
        #expect(try await Self.cookieAfter(["k=v; Path=/app"], path: "/app/page") == "k=v")
    }

    @Test("a Domain attribute covers subdomains, with or without its leading dot")
    func domainAttribute() async throws {
        #expect(try await Self.cookieAfter(["k=v; Domain=example.com"], requestTo: "api.example.com") == "k=v")
        #expect(try await Self.cookieAfter(["k=v; Domain=.example.com"], requestTo: "example.com") == "k=v")
        #expect(try await Self.cookieAfter(["k=v; Domain=example.com"], requestTo: "badexample.com") == nil)
    }

    @Test("a cookie for a domain the server does not belong to is ignored")
    func foreignDomain() async throws {
        #expect(try await Self.cookieAfter(["k=v; Domain=evil.org"], requestTo: "evil.org") == nil)
    }

    @Test("only flows matching the filter are remembered from and added to")
    func filter() async throws {
        let addon = try StickyCookie(filter: "~d example.com")
        var other = Self.flow(host: "other.org", setCookies: ["k=v"])
        try await addon.response(&other, context: AddonContext())
        #expect(addon.cookies.isEmpty)
        var set = Self.flow(setCookies: ["k=v"])
        try await addon.response(&set, context: AddonContext())
        let narrow = try StickyCookie(filter: "~u /only")
        var notMatching = Self.flow(path: "/")
        try await narrow.request(&notMatching, context: AddonContext())
        #expect(notMatching.request.headers["cookie"] == nil)
    }

    @Test("the client's own cookies are kept; same-named ones take the remembered value")
    func mergesWithClientCookies() async throws {
        let addon = try StickyCookie(filter: ".*")
        var set = Self.flow(setCookies: ["session=server"])
        try await addon.response(&set, context: AddonContext())
        var request = Self.flow()
        request.request.headers["cookie"] = "session=old; lang=en"
        try await addon.request(&request, context: AddonContext())
        #expect(request.request.headers["cookie"] == "session=server; lang=en")
    }

    @Test("a filter that does not parse is reported with its position")
    func badFilter() {
        let error = #expect(throws: FlowFilterError.self) { try StickyCookie(filter: "~d") }
        #expect(error != nil)
    }
}
