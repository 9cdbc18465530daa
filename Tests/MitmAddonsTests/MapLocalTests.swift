import Foundation
import MitmAddons
import MitmCore
import MitmTestSupport
import Testing

/// As mitmproxy's `test_maplocal.py`: serving local files on flows made on the spot.
@Suite struct MapLocalTests {
    let context = RewriteFixtures.context()

    /// A directory with `index.html`, `foo/bar.css`, `foo/index.html`, `a_b.js`, and a secret
    /// beside it (outside the mapped directory).
    static func site() throws -> (root: String, dir: String) {
        let root = try RewriteFixtures.directory()
        let dir = root + "/site"
        try RewriteFixtures.write("<h1>home</h1>", to: dir + "/index.html")
        try RewriteFixtures.write("body{}", to: dir + "/foo/bar.css")
        try RewriteFixtures.write("foo index", to: dir + "/foo/index.html")
        try RewriteFixtures.write("escaped", to: dir + "/a_b.js")
        try RewriteFixtures.write("secret", to: root + "/secret.txt")
        return (root, dir)
    }

    func serve(_ spec: String, host: String = "example.com", path: String, logs: LogRecorder = LogRecorder()) async throws -> HTTPFlow {
        let addon = try MapLocal(specs: [spec])
        var flow = RewriteFixtures.flow(url: host, path: path)
        try await addon.request(&flow, context: RewriteFixtures.context(logs))
        return flow
    }

    @Test func directoryMapsTheRestOfTheURL() async throws {
        let (root, dir) = try Self.site()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let css = try await serve("|~q|example.com/static|\(dir)|", path: "/static/foo/bar.css?v=2")
        #expect(css.response?.statusCode == 200)
        #expect(css.response?.text == "body{}")
        #expect(css.response?.headers["content-type"] == "text/css")
        #expect(css.response?.headers["content-length"] == "6")

        let index = try await serve("|~q|example.com/static|\(dir)|", path: "/static/")
        #expect(index.response?.text == "<h1>home</h1>")
        #expect(index.response?.headers["content-type"] == "text/html")

        let subIndex = try await serve("|~q|example.com/static|\(dir)|", path: "/static/foo")
        #expect(subIndex.response?.text == "foo index", "a directory tries its index.html")
    }

    @Test func firstGroupPicksThePath() async throws {
        let (root, dir) = try Self.site()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let flow = try await serve(#"|example.com/assets/\w+/(.+\.css)|"# + dir, path: "/assets/v3/foo/bar.css")
        #expect(flow.response?.text == "body{}")
    }

    @Test func percentDecodedThenEscapedCandidates() async throws {
        let (root, dir) = try Self.site()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let flow = try await serve("|example.com|\(dir)", path: "/a%20b.js")
        #expect(flow.response?.text == "escaped", "'a b.js' does not exist, 'a_b.js' does")
        #expect(flow.response?.headers["content-type"] == "text/javascript")
    }

    @Test func aFileServesEveryMatchingURL() async throws {
        let (root, dir) = try Self.site()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let flow = try await serve(":~m GET:example.com/anything:\(dir)/foo/bar.css", path: "/anything/else.png")
        #expect(flow.response?.text == "body{}")
        #expect(flow.response?.headers["content-type"] == "text/css")
    }

    @Test func missingFileGives404AndAWarning() async throws {
        let (root, dir) = try Self.site()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let logs = LogRecorder()
        let flow = try await serve("|example.com|\(dir)", path: "/nope.txt", logs: logs)
        #expect(flow.response?.statusCode == 404)
        #expect(flow.response?.text?.contains("no local file") == true)
        #expect(logs.all.contains { $0.level == .warning && $0.message.contains(dir + "/nope.txt") }, "\(logs.all)")
    }

    @Test(arguments: ["/..%2Fsecret.txt", "/%2e%2e/secret.txt", "/foo/%2E%2E/%2E%2E/secret.txt"])
    func traversalIsRefused(_ path: String) async throws {
        let (root, dir) = try Self.site()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let flow = try await serve("|example.com|\(dir)", path: path)
        #expect(flow.response?.text != "secret")
        #expect(flow.response == nil, "no candidate: the request goes on to the server, as in mitmproxy")
    }

    @Test func candidatesFollowMitmproxysOrder() throws {
        let (root, dir) = try Self.site()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let rule = try #require(try MapLocal(specs: ["|example.com|\(dir)"]).rules.first)
        #expect(rule.candidates(for: "http://example.com/a b/c") == [
            dir + "/a b/c", dir + "/a b/c/index.html", dir + "/a_b/c", dir + "/a_b/c/index.html",
        ])
        #expect(rule.candidates(for: "http://example.com/") == [dir + "/index.html"])
        #expect(rule.candidates(for: "http://example.com/../x") == [])
        // The rest as mitmproxy 11's file_candidates gives them (checked against it):
        #expect(rule.candidates(for: "http://example.com//x//") == [dir + "/x", dir + "/x/index.html"])
        #expect(rule.candidates(for: "http://example.com/./a/./b") == [dir + "/a/b", dir + "/a/b/index.html"])
        let grouped = try #require(try MapLocal(specs: ["|example.com(/.*)|\(dir)"]).rules.first)
        #expect(grouped.candidates(for: "http://example.com/x.css") == [], "a group starting with / is absolute")
        let optional = try #require(try MapLocal(specs: ["|example.com/(x)?|\(dir)"]).rules.first)
        #expect(optional.candidates(for: "http://example.com/y") == [dir + "/index.html"], "an unmatched group is empty")
    }

    @Test func unknownExtensionIsOctetStream() {
        #expect(MapLocal.contentType(forPath: "/x/file.unknownext") == "application/octet-stream")
        #expect(MapLocal.contentType(forPath: "/x/APP.WASM") == "application/wasm")
        #expect(MapLocal.contentType(forPath: "/x/a.woff2") == "font/woff2")
    }

    @Test func notLiveOrAnsweredFlowsAreLeftAlone() async throws {
        let (root, dir) = try Self.site()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let addon = try MapLocal(specs: ["|example.com|\(dir)"])
        var fromFile = RewriteFixtures.flow(path: "/index.html", isLive: false)
        try await addon.request(&fromFile, context: context)
        #expect(fromFile.response == nil)
        var answered = RewriteFixtures.withResponse(RewriteFixtures.flow(path: "/index.html"), body: Array("server".utf8))
        try await addon.request(&answered, context: context)
        #expect(answered.response?.text == "server")
    }

    @Test func missingLocalPathIsAParseError() {
        let error = #expect(throws: ModifySpecError.self) { try MapLocal(specs: ["|example.com|/definitely/not/here"]) }
        #expect(error?.description == "no such file or directory: '/definitely/not/here'")
    }
}
