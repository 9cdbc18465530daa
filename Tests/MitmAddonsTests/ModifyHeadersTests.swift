import Foundation
import MitmAddons
import MitmCore
import MitmTestSupport
import Testing

/// As mitmproxy's `test_modifyheaders.py`: the addon on flows made on the spot.
@Suite struct ModifyHeadersTests {
    let context = RewriteFixtures.context()

    @Test func setsRequestAndResponseHeadersByFilter() async throws {
        let addon = try ModifyHeaders(specs: ["/~q/one/two", "/~s/one/three"])
        var flow = RewriteFixtures.flow(requestHeaders: [("one", "xxx")])
        try await addon.requestHeaders(&flow, context: context)
        #expect(flow.request.headers["one"] == "two")

        flow = RewriteFixtures.withResponse(flow, headers: [("one", "xxx")])
        try await addon.responseHeaders(&flow, context: context)
        #expect(flow.response?.headers["one"] == "three")
    }

    @Test func severalSpecsForOneNameAddSeveralFields() async throws {
        let addon = try ModifyHeaders(specs: ["/~q/one/two", "/~q/one/three"])
        var flow = RewriteFixtures.flow(requestHeaders: [("one", "xxx")])
        try await addon.requestHeaders(&flow, context: context)
        #expect(flow.request.headers.values(for: "one") == ["two", "three"])
    }

    @Test func emptyValueRemoves() async throws {
        let addon = try ModifyHeaders(specs: ["/~q/One/", "|Two|"])
        var flow = RewriteFixtures.flow(requestHeaders: [("one", "1"), ("ONE", "2"), ("two", "x"), ("three", "3")])
        try await addon.requestHeaders(&flow, context: context)
        #expect(!flow.request.headers.contains("one"), "every field of the name, any case")
        #expect(!flow.request.headers.contains("two"), "two-part spec, no filter")
        #expect(flow.request.headers["three"] == "3")
    }

    @Test func filtersAreEvaluatedBeforeAnyEdit() async throws {
        // The second spec's filter looks for the header the first one removes; in mitmproxy 11
        // both filters see the unmodified flow, so both apply.
        let addon = try ModifyHeaders(specs: ["/~hq one/one/", "/~hq one/two/set"])
        var flow = RewriteFixtures.flow(requestHeaders: [("one", "1")])
        try await addon.requestHeaders(&flow, context: context)
        #expect(flow.request.headers["one"] == nil)
        #expect(flow.request.headers["two"] == "set")
    }

    @Test func flowsWithResponseErrorOrNotLiveAreLeftAlone() async throws {
        let addon = try ModifyHeaders(specs: ["/one/two"])
        var answered = RewriteFixtures.withResponse(RewriteFixtures.flow())
        try await addon.requestHeaders(&answered, context: context)
        #expect(answered.request.headers["one"] == nil)

        var failed = RewriteFixtures.flow()
        failed.error = FlowError("boom")
        try await addon.requestHeaders(&failed, context: context)
        #expect(failed.request.headers["one"] == nil)

        var fromFile = RewriteFixtures.flow(isLive: false)
        try await addon.requestHeaders(&fromFile, context: context)
        #expect(fromFile.request.headers["one"] == nil)
        fromFile = RewriteFixtures.withResponse(fromFile)
        try await addon.responseHeaders(&fromFile, context: context)
        #expect(fromFile.response?.headers["one"] == nil)
    }

    @Test func valueFromFileIsReadEachTimeAndAMissingFileIsSkipped() async throws {
        let dir = try RewriteFixtures.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = try RewriteFixtures.write("from-file", to: dir + "/v")
        let addon = try ModifyHeaders(specs: ["/~q/one/@" + path])
        var flow = RewriteFixtures.flow()
        try await addon.requestHeaders(&flow, context: context)
        #expect(flow.request.headers["one"] == "from-file")

        try FileManager.default.removeItem(atPath: path)
        let logs = LogRecorder()
        var again = RewriteFixtures.flow(requestHeaders: [("one", "old")])
        try await addon.requestHeaders(&again, context: RewriteFixtures.context(logs))
        #expect(again.request.headers["one"] == nil, "removed, then not re-added")
        #expect(logs.all.contains { $0.level == .warning && $0.message.contains(path) }, "\(logs.all)")
    }

    @Test func escapesInNameAndValueAreDecoded() async throws {
        let addon = try ModifyHeaders(specs: [#"/X-Tab/a\tb"#])
        var flow = RewriteFixtures.flow()
        try await addon.requestHeaders(&flow, context: context)
        #expect(flow.request.headers["x-tab"] == "a\tb")
    }

    @Test func invalidSpecsThrow() {
        #expect(throws: ModifySpecError.self) { try ModifyHeaders(specs: ["/~q/a/b", "/nope"]) }
        #expect(throws: ModifySpecError.self) { try ModifyHeaders(specs: ["/~unknown/a/b"]) }
    }
}
