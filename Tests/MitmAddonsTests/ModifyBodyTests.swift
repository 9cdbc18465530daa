import Foundation
import MitmAddons
import MitmCore
import MitmTestSupport
import NIOCore
import Testing

/// As mitmproxy's `test_modifybody.py`: regex replacement in bodies, on flows made on the spot.
@Suite struct ModifyBodyTests {
    let context = RewriteFixtures.context()

    static func body(_ message: some HTTPMessage) -> [UInt8] {
        guard let content = try? message.content() else { return [] }
        return Array(content.readableBytesView)
    }

    @Test func replacesInRequestAndResponseByFilter() async throws {
        let addon = try ModifyBody(specs: [":~q:foo:bar", ":~s:foo:baz"])
        var flow = RewriteFixtures.flow(method: "POST", body: "foo foo")
        try await addon.request(&flow, context: context)
        #expect(flow.request.text == "bar bar")
        #expect(flow.request.headers["content-length"] == "7")

        flow = RewriteFixtures.withResponse(flow, body: Array("foo!".utf8))
        try await addon.response(&flow, context: context)
        #expect(flow.response?.text == "baz!")
        #expect(flow.request.text == "bar bar", "the response hook leaves the request alone")
    }

    @Test func groupsInTheReplacement() async throws {
        let addon = try ModifyBody(specs: [#"/(\w+)@(\w+)/\g<2> at \\1"#])
        var flow = RewriteFixtures.flow(method: "POST", body: "mail alice@example now")
        try await addon.request(&flow, context: context)
        #expect(flow.request.text == "mail example at alice now")
    }

    @Test func dotMatchesNewlines() async throws {
        let addon = try ModifyBody(specs: ["/a.b/X"])
        var flow = RewriteFixtures.flow(method: "POST", body: "a\nb")
        try await addon.request(&flow, context: context)
        #expect(flow.request.text == "X")
    }

    @Test func gzipBodyIsDecodedRewrittenAndEncodedAgain() async throws {
        let addon = try ModifyBody(specs: ["/~s/secret/public"])
        let plain = ByteBuffer(string: "the secret is secret")
        let gz = try ContentEncoding.encode(plain, encoding: "gzip")
        var flow = RewriteFixtures.withResponse(
            RewriteFixtures.flow(),
            headers: [("content-encoding", "gzip")],
            body: Array(gz.readableBytesView)
        )
        try await addon.response(&flow, context: context)
        let response = try #require(flow.response)
        #expect(response.headers["content-encoding"] == "gzip")
        let raw = try #require(response.rawContent)
        #expect(Array(raw.readableBytesView.prefix(2)) == [0x1F, 0x8B], "still gzip on the wire")
        #expect(response.text == "the public is public")
        #expect(response.headers["content-length"] == String(raw.readableBytes))
    }

    @Test(arguments: ["deflate", "br", "zstd"])
    func otherCodingsToo(_ coding: String) async throws {
        let addon = try ModifyBody(specs: ["/x+/y"])
        let encoded = try ContentEncoding.encode(ByteBuffer(string: "axxxb"), encoding: coding)
        var flow = RewriteFixtures.withResponse(
            RewriteFixtures.flow(), headers: [("Content-Encoding", coding)], body: Array(encoded.readableBytesView)
        )
        try await addon.response(&flow, context: context)
        #expect(flow.response?.text == "ayb")
        #expect(flow.response?.headers["content-encoding"] == coding)
    }

    @Test func bytesThatAreNotUTF8Survive() async throws {
        let addon = try ModifyBody(specs: [#"/\xff(a+)/<\\1>"#])
        let body: [UInt8] = [0x00, 0xFE, 0xFF, 0x61, 0x61, 0xC3, 0x28, 0x80]
        var flow = RewriteFixtures.withResponse(RewriteFixtures.flow(), body: body)
        try await addon.response(&flow, context: context)
        #expect(Self.body(flow.response!) == [0x00, 0xFE] + Array("<aa>".utf8) + [0xC3, 0x28, 0x80])
    }

    @Test func utf8PatternsMatchUTF8Bytes() async throws {
        // As in mitmproxy, the pattern is bytes too: `é+` is 0xC3 then one or more 0xA9.
        let addon = try ModifyBody(specs: ["/é+/e"])
        var flow = RewriteFixtures.flow(method: "POST", body: "caféé! éé")
        try await addon.request(&flow, context: context)
        #expect(flow.request.text == "cafee! ee")
    }

    @Test func replacementFromFileIsReadAtUseTime() async throws {
        let dir = try RewriteFixtures.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = try RewriteFixtures.write("one", to: dir + "/r")
        let addon = try ModifyBody(specs: ["/~q/foo/@" + path])
        var flow = RewriteFixtures.flow(method: "POST", body: "foo")
        try await addon.request(&flow, context: context)
        #expect(flow.request.text == "one")

        try RewriteFixtures.write("two", to: path)
        flow = RewriteFixtures.flow(method: "POST", body: "foo")
        try await addon.request(&flow, context: context)
        #expect(flow.request.text == "two")

        try FileManager.default.removeItem(atPath: path)
        let logs = LogRecorder()
        flow = RewriteFixtures.flow(method: "POST", body: "foo")
        try await addon.request(&flow, context: RewriteFixtures.context(logs))
        #expect(flow.request.text == "foo")
        #expect(logs.all.contains { $0.level == .warning && $0.message.contains(path) }, "\(logs.all)")
    }

    @Test func nonLiveStreamedAndFailedFlowsAreLeftAlone() async throws {
        let addon = try ModifyBody(specs: ["/foo/bar"])
        var fromFile = RewriteFixtures.flow(method: "POST", body: "foo", isLive: false)
        try await addon.request(&fromFile, context: context)
        #expect(fromFile.request.text == "foo")

        var streamed = RewriteFixtures.flow(method: "POST", body: "foo")
        streamed.request.stream = true
        try await addon.request(&streamed, context: context)
        #expect(streamed.request.text == "foo")

        var unread = RewriteFixtures.flow(method: "POST")
        unread.request.rawContent = nil
        try await addon.request(&unread, context: context)
        #expect(unread.request.rawContent == nil)

        var failed = RewriteFixtures.withResponse(RewriteFixtures.flow(), body: Array("foo".utf8))
        failed.error = FlowError("reset")
        try await addon.response(&failed, context: context)
        #expect(failed.response?.text == "foo")
    }

    @Test func bodyThatDoesNotDecodeIsLeftAloneWithAWarning() async throws {
        let addon = try ModifyBody(specs: ["/foo/bar"])
        let logs = LogRecorder()
        var flow = RewriteFixtures.withResponse(RewriteFixtures.flow(), headers: [("content-encoding", "gzip")], body: Array("foo".utf8))
        try await addon.response(&flow, context: RewriteFixtures.context(logs))
        #expect(flow.response.map { Array($0.rawContent!.readableBytesView) } == Array("foo".utf8))
        #expect(logs.all.contains { $0.level == .warning }, "\(logs.all)")
    }

    @Test func matchesAndGroupsAsPythonsReSub() async throws {
        // Expected values are Python's: re.sub(b"x*", b"-", b"abxd"), re.sub(b"(a)|b", b"[\\g<1>]", b"ab"),
        // re.sub(b"$", b"!", b"ab\n").
        let cases: [(spec: String, body: String, expected: String)] = [
            ("/x*/-", "abxd", "-a-b--d-"),
            (#"/(a)|b/[\g<1>]"#, "ab", "[a][]"),
            ("/$/!", "ab\n", "ab!\n!"),
        ]
        for c in cases {
            var flow = RewriteFixtures.flow(method: "POST", body: c.body)
            try await ModifyBody(specs: [c.spec]).request(&flow, context: context)
            #expect(flow.request.text == c.expected, "\(c.spec)")
        }
    }

    @Test func replacementReferringToAMissingGroupIsRejected() {
        let error = #expect(throws: ModifySpecError.self) { try ModifyBody(specs: [#"/(a)/\g<2>"#]) }
        #expect(error?.description.contains("invalid group reference 2") == true, "\(String(describing: error))")
        let named = #expect(throws: ModifySpecError.self) { try ModifyBody(specs: [#"/(?P<a>x)/\g<b>"#]) }
        #expect(named?.description.contains("unknown group name 'b'") == true, "\(String(describing: named))")
    }

    @Test func namedGroups() async throws {
        var flow = RewriteFixtures.flow(method: "POST", body: "key=value")
        try await ModifyBody(specs: [#"/(?P<k>\w+)=(?<v>\w+)/\g<v>=\g<k>"#]).request(&flow, context: context)
        #expect(flow.request.text == "value=key")
    }
}
