import Foundation
import MitmAddons
import MitmCore
import NIOCore
import Testing

// Expected texts are mitmdump 11.0.2's own output for the same exchanges (captured with
// `mitmdump --flow-detail N > file` against a local server), with only the flows' values changed.

@Suite struct DumperTests {
    // MARK: - Flow detail 1: one line per flow

    @Test func getWith200() async throws {
        let output = try await dump(makeFlow(response: response(200, body: "hello world\n")))
        #expect(
            output == """
                127.0.0.1:57060: GET http://127.0.0.1:18081/
                              << 200 OK 12b

                """
        )
    }

    @Test func postWithBody() async throws {
        let flow = makeFlow(
            method: "POST",
            path: "/post",
            requestHeaders: ["Content-Type": "application/x-www-form-urlencoded"],
            requestBody: "a=1&b=2",
            response: response(201, body: "created:a=1&b=2")
        )
        #expect(
            try await dump(flow) == """
                127.0.0.1:57060: POST http://127.0.0.1:18081/post
                              << 201 Created 15b

                """
        )
    }

    @Test func errorFlow() async throws {
        var flow = makeFlow(port: 18099, path: "/refused")
        flow.error = FlowError("[Errno 111] Connect call failed ('127.0.0.1', 18099)")
        let sink = MemoryOutputSink()
        var copy = flow
        try await Dumper(sink: sink).error(&copy, context: AddonContext())
        #expect(
            sink.text == """
                127.0.0.1:57060: GET http://127.0.0.1:18099/refused
                 << [Errno 111] Connect call failed ('127.0.0.1', 18099)

                """
        )
    }

    @Test func responseAndErrorBothPrinted() async throws {
        // The server closed mid-body: the response head arrived, its body did not.
        var failed = response(200, body: nil)
        failed.rawContent = nil
        var flow = makeFlow(path: "/close", response: failed)
        flow.error = FlowError("HTTP/1 protocol error: peer closed connection without sending complete message body")
        #expect(
            try await dump(flow, hook: .error) == """
                127.0.0.1:57060: GET http://127.0.0.1:18081/close
                              << 200 OK (content missing)
                 << HTTP/1 protocol error: peer closed connection without sending complete message body

                """
        )
    }

    @Test func httpsURL() async throws {
        let flow = makeFlow(
            scheme: "https",
            host: "example.com",
            port: 443,
            path: "/index.html",
            response: response(200, body: "hi")
        )
        #expect(
            try await dump(flow) == """
                127.0.0.1:57060: GET https://example.com/index.html
                              << 200 OK 2b

                """
        )
    }

    @Test func ipv6Client() async throws {
        // mitmproxy 11: "[::1]:56562: GET …" and, for a 9-character version, arrows in column 1.
        let flow = makeFlow(client: Address(host: "::1", port: 56562), response: response(200, body: "hello world\n"))
        #expect(
            try await dump(flow) == """
                [::1]:56562: GET http://127.0.0.1:18081/
                          << 200 OK 12b

                """
        )
        var h2 = makeFlow(
            client: Address(host: "::1", port: 56562),
            httpVersion: "HTTP/2.0",
            path: "/v6",
            response: response(200, body: "hello world\n")
        )
        h2.response?.httpVersion = "HTTP/1.1"
        #expect(
            try await dump(h2) == """
                [::1]:56562: GET http://127.0.0.1:18081/v6 HTTP/2.0
                 << HTTP/1.1 200 OK 12b

                """
        )
    }

    @Test func ipv4MappedAndLongIPv6Clients() async throws {
        let mapped = makeFlow(client: Address(host: "::ffff:10.0.0.1", port: 1234), response: response(204, body: ""))
        #expect(try await dump(mapped).hasPrefix("10.0.0.1:1234: GET"))
        let long = makeFlow(
            client: Address(host: "2001:0db8:0:0:1:0:0:1", port: 443),
            response: response(204, body: "")
        )
        #expect(try await dump(long).hasPrefix("[2001:db8::1:0:0:1]:443: GET"))
    }

    @Test func sizes() async throws {
        #expect(try await dump(makeFlow(response: response(204, body: ""))).contains("<< 204 No Content 0b\n"))
        #expect(try await dump(makeFlow(response: response(200, bytes: 1229))).contains("<< 200 OK 1.2k\n"))
        #expect(try await dump(makeFlow(response: response(200, bytes: 3_565_158))).contains("<< 200 OK 3.4m\n"))
    }

    @Test func httpVersionShownOnlyWhenNotMatchingHTTP1() async throws {
        var http10 = makeFlow(httpVersion: "HTTP/1.0", response: response(200, body: "hello world\n"))
        http10.response?.httpVersion = "HTTP/1.1"
        #expect(
            try await dump(http10) == """
                127.0.0.1:57060: GET http://127.0.0.1:18081/ HTTP/1.0
                     << HTTP/1.1 200 OK 12b

                """
        )
        // HTTP/2 both sides: the version on both lines, and the standard reason phrase.
        var h2 = makeFlow(httpVersion: "HTTP/2.0", response: response(200, body: "ok"))
        h2.response?.httpVersion = "HTTP/2.0"
        h2.response?.reason = ""
        #expect(
            try await dump(h2) == """
                127.0.0.1:57060: GET http://127.0.0.1:18081/ HTTP/2.0
                     << HTTP/2.0 200 OK 2b

                """
        )
    }

    @Test func longURLIsShortenedToTheTerminalAtDetailOne() async throws {
        let path = "/a/very/long/path/that/goes/on/and/on/and/on/and/on/and/on/and/on/forever?q=1"
        let flow = makeFlow(path: path, response: response(200, body: "hello world\n"))
        // 80 columns: 55 characters of URL, then an ellipsis.
        #expect(
            try await dump(flow).hasPrefix(
                "127.0.0.1:57060: GET http://127.0.0.1:18081/a/very/long/path/that/goes/on/an…\n"
            )
        )
        #expect(try await dump(flow, terminalWidth: 200).contains("forever?q=1\n"))
        #expect(try await dump(flow, options: DumperOptions(flowDetail: 2)).contains("forever?q=1\n"))
    }

    @Test func showHostUsesTheHostHeader() async throws {
        let flow = makeFlow(
            path: "/hosty",
            requestHeaders: ["Host": "example.org"],
            response: response(200, body: "hello world\n")
        )
        #expect(try await dump(flow).hasPrefix("127.0.0.1:57060: GET http://127.0.0.1:18081/hosty\n"))
        #expect(
            try await dump(flow, options: DumperOptions(showHost: true)).hasPrefix(
                "127.0.0.1:57060: GET http://example.org/hosty\n"
            )
        )
    }

    @Test func replayedFlows() async throws {
        var request = makeFlow(response: response(200, body: "ok"))
        request.isReplay = "request"
        #expect(try await dump(request).hasPrefix("[replay]: GET http://127.0.0.1:18081/\n"))
        var reply = makeFlow(response: response(200, body: "ok"))
        reply.isReplay = "response"
        #expect(try await dump(reply).hasSuffix("\n[replay]      << 200 OK 2b\n"))
    }

    @Test func controlCharactersAreEscaped() async throws {
        var flow = makeFlow(response: response(200, body: "ok"))
        flow.response?.reason = "Bad\u{01}Reason"
        flow.error = FlowError("a\u{07}b")
        #expect(try await dump(flow, hook: .error).contains("<< 200 Bad.Reason 2b\n << a.b\n"))
    }

    @Test func durationIsOptional() async throws {
        var flow = makeFlow(response: response(200, body: "ok"))
        flow.request.timestampStart = 1000
        flow.response?.timestampEnd = 1000.143
        #expect(try await dump(flow).hasSuffix("<< 200 OK 2b\n"))
        #expect(try await dump(flow, options: DumperOptions(showDuration: true)).hasSuffix("<< 200 OK 2b 143ms\n"))
    }

    // MARK: - Flow detail 0, 2, 3, 4

    @Test func flowDetailZeroPrintsNothing() async throws {
        let sink = MemoryOutputSink()
        let dumper = Dumper(options: DumperOptions(flowDetail: 0, logConnections: false), sink: sink)
        var flow = makeFlow(response: response(200, body: "ok"))
        try await dumper.response(&flow, context: AddonContext())
        flow.error = FlowError("boom")
        try await dumper.error(&flow, context: AddonContext())
        var client = flow.clientConnection
        try await dumper.clientConnected(&client, context: AddonContext())
        #expect(sink.lines.isEmpty)
    }

    @Test func flowDetailTwoAddsHeaders() async throws {
        let flow = makeFlow(
            requestHeaders: [
                "Host": "127.0.0.1:18081", "User-Agent": "curl/7.88.1", "Accept": "*/*",
                "Proxy-Connection": "Keep-Alive",
            ],
            response: response(
                200,
                body: "hello world\n",
                headers: ["Content-Type": "text/plain", "Content-Length": "12"]
            )
        )
        #expect(
            try await dump(flow, options: DumperOptions(flowDetail: 2)) == """
                127.0.0.1:57060: GET http://127.0.0.1:18081/
                    Host: 127.0.0.1:18081
                    User-Agent: curl/7.88.1
                    Accept: */*
                    Proxy-Connection: Keep-Alive
                 << 200 OK 12b
                    Content-Type: text/plain
                    Content-Length: 12

                """
        )
    }

    @Test func headersAreEscapedAndTrimmed() async throws {
        let flow = makeFlow(
            requestHeaders: ["X-Ctl": "a\tb", "X-Empty": "", "X-Utf": "café", "X-Back": "c:\\dir"],
            response: response(204, body: "")
        )
        let output = try await dump(flow, options: DumperOptions(flowDetail: 2))
        #expect(output.contains("\n    X-Ctl: a\\tb\n    X-Empty:\n    X-Utf: caf\\xc3\\xa9\n    X-Back: c:\\\\dir\n"))
    }

    @Test func trailers() async throws {
        var flow = makeFlow(response: response(200, body: "ok"))
        flow.response?.trailers = ["grpc-status": "0"]
        #expect(
            try await dump(flow, options: DumperOptions(flowDetail: 2)).hasSuffix(
                " << 200 OK 2b\n    --- HTTP Trailers\n    grpc-status: 0\n"
            )
        )
    }

    @Test func flowDetailThreeShowsBodies() async throws {
        let flow = makeFlow(
            method: "POST",
            path: "/post",
            requestHeaders: ["Content-Type": "application/x-www-form-urlencoded"],
            requestBody: "a=1&b=2",
            response: response(201, body: "created:a=1&b=2", headers: ["Content-Type": "text/plain"])
        )
        // Bodies sit between blank lines; mitmproxy joins a body's lines with CRLF.
        #expect(
            try await dump(flow, options: DumperOptions(flowDetail: 3)) == """
                127.0.0.1:57060: POST http://127.0.0.1:18081/post
                    Content-Type: application/x-www-form-urlencoded

                    a: 1\r
                    b: 2

                 << 201 Created 15b
                    Content-Type: text/plain

                    created:a=1&b=2


                """
        )
    }

    @Test func flowDetailThreeCutsLongBodiesOff() async throws {
        let body = (0..<600).map { "line \($0)\n" }.joined()
        let flow = makeFlow(response: response(200, body: body))
        let three = try await dump(flow, options: DumperOptions(flowDetail: 3))
        #expect(three.hasSuffix("    line 510\r\n    line 511\n    (cut off)\n\n"))
        #expect(!three.contains("line 512"))
        let small = try await dump(flow, options: DumperOptions(flowDetail: 3, contentViewLinesCutoff: 2))
        #expect(small.hasSuffix(" << 200 OK 5.2k\n\n    line 0\r\n    line 1\n    (cut off)\n\n"))
        let four = try await dump(flow, options: DumperOptions(flowDetail: 4))
        #expect(four.hasSuffix("    line 598\r\n    line 599\n\n"))
        #expect(!four.contains("(cut off)"))
    }

    @Test func emptyAndMissingBodies() async throws {
        var flow = makeFlow(response: response(204, body: ""))
        #expect(
            try await dump(flow, options: DumperOptions(flowDetail: 3))
                == "127.0.0.1:57060: GET http://127.0.0.1:18081/\n\n << 204 No Content 0b\n\n"
        )
        flow.response?.rawContent = nil  // streamed
        #expect(
            try await dump(flow, options: DumperOptions(flowDetail: 3)).hasSuffix(
                " << 204 No Content (content missing)\n\n    content missing\n\n"
            )
        )
    }

    @Test func queryShownForBodylessRequests() async throws {
        let flow = makeFlow(host: "localhost", path: "/json?x=1", response: response(204, body: ""))
        #expect(
            try await dump(flow, options: DumperOptions(flowDetail: 3)).hasPrefix(
                "127.0.0.1:57060: GET http://localhost:18081/json?x=1\n\n    x: 1\n\n"
            )
        )
    }

    @Test func jsonBodiesArePrettyPrinted() async throws {
        let json = #"{"z":1,"a":[],"b":{},"c":"\u00e9\n","d":1.50,"e":true,"f":null,"g":1e5,"h":[1,{"i":-2}]}"#
        let flow = makeFlow(response: response(200, body: json, headers: ["Content-Type": "application/json"]))
        let expected = """
            {
                "z": 1,
                "a": [],
                "b": {},
                "c": "é\\n",
                "d": 1.5,
                "e": true,
                "f": null,
                "g": 100000.0,
                "h": [
                    1,
                    {
                        "i": -2
                    }
                ]
            }
            """
        let body = expected.split(separator: "\n").map { "    \($0)" }.joined(separator: "\r\n")
        #expect(try await dump(flow, options: DumperOptions(flowDetail: 3)).hasSuffix("\n\n\(body)\n\n"))
    }

    @Test func invalidJSONIsShownRaw() async throws {
        let flow = makeFlow(response: response(200, body: #"{"a": 1,}"#, headers: ["Content-Type": "application/json"]))
        #expect(try await dump(flow, options: DumperOptions(flowDetail: 3)).hasSuffix("\n\n    {\"a\": 1,}\n\n"))
    }

    @Test func binaryBodiesAsHexDump() async throws {
        let bytes: [UInt8] = [0x7F, 0x45, 0x4C, 0x46, 0x02, 0x01, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x03, 0x00, 0x3E]
        var reply = response(200, body: nil, headers: ["Content-Type": "application/octet-stream"])
        reply.rawContent = ByteBuffer(bytes: bytes)
        let output = try await dump(makeFlow(response: reply), options: DumperOptions(flowDetail: 3))
        #expect(
            output.hasSuffix(
                """
                    0000000000 7f 45 4c 46 02 01 01 00 00 00 00 00 00 00 00 00   .ELF............\r
                    0000000010 03 00 3e                                          ..>


                """
            )
        )
    }

    @Test func encodedBodiesAreDecoded() async throws {
        let plain = ByteBuffer(string: #"{"hello": "world"}"#)
        let gzipped = try ContentEncoding.encode(plain, encoding: "gzip")
        var reply = response(200, body: nil, headers: ["Content-Type": "application/json", "Content-Encoding": "gzip"])
        reply.rawContent = gzipped
        let output = try await dump(makeFlow(response: reply), options: DumperOptions(flowDetail: 3))
        #expect(output.contains(" << 200 OK \(gzipped.readableBytes)b\n"))  // the size on the wire
        #expect(output.hasSuffix("\n\n    {\r\n        \"hello\": \"world\"\r\n    }\n\n"))
    }

    // MARK: - Colour

    @Test func coloursOnlyWhenTheSinkSupportsThem() async throws {
        let flow = makeFlow(response: response(200, body: "hello world\n"))
        let plain = try await dump(flow)
        #expect(!plain.contains("\u{1B}"))
        let coloured = try await dump(flow, color: true)
        #expect(
            coloured == "127.0.0.1:57060: \u{1B}[32m\u{1B}[1mGET\u{1B}[0m \u{1B}[1mhttp://127.0.0.1:18081/\u{1B}[0m\n"
                + "             \u{1B}[1m <<\u{1B}[0m \u{1B}[32m\u{1B}[1m\u{1B}[25m200\u{1B}[0m"
                + " \u{1B}[32m\u{1B}[1mOK\u{1B}[0m \u{1B}[1m12b\u{1B}[0m\n"
        )
        var teapot = makeFlow(method: "DELETE", response: response(418, body: ""))
        teapot.error = FlowError("gone")
        let coloredTeapot = try await dump(teapot, hook: .error, color: true)
        #expect(coloredTeapot.contains("\u{1B}[31m\u{1B}[1mDELETE\u{1B}[0m"))
        #expect(coloredTeapot.contains("\u{1B}[31m\u{1B}[1m\u{1B}[5m418\u{1B}[0m"))
        #expect(coloredTeapot.hasSuffix("\u{1B}[31m\u{1B}[1m << gone\u{1B}[0m\n"))
    }

    // MARK: - Connection lines

    @Test func connectionLines() async throws {
        let sink = MemoryOutputSink()
        let utc = try #require(TimeZone(identifier: "UTC"))
        let dumper = Dumper(sink: sink, timeZone: utc, clock: { 1_700_000_000.1239 })
        var client = ClientConnection(
            peername: Address(host: "127.0.0.1", port: 57068),
            sockname: Address(host: "127.0.0.1", port: 8080),
            proxyMode: "regular"
        )
        var server = ServerConnection(address: Address(host: "localhost", port: 18081), usesTLS: false)
        server.peername = Address(host: "127.0.0.1", port: 18081)
        let context = AddonContext()
        try await dumper.clientConnected(&client, context: context)
        try await dumper.serverConnected(ServerConnectionHookData(client: client, server: server), context: context)
        server.address = Address(host: "127.0.0.1", port: 18081)
        try await dumper.serverDisconnected(ServerConnectionHookData(client: client, server: server), context: context)
        try await dumper.clientDisconnected(client, context: context)
        #expect(
            sink.lines == [
                "[22:13:20.123][127.0.0.1:57068] client connect",
                "[22:13:20.123][127.0.0.1:57068] server connect localhost:18081 (127.0.0.1:18081)",
                "[22:13:20.123][127.0.0.1:57068] server disconnect 127.0.0.1:18081",
                "[22:13:20.123][127.0.0.1:57068] client disconnect",
            ]
        )

        let coloured = Dumper(sink: MemoryOutputSink(color: true), timeZone: utc)
        #expect(
            coloured.logLine("client connect", client: Address(host: "::1", port: 5), at: 0)
                == "\u{1B}[36m\u{1B}[2m[00:00:00.000]\u{1B}[0m"
                + "\u{1B}[33m\u{1B}[2m[[::1]:5]\u{1B}[0m client connect\u{1B}[0m"
        )

        let quiet = MemoryOutputSink()
        try await Dumper(options: DumperOptions(logConnections: false), sink: quiet).clientConnected(
            &client,
            context: context
        )
        #expect(quiet.lines.isEmpty)
    }

    // MARK: - Human-readable values

    @Test(arguments: [
        (0, "0b"), (1023, "1023b"), (1024, "1.0k"), (1229, "1.2k"), (102_399, "100k"), (1_048_575, "1024k"),
        (1_048_576, "1.0m"), (3_565_158, "3.4m"), (104_805_171, "99.9m"), (1_073_741_824, "1.0g"),
        (5 * 1024 * 1024 * 1024 * 1024, "5.0t"), (2000 * 1024 * 1024 * 1024 * 1024, "2000t"),
    ])
    func prettySize(bytes: Int, text: String) {
        #expect(HumanFormat.size(bytes) == text)
    }

    @Test(arguments: [
        (0.0004, "0ms"), (0.1234, "123ms"), (0.9996, "1000ms"), (1, "1.00s"), (9.999, "10.00s"),
        (10, "10.0s"), (99.99, "100.0s"), (100, "100s"), (150.4, "150s"),
    ])
    func prettyDuration(seconds: Double, text: String) {
        #expect(HumanFormat.duration(seconds) == text)
    }

    @Test(arguments: [
        ("127.0.0.1", "127.0.0.1:80"), ("::1", "[::1]:80"), ("::ffff:10.0.0.1", "10.0.0.1:80"),
        ("2001:0db8:0000:0000:0000:0000:0000:0001", "[2001:db8::1]:80"), ("1:0:0:2:0:0:0:3", "[1:0:0:2::3]:80"),
        ("1:0:0:2:0:0:3:4", "[1::2:0:0:3:4]:80"), ("fe80::1%eth0", "[fe80::1%eth0]:80"), ("0.0.0.0", "*:80"),
        ("::", "*:80"), ("example.com", "example.com:80"),
    ])
    func formatAddress(host: String, text: String) {
        #expect(HumanFormat.address(Address(host: host, port: 80)) == text)
    }

    // MARK: - Output sinks

    @Test func memorySinkKeepsGroupsTogether() async {
        let sink = MemoryOutputSink()
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<50 {
                group.addTask { sink.write(lines: ["a\(index)", "b\(index)"]) }
            }
        }
        let lines = sink.lines
        #expect(lines.count == 100)
        for pair in stride(from: 0, to: lines.count, by: 2) {
            #expect(lines[pair].dropFirst() == lines[pair + 1].dropFirst())
        }
    }
}

// MARK: - Helpers

private enum Hook { case response, error }

private func dump(
    _ flow: HTTPFlow,
    hook: Hook = .response,
    options: DumperOptions = DumperOptions(),
    color: Bool = false,
    terminalWidth: Int = 80
) async throws -> String {
    let sink = MemoryOutputSink(color: color, terminalWidth: terminalWidth)
    let dumper = Dumper(options: options, sink: sink)
    var flow = flow
    switch hook {
    case .response: try await dumper.response(&flow, context: AddonContext())
    case .error: try await dumper.error(&flow, context: AddonContext())
    }
    return sink.text
}

private func makeFlow(
    client: Address = Address(host: "127.0.0.1", port: 57060),
    method: String = "GET",
    scheme: String = "http",
    host: String = "127.0.0.1",
    port: Int = 18081,
    httpVersion: String = "HTTP/1.1",
    path: String = "/",
    requestHeaders: Headers = [:],
    requestBody: String? = nil,
    response: HTTPResponse? = nil
) -> HTTPFlow {
    let request = HTTPRequest(
        method: method,
        scheme: scheme,
        host: host,
        port: port,
        path: path,
        httpVersion: httpVersion,
        headers: requestHeaders,
        rawContent: ByteBuffer(string: requestBody ?? "")
    )
    let connection = ClientConnection(
        peername: client,
        sockname: Address(host: "127.0.0.1", port: 8080),
        proxyMode: "regular"
    )
    var flow = HTTPFlow(request: request, clientConnection: connection)
    flow.response = response
    return flow
}

private func response(_ status: Int, body: String?, headers: Headers = [:]) -> HTTPResponse {
    HTTPResponse(statusCode: status, headers: headers, rawContent: body.map { ByteBuffer(string: $0) })
}

private func response(_ status: Int, bytes: Int) -> HTTPResponse {
    HTTPResponse(statusCode: status, rawContent: ByteBuffer(repeating: UInt8(ascii: "x"), count: bytes))
}
