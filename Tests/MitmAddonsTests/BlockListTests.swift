import MitmAddons
import MitmCore
import Testing

/// The block_list addon on flows, no sockets (as mitmproxy's `test_blocklist.py`).
@Suite struct BlockListTests {
    static func flow(host: String = "example.com", path: String = "/", live: Bool = true) -> HTTPFlow {
        let request = HTTPRequest(method: "GET", scheme: "http", host: host, port: 80, path: path, headers: ["Host": host])
        let client = ClientConnection(peername: Address(host: "127.0.0.1", port: 1), sockname: Address(host: "127.0.0.1", port: 8080), proxyMode: "regular")
        return HTTPFlow(request: request, clientConnection: client, isLive: live)
    }

    @Test("a matching flow is answered with the status and an empty body, and marked blocklisted")
    func blocks() async throws {
        let addon = try BlockList(specs: ["/~d example.com/404"])
        var flow = Self.flow()
        try await addon.request(&flow, context: AddonContext())
        #expect(flow.response?.statusCode == 404)
        #expect(flow.response?.rawContent?.readableBytes == 0)
        #expect(flow.response?.headers["content-length"] == "0")
        #expect(flow.metadata["blocklisted"] == "true")
        #expect(flow.error == nil)
    }

    @Test("a flow that matches no spec is left alone")
    func noMatch() async throws {
        let addon = try BlockList(specs: ["/~d other.org/404"])
        var flow = Self.flow()
        try await addon.request(&flow, context: AddonContext())
        #expect(flow.response == nil)
        #expect(flow.metadata["blocklisted"] == nil)
    }

    @Test("444 kills the flow instead of answering")
    func noResponse() async throws {
        let addon = try BlockList(specs: [":~u /secret:444"])
        var flow = Self.flow(path: "/secret")
        try await addon.request(&flow, context: AddonContext())
        #expect(flow.response == nil)
        #expect(flow.isKilled)
        #expect(flow.metadata["blocklisted"] == "true")
    }

    @Test("the first matching spec wins; any first character is the separator")
    func firstMatchWins() async throws {
        let addon = try BlockList(specs: ["|~u /a|403", "/~d example.com/410"])
        var a = Self.flow(path: "/a")
        try await addon.request(&a, context: AddonContext())
        #expect(a.response?.statusCode == 403)
        var b = Self.flow(path: "/b")
        try await addon.request(&b, context: AddonContext())
        #expect(b.response?.statusCode == 410)
    }

    @Test("flows that are not live, already answered or already failed are not touched")
    func onlyLivePendingFlows() async throws {
        let addon = try BlockList(specs: ["/.*/404"])
        var replayed = Self.flow(live: false)
        try await addon.request(&replayed, context: AddonContext())
        #expect(replayed.response == nil)
        var answered = Self.flow()
        answered.response = .make(200, body: "ok")
        try await addon.request(&answered, context: AddonContext())
        #expect(answered.response?.statusCode == 200)
        #expect(answered.metadata["blocklisted"] == nil)
    }

    @Test(
        "spec errors say where and what was expected",
        arguments: [
            ("/~d example.com", "expected 2 parts", 0),
            ("/~d example.com/404/x", "found 3", 0),
            ("/~d example.com/abc", "expected an integer from 100 to 999", 16),
            ("/~d example.com/99", "expected an integer from 100 to 999", 16),
            ("/~d example.com/1000", "expected an integer from 100 to 999", 16),
            ("/~zz/404", "invalid filter", 1),
            ("", "empty spec", 0),
        ]
    )
    func errors(spec: String, expected: String, position: Int) throws {
        let error = #expect(throws: BlockListSpecError.self) { try BlockList(specs: [spec]) }
        #expect(error?.description.contains(expected) == true, "\(String(describing: error))")
        #expect(error?.position == position, "\(String(describing: error))")
    }
}
