import MitmAddons
import MitmCore
import MitmTestSupport
import Testing

/// As mitmproxy's `test_mapremote.py`: URL rewriting on flows made on the spot.
@Suite struct MapRemoteTests {
    let context = RewriteFixtures.context()

    @Test func rewritesHostAndUpdatesTheHostHeader() async throws {
        let addon = try MapRemote(specs: [":example.org/images/:mitmproxy.org/img/"])
        var flow = RewriteFixtures.flow(url: "example.org", path: "/images/test.png")
        try await addon.request(&flow, context: context)
        #expect(flow.request.url == "http://mitmproxy.org/img/test.png")
        #expect(flow.request.host == "mitmproxy.org")
        #expect(flow.request.headers["host"] == "mitmproxy.org")
    }

    @Test func closedFormWithGroupsSchemeAndPort() async throws {
        let addon = try MapRemote(specs: [#"|~d example.org|^http://example\.org/(\w+)/(.*)$|https://other.test:8443/\2?from=\1|"#])
        var flow = RewriteFixtures.flow(url: "example.org", path: "/api/v1/users")
        try await addon.request(&flow, context: context)
        #expect(flow.request.scheme == "https")
        #expect(flow.request.host == "other.test")
        #expect(flow.request.port == 8443)
        #expect(flow.request.path == "/v1/users?from=api")
        #expect(flow.request.headers["host"] == "other.test:8443")
    }

    @Test func filterAndRegexMustBothMatch() async throws {
        let addon = try MapRemote(specs: [":~m POST:example.org:other.test"])
        var flow = RewriteFixtures.flow(url: "example.org")
        try await addon.request(&flow, context: context)
        #expect(flow.request.host == "example.org")

        let other = try MapRemote(specs: [":nomatch:other.test"])
        try await other.request(&flow, context: context)
        #expect(flow.request.host == "example.org")
    }

    @Test func usesThePrettyURL() async throws {
        // As in transparent mode: the request names an address, the Host header the site.
        var flow = RewriteFixtures.flow(url: "example.org", path: "/x")
        flow.request.host = "192.0.2.1"
        let addon = try MapRemote(specs: ["|//example.org/|//other.test/"])
        try await addon.request(&flow, context: context)
        #expect(flow.request.host == "other.test")
        #expect(flow.request.path == "/x")
    }

    @Test func answeredFailedAndNotLiveFlowsAreLeftAlone() async throws {
        let addon = try MapRemote(specs: [":example.org:other.test"])
        var fromFile = RewriteFixtures.flow(url: "example.org", isLive: false)
        try await addon.request(&fromFile, context: context)
        #expect(fromFile.request.host == "example.org")

        var answered = RewriteFixtures.withResponse(RewriteFixtures.flow(url: "example.org"))
        try await addon.request(&answered, context: context)
        #expect(answered.request.host == "example.org")

        var failed = RewriteFixtures.flow(url: "example.org")
        failed.error = FlowError("x")
        try await addon.request(&failed, context: context)
        #expect(failed.request.host == "example.org")
    }

    @Test func aResultThatIsNotAURLChangesNothing() async throws {
        let logs = LogRecorder()
        let addon = try MapRemote(specs: ["|^http://|nonsense"])
        var flow = RewriteFixtures.flow(url: "example.org", path: "/p")
        try await addon.request(&flow, context: RewriteFixtures.context(logs))
        #expect(flow.request.url == "http://example.org/p")
        #expect(logs.all.contains { $0.level == .warning }, "\(logs.all)")
    }

    @Test func atSignIsNotAFileHere() throws {
        let addon = try MapRemote(specs: ["|a|@b"])
        #expect(addon.rules.first?.spec.replacementFile == nil)
    }

    @Test func setURLAlsoUpdatesAnHTTP2Authority() {
        var request = HTTPRequest(
            method: "GET", scheme: "https", host: "a.test", port: 443, authority: "a.test", path: "/", httpVersion: "HTTP/2.0"
        )
        let changed = request.setURL("http://b.test:8080")
        #expect(changed)
        #expect(request.authority == "b.test:8080")
        #expect(request.path == "/")
        #expect(request.headers["host"] == nil, "not created when absent")
        let rejected = !request.setURL("no scheme")
        #expect(rejected)
        #expect(request.host == "b.test")
    }
}
