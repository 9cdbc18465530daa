import Foundation
import MitmAddons
import MitmCore
import MitmTestSupport
import NIOCore
import Testing

/// Flows, contexts and files for the rewriting addons' tests (as mitmproxy's `tflow` and `tmpdir`).
enum RewriteFixtures {
    static func flow(
        method: String = "GET",
        url host: String = "example.com",
        path: String = "/",
        requestHeaders: [(String, String)] = [],
        body: String? = nil,
        isLive: Bool = true
    ) -> HTTPFlow {
        var headers = Headers([("Host", host)] + requestHeaders)
        if let body { headers["content-length"] = String(body.utf8.count) }
        let request = HTTPRequest(
            method: method, scheme: "http", host: host, port: 80, path: path, headers: headers,
            rawContent: body.map { ByteBuffer(string: $0) }
        )
        let client = ClientConnection(
            peername: Address(host: "127.0.0.1", port: 1), sockname: Address(host: "127.0.0.1", port: 8080), proxyMode: "regular"
        )
        return HTTPFlow(request: request, clientConnection: client, isLive: isLive)
    }

    static func withResponse(_ flow: HTTPFlow, headers: [(String, String)] = [], body: [UInt8] = []) -> HTTPFlow {
        var flow = flow
        var h = Headers(headers)
        if !h.contains("content-length") { h["content-length"] = String(body.count) }
        flow.response = HTTPResponse(statusCode: 200, headers: h, rawContent: ByteBuffer(bytes: body))
        return flow
    }

    static func context(_ logs: LogRecorder = LogRecorder()) -> AddonContext {
        AddonContext(logger: logs.logger(label: "test"))
    }

    /// A fresh directory under the temporary directory; the caller removes it.
    static func directory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("rewrite-\(UUID().uuidString.prefix(10))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @discardableResult
    static func write(_ text: String, to path: String) throws -> String {
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true
        )
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }
}

/// The shared `[SEP filter] SEP subject SEP replacement` parser (mitmproxy's `parse_spec` and
/// `parse_modify_spec`, `test_spec.py`, `test_modifyheaders.py::test_parse_modify_spec`).
@Suite struct ModifySpecTests {
    @Test func twoPartsMatchEveryFlow() throws {
        let spec = try ModifySpec(parsing: "/foo/bar")
        #expect(spec.filterExpression == nil)
        #expect(spec.subject == "foo")
        #expect(spec.replacement == "bar")
        #expect(spec.matches(RewriteFixtures.flow()))
    }

    @Test func threePartsCompileTheFilter() throws {
        let spec = try ModifySpec(parsing: "/~s/one/two")
        #expect(spec.filterExpression == "~s")
        #expect(spec.subject == "one" && spec.replacement == "two")
        let request = RewriteFixtures.flow()
        #expect(!spec.matches(request))
        #expect(spec.matches(RewriteFixtures.withResponse(request)))
    }

    @Test(arguments: ["|", ":", "#", "x", "é", "🙂"])
    func anyCharacterSeparates(_ separator: String) throws {
        let spec = try ModifySpec(parsing: "\(separator)~q\(separator)X-A\(separator)1")
        #expect(spec.filterExpression == "~q")
        #expect(spec.subject == "X-A")
        #expect(spec.replacement == "1")
    }

    @Test func extraSeparatorsBelongToTheReplacement() throws {
        let spec = try ModifySpec(parsing: "/~q/foo/http://x/y/")
        #expect(spec.subject == "foo")
        #expect(spec.replacement == "http://x/y/")
    }

    @Test func closingSeparatorIsAccepted() throws {
        let spec = try ModifySpec(parsing: "|~d example.com|^http://|https://|")
        #expect(spec.filterExpression == "~d example.com")
        #expect(spec.subject == "^http://")
        #expect(spec.replacement == "https://", "a single trailing separator closes the spec")
    }

    @Test func threePartsEndingInTheSeparatorKeepAnEmptyReplacement() throws {
        let spec = try ModifySpec(parsing: "/~q/X-Remove/")
        #expect(spec.filterExpression == "~q")
        #expect(spec.subject == "X-Remove")
        #expect(spec.replacement == "")
        // So a closing separator needs all three parts: `|a|b|` is filter `a`, subject `b`, empty replacement.
        let closedTwo = try ModifySpec(parsing: "|a|b|")
        #expect(closedTwo.filterExpression == "a" && closedTwo.subject == "b" && closedTwo.replacement == "")
    }

    @Test func tooFewPartsSayHowManyAndWhichSeparator() {
        let error = #expect(throws: ModifySpecError.self) { try ModifySpec(parsing: "/foo") }
        #expect(error?.description == "expected 2 or 3 parts separated by '/', found 1")
        let empty = #expect(throws: ModifySpecError.self) { try ModifySpec(parsing: "") }
        #expect(empty?.description.hasPrefix("empty spec") == true)
    }

    @Test func invalidFilterNamesItsPositionInsideTheFilter() {
        let error = #expect(throws: ModifySpecError.self) { try ModifySpec(parsing: "/~q & ~zz/a/b") }
        #expect(error?.description.hasPrefix("invalid filter at position 5:") == true, "\(String(describing: error))")
        #expect(error?.spec == "/~q & ~zz/a/b")
    }

    @Test func invalidRegexIsReportedWithThePattern() {
        let error = #expect(throws: ModifySpecError.self) { try ModifyBody(specs: ["/x(/y"]) }
        #expect(error?.description == "invalid regular expression 'x(': missing ), unterminated subpattern at position 1")
        let remote = #expect(throws: ModifySpecError.self) { try MapRemote(specs: ["|[a|b"]) }
        #expect(remote?.description == "invalid regular expression '[a': unterminated character set at position 0")
        let local = #expect(throws: ModifySpecError.self) { try MapLocal(specs: ["|a)|/"]) }
        #expect(local?.description == "invalid regular expression 'a)': unbalanced parenthesis at position 1")
        let repeated = #expect(throws: ModifySpecError.self) { try MapRemote(specs: ["|*a|b"]) }
        #expect(repeated?.description == "invalid regular expression '*a': nothing to repeat at position 0")
    }

    @Test func replacementFileIsCheckedWhenParsedAndReadWhenUsed() throws {
        let dir = try RewriteFixtures.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = try RewriteFixtures.write("first", to: dir + "/value.txt")
        let spec = try ModifySpec(parsing: "/~q/X-A/@" + path)
        #expect(spec.replacementFile == path)
        #expect(try spec.readReplacement() == Array("first".utf8))
        try RewriteFixtures.write("second", to: path)
        #expect(try spec.readReplacement() == Array("second".utf8), "read at use time")

        let missing = dir + "/nope.txt"
        let error = #expect(throws: ModifySpecError.self) { try ModifySpec(parsing: "/~q/X-A/@" + missing) }
        #expect(error?.description == "cannot read replacement file '\(missing)': No such file or directory")
    }

    @Test func replacementFileExpandsTilde() throws {
        let error = #expect(throws: ModifySpecError.self) { try ModifySpec(parsing: "|a|@~/nope-file-\(UUID().uuidString)") }
        #expect(error?.description.contains(NSHomeDirectory()) == true, "\(String(describing: error))")
    }

    @Test func pythonEscapesAreDecodedAsMitmproxyDoes() throws {
        #expect(try ModifySpec.unescape(#"a\nb"#) == Array("a\nb".utf8))
        #expect(try ModifySpec.unescape(#"\x41\\"#) == Array("A\\".utf8))
        #expect(try ModifySpec.unescape(#"\1"#) == [1], "an octal escape, as in Python")
        #expect(try ModifySpec.unescape(#"\d\g<1>"#) == Array(#"\d\g<1>"#.utf8), "unknown escapes stay")
        #expect(try ModifySpec.unescape("é") == [0xC3, 0xA9])
        #expect(throws: ModifySpecError.self) { try ModifySpec.unescape(#"\xZZ"#) }
        #expect(throws: ModifySpecError.self) { try ModifySpec.unescape("\\") }
    }
}
