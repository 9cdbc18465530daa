import MitmAddons
import MitmCore
import Testing

/// As mitmproxy's `test_anticache.py` / `test_anticomp.py`: the addon on a flow, no sockets.
@Suite struct AntiCacheAntiCompTests {
    static func flow() -> HTTPFlow {
        let request = HTTPRequest(
            method: "GET", scheme: "http", host: "example.com", port: 80, path: "/",
            headers: Headers([("if-modified-since", "Sat, 01 Jan 2000 00:00:00 GMT"), ("If-None-Match", "\"abc\""), ("Accept-Encoding", "gzip, br")])
        )
        let client = ClientConnection(peername: Address(host: "127.0.0.1", port: 1), sockname: Address(host: "127.0.0.1", port: 8080), proxyMode: "regular")
        return HTTPFlow(request: request, clientConnection: client)
    }

    static func context(anticache: Bool = false, anticomp: Bool = false) -> AddonContext {
        var options = ProxyOptions()
        options.anticache = anticache
        options.anticomp = anticomp
        return AddonContext(options: options)
    }

    @Test func anticacheStripsConditionalHeadersOnlyWhenOn() async throws {
        var off = Self.flow()
        try await AntiCache().request(&off, context: Self.context())
        #expect(off.request.headers["if-none-match"] == "\"abc\"")
        var on = Self.flow()
        try await AntiCache().request(&on, context: Self.context(anticache: true))
        #expect(on.request.headers["if-modified-since"] == nil)
        #expect(on.request.headers["if-none-match"] == nil)
        #expect(on.request.headers["accept-encoding"] == "gzip, br", "other headers stay")
    }

    @Test func anticompAsksForIdentityOnlyWhenOn() async throws {
        var off = Self.flow()
        try await AntiComp().request(&off, context: Self.context())
        #expect(off.request.headers["accept-encoding"] == "gzip, br")
        var on = Self.flow()
        try await AntiComp().request(&on, context: Self.context(anticomp: true))
        #expect(on.request.headers["accept-encoding"] == "identity")
    }
}
