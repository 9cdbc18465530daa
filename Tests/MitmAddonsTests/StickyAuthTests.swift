import MitmAddons
import MitmCore
import Testing

/// The stickyauth addon on flows, no sockets (as mitmproxy's `test_stickyauth.py`).
@Suite struct StickyAuthTests {
    static func flow(host: String = "example.com", authorization: String? = nil) -> HTTPFlow {
        var request = HTTPRequest(method: "GET", scheme: "http", host: host, port: 80, path: "/", headers: ["Host": host])
        if let authorization { request.headers["Authorization"] = authorization }
        let client = ClientConnection(peername: Address(host: "127.0.0.1", port: 1), sockname: Address(host: "127.0.0.1", port: 8080), proxyMode: "regular")
        return HTTPFlow(request: request, clientConnection: client, isLive: true)
    }

    @Test("a remembered Authorization is added to later requests to the same host that have none")
    func remembersPerHost() async throws {
        let addon = try StickyAuth(filter: ".*")
        var first = Self.flow(authorization: "Basic dXNlcjpwYXNz")
        try await addon.request(&first, context: AddonContext())
        var second = Self.flow()
        try await addon.request(&second, context: AddonContext())
        #expect(second.request.headers["authorization"] == "Basic dXNlcjpwYXNz")
        var otherHost = Self.flow(host: "other.org")
        try await addon.request(&otherHost, context: AddonContext())
        #expect(otherHost.request.headers["authorization"] == nil)
    }

    @Test("a request with its own Authorization keeps it, and it becomes the remembered one")
    func ownHeaderWins() async throws {
        let addon = try StickyAuth(filter: ".*")
        var first = Self.flow(authorization: "Bearer one")
        try await addon.request(&first, context: AddonContext())
        var second = Self.flow(authorization: "Bearer two")
        try await addon.request(&second, context: AddonContext())
        #expect(second.request.headers["authorization"] == "Bearer two")
        var third = Self.flow()
        try await addon.request(&third, context: AddonContext())
        #expect(third.request.headers["authorization"] == "Bearer two")
    }

    @Test("only matching requests are remembered from and added to")
    func filter() async throws {
        let addon = try StickyAuth(filter: "~d example.com")
        var outside = Self.flow(host: "other.org", authorization: "Basic eA==")
        try await addon.request(&outside, context: AddonContext())
        #expect(addon.rememberedAuthorization.isEmpty)
        var inside = Self.flow(authorization: "Basic eQ==")
        try await addon.request(&inside, context: AddonContext())
        #expect(addon.rememberedAuthorization == ["example.com": "Basic eQ=="])
    }
}
