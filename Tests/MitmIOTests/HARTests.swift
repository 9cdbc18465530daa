import Foundation
import MitmCore
import NIOCore
import Testing

import MitmIO
import MitmTestSupport

/// HAR import and export, checked against what mitmproxy 11.0.2 reads from the same files.
@Suite("HAR")
struct HARTests {
    static func fixture(_ name: String) throws -> Data {
        let base = try #require(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        return try Data(contentsOf: base.appendingPathComponent("har").appendingPathComponent(name))
    }

    static func body(_ message: some HTTPMessage) -> [UInt8] {
        guard let content = try? message.content() else { return message.rawContent.map { Array($0.readableBytesView) } ?? [] }
        return Array(content.readableBytesView)
    }

    // MARK: - Import

    /// Flow counts as mitmproxy 11.0.2's `FlowReader` imports each file.
    @Test(arguments: [
        ("chrome.har", 3), ("compressed.zhar", 2), ("corrupted_gzip_body.har", 1), ("diff_data.har", 5),
        ("error_log.har", 2), ("event_stream.har", 2), ("incomplete_log.har", 4), ("successful_log.har", 2),
        ("websocket.har", 3),
    ])
    func flowCounts(file: String, count: Int) throws {
        let flows = try HARReader.read(data: Self.fixture(file))
        #expect(flows.count == count)
        for flow in flows { #expect(flow.response != nil) }
    }

    @Test func successfulLogFields() throws {
        let flows = try HARReader.read(data: Self.fixture("successful_log.har"))
        let get = flows[0]
        #expect(get.request.method == "GET")
        #expect(get.request.url == "https://example.com/")
        #expect(get.request.host == "example.com")
        #expect(get.request.port == 443)
        #expect(get.request.path == "/")
        #expect(get.request.httpVersion == "HTTP/1.1")
        #expect(get.request.headers["content-length"] == "0")
        #expect(get.request.headers["user-agent"] == "curl/7.86.0")
        #expect(get.request.timestampStart == 1690281721.72681)
        #expect(abs((get.request.timestampEnd ?? 0) - 1690281722.216251) < 1e-6)
        #expect(get.clientConnection.timestampStart == 1690281721.72681)
        let response = try #require(get.response)
        #expect(response.statusCode == 200)
        #expect(response.reason == "OK")
        #expect(response.rawContent?.readableBytes == 1256)
        #expect(response.text?.hasPrefix("<!doctype html>\n<htm") == true)
        #expect(response.timestampStart == 1690281721.72681)
        #expect(get.serverConnection?.address == Address(host: "93.184.216.34", port: 443))

        let post = flows[1]
        #expect(post.request.method == "POST")
        #expect(post.request.url == "https://httpbin.org/post")
        #expect(post.request.text == "key1=value1&key2=value2")
        #expect(post.request.headers["content-length"] == "23")
        #expect(post.response?.rawContent?.readableBytes == 453)
        #expect(post.serverConnection?.address == Address(host: "54.211.216.104", port: 443))
    }

    @Test func chromeFields() throws {
        let flows = try HARReader.read(data: Self.fixture("chrome.har"))
        #expect(flows.map(\.request.url) == [
            "https://mitmproxy.org/", "https://www.google.com/",
            "https://www.google.com/images/branding/googlelogo/2x/googlelogo_light_color_272x92dp.png",
        ])
        // http/2.0 is HTTP/2 (HTTP/2.0 in our model); h3 is not one of mitmproxy's names, so HTTP/1.1.
        #expect(flows.map(\.request.httpVersion) == ["HTTP/2.0", "HTTP/1.1", "HTTP/1.1"])
        #expect(flows.map { $0.response?.statusCode } == [304, 0, 200])
        #expect(flows.map { $0.response?.reason } == ["Not Modified", "", "OK"])
        #expect(flows.map { $0.response?.rawContent?.readableBytes } == [23866, 0, 7108])
        #expect(flows[0].request.timestampStart == 1680134454.25)
        #expect(flows[0].serverConnection?.address.host == "108.138.246.80")
        #expect(flows[1].serverConnection == nil)
        let png = try #require(flows[2].response?.rawContent)
        #expect(Array(png.readableBytesView.prefix(4)) == [0x89, 0x50, 0x4E, 0x47])
    }

    @Test func errorLogAndIncomplete() throws {
        let errors = try HARReader.read(data: Self.fixture("error_log.har"))
        #expect(errors[0].request.url == "http://163.com/")
        #expect(errors[0].response?.statusCode == 0)
        #expect(errors[0].serverConnection == nil)
        #expect(errors[1].response?.statusCode == 405)
        #expect(errors[1].response?.reason == "Method Not Allowed")
        #expect(errors[1].response?.rawContent?.readableBytes == 178)
        #expect(errors[1].request.rawContent?.readableBytes == 23)

        let diff = try HARReader.read(data: Self.fixture("diff_data.har"))
        #expect(diff[0].request.rawContent?.readableBytes == 1020)
        #expect(diff[2].response?.rawContent?.readableBytes == 39198)
        #expect(diff[0].request.url == "https://jnn-pa.googleapis.com/$rpc/google.internal.waa.v1.Waa/GenerateIT")
    }

    @Test func compressedMatchesPlain() throws {
        let zhar = try Self.fixture("compressed.zhar")
        #expect(HARReader.isZlibCompressed([UInt8](zhar)))
        let compressed = try HARReader.read(data: zhar)
        let plain = try HARReader.read(data: Self.fixture("successful_log.har"))
        #expect(compressed.map(\.request.url) == plain.map(\.request.url))
        #expect(compressed.map { $0.response?.rawContent } == plain.map { $0.response?.rawContent })
    }

    @Test func byteOrderMarkIsSkipped() throws {
        let plain = try Self.fixture("successful_log.har")
        let flows = try HARReader.read(data: Data([0xEF, 0xBB, 0xBF]) + plain)
        #expect(flows.count == 2)
    }

    @Test func corruptedFilesGiveClearErrors() throws {
        let brokenHeaders = try Self.fixture("broken_headers.json")
        #expect(throws: HARError(location: "log", message: "is missing")) { try HARReader.read(data: brokenHeaders) }

        let brokenFile = try Self.fixture("brokenfile.har")
        do {
            _ = try HARReader.read(data: brokenFile)
            Issue.record("brokenfile.har was read")
        } catch {
            #expect(error.location == "line 5, column 1")
            #expect(error.description.contains("invalid JSON"))
        }
        #expect(throws: HARError.self) { try HARReader.read(data: Data()) }
        #expect(throws: HARError.self) { try HARReader.read(data: Data("not json".utf8)) }
        #expect(throws: HARError.self) { try HARReader.read(data: Data([0x78, 0x9C, 1, 2, 3])) }
    }

    /// Cut anywhere, a file gives an error, never a crash.
    @Test func truncatedFilesFailCleanly() throws {
        let full = [UInt8](try Self.fixture("chrome.har"))
        for length in stride(from: 0, to: full.count, by: 997) {
            #expect(throws: HARError.self) { try HARReader.read(data: Array(full.prefix(length))) }
        }
        let zhar = [UInt8](try Self.fixture("compressed.zhar"))
        #expect(throws: HARError.self) { try HARReader.read(data: Array(zhar.prefix(zhar.count / 2))) }
    }

    static func har(entries: String) -> Data {
        Data(#"{"log": {"version": "1.2", "entries": [\#(entries)]}}"#.utf8)
    }

    static let minimalEntry = #"""
        {"startedDateTime": "2024-01-02T03:04:05.5+01:00", "time": 250,
         "request": {"method": "PUT", "url": "http://example.com:8080/a?b=c", "httpVersion": "HTTP/1.1", "headers": [["X-Slack", "1"]],
                     "postData": {"mimeType": "application/octet-stream", "text": "AAEC/w==", "encoding": "base64"}},
         "response": {"status": 201, "httpVersion": "HTTP/2", "headers": [{"name": "Content-Encoding", "value": "gzip"}],
                      "content": {"text": "héllo", "mimeType": "text/plain"}}}
        """#

    @Test func minimalEntryAndExtensions() throws {
        let flows = try HARReader.read(data: Self.har(entries: Self.minimalEntry))
        let flow = try #require(flows.first)
        #expect(flow.request.host == "example.com")
        #expect(flow.request.port == 8080)
        #expect(flow.request.path == "/a?b=c")
        #expect(flow.request.scheme == "http")
        #expect(flow.request.headers["x-slack"] == "1")
        #expect(flow.request.rawContent == ByteBuffer(bytes: [0, 1, 2, 255]))
        // 2024-01-02T02:04:05.5Z
        #expect(flow.request.timestampStart == 1704161045.5)
        #expect(flow.request.timestampEnd == 1704161045.75)
        #expect(flow.serverConnection == nil)
        let response = try #require(flow.response)
        #expect(response.httpVersion == "HTTP/2.0")
        #expect(response.reason == "Created")
        // text/plain without charset: latin-1, then gzip as the header says.
        #expect(Self.body(response) == [0x68, 0xE9, 0x6C, 0x6C, 0x6F])
        #expect(response.rawContent?.readableBytesView.prefix(2).elementsEqual([0x1F, 0x8B]) == true)
    }

    @Test(arguments: [
        (#""request": {"method": "GET", "httpVersion": "", "headers": []}"#, "entry 1: request.url is missing"),
        (#""request": {"method": "GET", "url": "/relative", "httpVersion": "", "headers": []}"#, "entry 1: request.url is not an absolute http(s) URL: \"/relative\""),
        (#""request": {"method": "GET", "url": "http://a/", "httpVersion": "", "headers": [3]}"#, "entry 1: request.headers[0] must be an object or a [name, value] pair, not a number"),
        (#""request": 7"#, "entry 1: request must be an object, not a number"),
    ])
    func entryErrorsSayWhere(request: String, expected: String) throws {
        let bad = #"{"startedDateTime": "2024-01-02T03:04:05Z", "time": 1, \#(request), "response": {"status": 200, "httpVersion": "", "headers": [], "content": {}}}"#
        do {
            _ = try HARReader.read(data: Self.har(entries: Self.minimalEntry + "," + bad))
            Issue.record("read an invalid entry")
        } catch {
            #expect(error.description == "Unable to read HAR file: \(expected)")
        }
    }

    @Test func missingResponseFieldsAndDates() throws {
        let noTime = #"{"startedDateTime": "yesterday", "time": 1, "request": {}, "response": {}}"#
        #expect(throws: HARError(location: "entry 0", message: "startedDateTime is not an ISO 8601 date: \"yesterday\"")) {
            try HARReader.read(data: Self.har(entries: noTime))
        }
        let noContent = #"{"startedDateTime": "2024-01-02T03:04:05Z", "time": 1, "request": {"method": "GET", "url": "http://a/", "httpVersion": "", "headers": []}, "response": {"status": 200, "httpVersion": "", "headers": []}}"#
        #expect(throws: HARError(location: "entry 0", message: "response.content is missing")) {
            try HARReader.read(data: Self.har(entries: noContent))
        }
        #expect(HARReader.parseISODate("2023-03-30T00:00:54.250Z") == 1680134454.25)
        #expect(HARReader.parseISODate("2023-07-25T12:58:46.182000+00:00") == 1690289926.182)
        #expect(HARReader.parseISODate("2023-07-25T14:58:46+0200") == 1690289926)
        #expect(HARReader.parseISODate("2023-07-25") == 1690243200)
    }

    /// mitmproxy names the reason from its own table, not from `statusText`.
    @Test func reasonPhrasesAreMitmproxys() {
        #expect(HARReader.standardReason(422) == "Unprocessable Content")
        #expect(HARReader.standardReason(504) == "Gateway Time-out")
        #expect(HARReader.standardReason(418) == "I'm a teapot")
        #expect(HARReader.standardReason(299) == "")
        #expect(HARReader.standardReason(0) == "")
    }

    // MARK: - Export

    static func syntheticFlows() throws -> [HTTPFlow] {
        let client = ClientConnection(peername: Address(host: "127.0.0.1", port: 50000), sockname: Address(host: "127.0.0.1", port: 8080), proxyMode: "regular", timestampStart: 1700000000)
        var server = ServerConnection(address: Address(host: "example.com", port: 443), usesTLS: true)
        server.peername = Address(host: "93.184.216.34", port: 443)
        server.timestampStart = 1700000000.0
        server.timestampTCPSetup = 1700000000.01
        server.timestampTLSSetup = 1700000000.03

        var post = HTTPRequest(
            method: "POST", scheme: "https", host: "example.com", port: 443, path: "/form?q=a+b&x=%C3%A9&empty",
            headers: ["Host": "example.com", "Content-Type": "application/x-www-form-urlencoded", "Cookie": "a=1; b=2"],
            timestampStart: 1700000000.05
        )
        try post.setText("name=J%C3%BCrgen&x=1")
        post.timestampEnd = 1700000000.06
        var html = HTTPResponse(statusCode: 200, headers: ["Content-Type": "text/html; charset=utf-8", "Content-Encoding": "gzip", "Set-Cookie": "sid=xyz; Path=/app; HttpOnly; Secure; SameSite=Lax"], timestampStart: 1700000000.1)
        try html.setText("<p>héllo ✓</p>")
        html.timestampEnd = 1700000000.2
        var first = HTTPFlow(request: post, clientConnection: client, serverConnection: server)
        first.response = html

        var get = HTTPRequest(method: "GET", scheme: "https", host: "example.com", port: 443, path: "/logo.png", headers: ["Host": "example.com"], timestampStart: 1700000001)
        get.timestampEnd = 1700000001
        var png = HTTPResponse(statusCode: 200, headers: ["Content-Type": "image/png", "Location": "/elsewhere"], rawContent: ByteBuffer(bytes: [0x89, 0x50, 0x4E, 0x47, 0, 0, 0, 13, 0xFF, 0xFE, 1, 2]), timestampStart: 1700000001.5)
        png.timestampEnd = 1700000001.5
        var second = HTTPFlow(request: get, clientConnection: client, serverConnection: server)
        second.response = png

        let failed = HTTPRequest(method: "GET", scheme: "http", host: "unreachable.test", port: 8081, path: "/", timestampStart: 1700000002)
        var third = HTTPFlow(request: failed, clientConnection: client)
        third.error = FlowError("Connection refused", timestamp: 1700000002)
        return [first, second, third]
    }

    /// The HAR 1.2 required fields (http://www.softwareishard.com/blog/har-12-spec/).
    static func validateHAR12(_ json: HARJSON) -> [String] {
        var problems: [String] = []
        func need(_ v: HARJSON?, _ keys: [String], _ path: String) {
            guard let v, case .object = v else {
                problems.append("\(path) is not an object")
                return
            }
            for k in keys where v[k] == nil { problems.append("\(path).\(k) is missing") }
        }
        let log = json["log"]
        need(log, ["version", "creator", "entries"], "log")
        need(log?["creator"], ["name", "version"], "log.creator")
        guard case .array(let entries)? = log?["entries"] else { return problems + ["log.entries is not an array"] }
        for (i, e) in entries.enumerated() {
            let p = "entries[\(i)]"
            need(e, ["startedDateTime", "time", "request", "response", "cache", "timings"], p)
            need(e["request"], ["method", "url", "httpVersion", "cookies", "headers", "queryString", "headersSize", "bodySize"], "\(p).request")
            need(e["response"], ["status", "statusText", "httpVersion", "cookies", "headers", "content", "redirectURL", "headersSize", "bodySize"], "\(p).response")
            need(e["timings"], ["send", "wait", "receive"], "\(p).timings")
            if case .string(let date)? = e["startedDateTime"], HARReader.parseISODate(date) == nil { problems.append("\(p).startedDateTime is not ISO 8601") }
            if let post = e["request"]?["postData"] { need(post, ["mimeType"], "\(p).request.postData") }
            if case .object(let content)? = e["response"]?["content"], !content.isEmpty {
                need(e["response"]?["content"], ["size", "mimeType"], "\(p).response.content")
            }
            for list in ["cookies", "headers", "queryString"] {
                if case .array(let items)? = e["request"]?[list] {
                    for item in items { need(item, ["name", "value"], "\(p).request.\(list)[]") }
                }
            }
        }
        return problems
    }

    @Test func exportIsValidHAR12() throws {
        var flows = try Self.syntheticFlows()
        flows += try HARReader.read(data: Self.fixture("chrome.har"))
        flows += try HARReader.read(data: Self.fixture("diff_data.har"))
        let data = try HARWriter.data(for: flows)
        let json = try HARReader.parse([UInt8](data))
        #expect(Self.validateHAR12(json) == [])
        #expect(json["log"]?["version"] == .string("1.2"))
        #expect(json["log"]?["creator"]?["name"] == .string("mitmproxy"))
        #expect(json["log"]?["pages"] == .array([]))
        // Foundation agrees that it is JSON.
        #expect((try? JSONSerialization.jsonObject(with: data)) != nil)
    }

    @Test func exportFields() throws {
        let json = HARWriter.har(for: try Self.syntheticFlows())
        guard case .array(let entries)? = json["log"]?["entries"] else {
            Issue.record("no entries")
            return
        }
        let post = entries[0]
        #expect(post["startedDateTime"] == .string("2023-11-14T22:13:20.050000+00:00"))
        #expect(post["request"]?["url"] == .string("https://example.com/form?q=a+b&x=%C3%A9&empty"))
        #expect(post["request"]?["queryString"] == .array([
            .object([("name", .string("q")), ("value", .string("a b"))]),
            .object([("name", .string("x")), ("value", .string("é"))]),
            .object([("name", .string("empty")), ("value", .string(""))]),
        ]))
        #expect(post["request"]?["cookies"] == .array([
            .object([("name", .string("a")), ("value", .string("1"))]),
            .object([("name", .string("b")), ("value", .string("2"))]),
        ]))
        #expect(post["request"]?["postData"]?["text"] == .string("name=J%C3%BCrgen&x=1"))
        #expect(post["request"]?["postData"]?["params"] == .array([
            .object([("name", .string("name")), ("value", .string("Jürgen"))]),
            .object([("name", .string("x")), ("value", .string("1"))]),
        ]))
        #expect(post["response"]?["content"]?["text"] == .string("<p>héllo ✓</p>"))
        #expect(post["response"]?["content"]?["encoding"] == nil)
        #expect(post["response"]?["content"]?["mimeType"] == .string("text/html; charset=utf-8"))
        if case .int(let size)? = post["response"]?["content"]?["size"], case .int(let compression)? = post["response"]?["content"]?["compression"] {
            #expect(size + compression == Array("<p>héllo ✓</p>".utf8).count)
        } else {
            Issue.record("content size missing")
        }
        #expect(post["response"]?["cookies"] == .array([
            .object([
                ("name", .string("sid")), ("value", .string("xyz")), ("path", .string("/app")), ("domain", .string("")),
                ("httpOnly", .bool(true)), ("secure", .bool(true)), ("sameSite", .string("Lax")),
            ])
        ]))
        #expect(post["serverIPAddress"] == .string("93.184.216.34"))
        #expect(post["timings"]?["connect"]?.number.map { abs($0 - 10) < 0.01 } == true)
        #expect(post["timings"]?["ssl"]?.number.map { abs($0 - 20) < 0.01 } == true)
        #expect(post["request"]?["headersSize"] == .int(145))

        let png = entries[1]
        #expect(png["response"]?["content"]?["encoding"] == .string("base64"))
        #expect(png["response"]?["content"]?["text"] == .string("iVBORwAAAA3//gEC"))
        #expect(png["response"]?["redirectURL"] == .string("/elsewhere"))
        // The second flow on the same server connection does not pay for connecting again.
        #expect(png["timings"]?["connect"] == .double(-1))
        #expect(png["request"]?["postData"] == nil)

        let failed = entries[2]
        #expect(failed["response"]?["status"] == .int(0))
        #expect(failed["response"]?["_error"] == .string("Connection refused"))
        #expect(failed["request"]?["url"] == .string("http://unreachable.test:8081/"))
        #expect(failed["serverIPAddress"] == nil)
        #expect(failed["time"] == .int(0))
    }

    @Test func exportReadsBack() throws {
        let flows = try Self.syntheticFlows()
        for compressed in [false, true] {
            let data = try HARWriter.data(for: flows, compressed: compressed)
            #expect(HARReader.isZlibCompressed([UInt8](data)) == compressed)
            let back = try HARReader.read(data: data)
            #expect(back.map(\.request.method) == flows.map(\.request.method))
            #expect(back.map(\.request.url) == flows.map(\.request.url))
            #expect(back.map { $0.response?.statusCode ?? 0 } == flows.map { $0.response?.statusCode ?? 0 })
            #expect(back.map { Self.body($0.request) } == flows.map { Self.body($0.request) })
            for (a, b) in zip(back, flows) {
                #expect(a.response.map(Self.body) ?? [] == b.response.map(Self.body) ?? [])
                #expect(abs(a.request.timestampStart - b.request.timestampStart) < 1e-5)
            }
        }
    }

    @Test func fixturesSurviveExportAndImport() throws {
        for name in ["chrome.har", "successful_log.har", "diff_data.har", "websocket.har", "event_stream.har"] {
            let flows = try HARReader.read(data: Self.fixture(name))
            let back = try HARReader.read(data: HARWriter.data(for: flows))
            #expect(back.map(\.request.url) == flows.map(\.request.url), "\(name)")
            #expect(back.map { $0.response.map(Self.body) } == flows.map { $0.response.map(Self.body) }, "\(name)")
        }
    }

    @Test func jsonLayoutMatchesPython() {
        let value: HARJSON = .object([("a", .array([.int(1), .double(2), .double(0.5)])), ("b", .string("é\u{1F600}\"\n")), ("c", .object([])), ("d", .null)])
        #expect(value.serialized() == "{\n    \"a\": [\n        1,\n        2.0,\n        0.5\n    ],\n    \"b\": \"\\u00e9\\ud83d\\ude00\\\"\\n\",\n    \"c\": {},\n    \"d\": null\n}")
    }

    // MARK: - mitmproxy reads our export

    /// mitmproxy 11.0.2 in the project's test venv, or `MITMPROXY_TEST_PYTHON`.
    static let mitmproxyPython: String? = {
        if let env = ProcessInfo.processInfo.environment["MITMPROXY_TEST_PYTHON"], FileManager.default.isExecutableFile(atPath: env) { return env }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let path = root.appendingPathComponent(".venv-mitmproxy-test/bin/python").path
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }()

    @Test(
        "mitmproxy 11's HAR importer reads our export",
        .enabled(if: mitmproxyPython != nil, "needs .venv-mitmproxy-test/bin/python with mitmproxy 11.0.2 (or MITMPROXY_TEST_PYTHON)")
    )
    func mitmproxyReadsOurExport() async throws {
        let python = try #require(Self.mitmproxyPython)
        var flows = try Self.syntheticFlows()
        flows += try HARReader.read(data: Self.fixture("chrome.har"))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("har-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("export.har")
        try HARWriter.data(for: flows).write(to: file)

        let script = """
            import sys, json, base64
            from mitmproxy.io import io
            out = []
            with open(sys.argv[1], 'rb') as f:
                for fl in io.FlowReader(f).stream():
                    out.append([fl.request.method, fl.request.url, fl.response.status_code,
                                base64.b64encode(fl.request.content or b'').decode(), base64.b64encode(fl.response.content or b'').decode()])
            print(json.dumps({'rows': out}))
            """
        let (status, output, errorOutput) = try await Self.runPython(python, script, [file.path])
        #expect(status == 0, "\(errorOutput)")
        guard case .array(let read)? = try HARReader.parse([UInt8](output))["rows"] else {
            Issue.record("no JSON from mitmproxy: \(String(decoding: output, as: UTF8.self))")
            return
        }
        #expect(read.count == flows.count)
        for (entry, flow) in zip(read, flows) {
            guard case .array(let f) = entry, f.count == 5 else {
                Issue.record("bad row \(entry)")
                continue
            }
            #expect(f[0] == .string(flow.request.method))
            #expect(f[1] == .string(flow.request.url))
            #expect(f[2] == .int(flow.response?.statusCode ?? 0))
            #expect(f[3] == .string(Data(Self.body(flow.request)).base64EncodedString()), "\(flow.request.url)")
            #expect(f[4] == .string(Data(flow.response.map(Self.body) ?? []).base64EncodedString()), "\(flow.request.url)")
        }
    }

    /// Runs `script` with mitmproxy's Python and returns what it prints.
    static func runPython(_ python: String, _ script: String, _ arguments: [String]) async throws -> (status: Int32, output: Data, errors: String) {
        let result = try await CommandRunner.run(python, ["-c", script] + arguments, timeout: 120)
        return (result.timedOut ? -1 : result.exitCode, result.stdout, result.errorOutput)
    }

    /// The document without the entries' `connection` member, which mitmproxy does not write.
    static func withoutConnection(_ json: HARJSON) -> HARJSON {
        guard case .array(let entries)? = json["log"]?["entries"] else { return json }
        let stripped: [HARJSON] = entries.map {
            guard case .object(let members) = $0 else { return $0 }
            return .object(members.filter { $0.0 != "connection" })
        }
        guard case .object(let log)? = json["log"] else { return json }
        return .object([("log", .object(log.map { $0.0 == "entries" ? ($0.0, .array(stripped)) : $0 }))])
    }

    /// For files whose bodies need no re-compression (gzip output differs between compressors),
    /// our import + export is byte for byte mitmproxy's import + `savehar`, but for `connection`.
    @Test(
        "our HAR export is mitmproxy's savehar output",
        .enabled(if: mitmproxyPython != nil, "needs .venv-mitmproxy-test/bin/python with mitmproxy 11.0.2 (or MITMPROXY_TEST_PYTHON)"),
        arguments: ["successful_log.har", "error_log.har", "websocket.har", "event_stream.har", "incomplete_log.har", "corrupted_gzip_body.har"]
    )
    func exportMatchesSavehar(file: String) async throws {
        let python = try #require(Self.mitmproxyPython)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("har-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent(file)
        try Self.fixture(file).write(to: input)
        let script = """
            import sys, json
            from mitmproxy.io import io
            from mitmproxy.addons.savehar import SaveHar
            with open(sys.argv[1], 'rb') as f:
                flows = list(io.FlowReader(f).stream())
            sys.stdout.write(json.dumps(SaveHar().make_har(flows), indent=4))
            """
        let result = try await Self.runPython(python, script, [input.path])
        #expect(result.status == 0, "\(result.errors)")
        let ours = try HARWriter.data(for: HARReader.read(data: Self.fixture(file)))
        let oursText = Self.withoutConnection(try HARReader.parse([UInt8](ours))).serialized()
        let theirs = String(decoding: result.output, as: UTF8.self)
        #expect(oursText == theirs)
    }

    @Test(
        "a WebSocket capture exports to the HAR mitmproxy's savehar writes, _webSocketMessages included",
        .enabled(if: mitmproxyPython != nil, "needs .venv-mitmproxy-test/bin/python with mitmproxy 11.0.2 (or MITMPROXY_TEST_PYTHON)")
    )
    func webSocketExportMatchesSavehar() async throws {
        let python = try #require(Self.mitmproxyPython)
        let capture = Fixtures.url("websocket.mitm")
        let script = """
            import sys, json
            from mitmproxy.io import io
            from mitmproxy.addons.savehar import SaveHar
            with open(sys.argv[1], 'rb') as f:
                flows = list(io.FlowReader(f).stream())
            sys.stdout.write(json.dumps(SaveHar().make_har(flows), indent=4))
            """
        let result = try await Self.runPython(python, script, [capture.path])
        #expect(result.status == 0, "\(result.errors)")
        let flows = try FlowReader.readAll(contentsOf: capture).compactMap(\.httpFlow)
        #expect(flows.contains { $0.websocket != nil })
        let ours = try HARWriter.data(for: flows)
        let oursText = Self.withoutConnection(try HARReader.parse([UInt8](ours))).serialized()
        let theirs = String(decoding: result.output, as: UTF8.self)
        #expect(theirs.contains("_webSocketMessages"))
        #expect(oursText == theirs)
    }
}
