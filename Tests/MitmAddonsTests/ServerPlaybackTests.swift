import Foundation
import MitmAddons
import MitmCore
import MitmIO
import NIOCore
import Testing

/// As mitmproxy's `test_serverplayback.py`: the addon on flows made on the spot, no sockets.
@Suite struct ServerPlaybackTests {
    static let client = ClientConnection(
        peername: Address(host: "127.0.0.1", port: 1), sockname: Address(host: "127.0.0.1", port: 8080), proxyMode: "regular"
    )

    /// A live request, as the proxy makes them.
    static func live(
        _ method: String = "GET",
        _ path: String = "/",
        host: String = "example.com",
        port: Int = 80,
        headers: [(String, String)] = [],
        body: String? = nil
    ) -> HTTPFlow {
        var fields = [("Host", port == 80 ? host : "\(host):\(port)")]
        fields += headers
        let request = HTTPRequest(
            method: method, scheme: "http", host: host, port: port, path: path,
            headers: Headers(fields), rawContent: body.map { ByteBuffer(string: $0) } ?? ByteBuffer()
        )
        return HTTPFlow(request: request, clientConnection: client, isLive: true)
    }

    /// A recorded flow answering `request` with `body`.
    static func recorded(_ flow: HTTPFlow, body: String, status: Int = 200, headers: Headers = [:], at time: Double? = nil) -> HTTPFlow {
        var flow = flow
        flow.isLive = false
        var response = HTTPResponse.make(status, body: body, headers: headers)
        if let time { response.timestampStart = time }
        flow.response = response
        return flow
    }

    static func answer(_ playback: ServerPlayback, _ flow: HTTPFlow) async throws -> HTTPFlow {
        var flow = flow
        try await playback.request(&flow, context: AddonContext())
        return flow
    }

    // MARK: - Matching

    @Test func answersAMatchingRequestWithTheRecordedResponse() async throws {
        let playback = ServerPlayback(flows: [Self.recorded(Self.live("GET", "/a?x=1"), body: "A")])
        let answered = try await Self.answer(playback, Self.live("GET", "/a?x=1"))
        #expect(answered.response?.text == "A")
        #expect(answered.isReplay == "response")
        #expect(playback.count == 0)
    }

    @Test func methodPathQueryHostAndPortAllTakePart() async throws {
        let recordings = [Self.recorded(Self.live("GET", "/a?x=1"), body: "A")]
        for other in [
            Self.live("POST", "/a?x=1"), Self.live("GET", "/b?x=1"), Self.live("GET", "/a?x=2"),
            Self.live("GET", "/a?x=1", host: "other.com"), Self.live("GET", "/a?x=1", port: 8080),
        ] {
            let answered = try await Self.answer(ServerPlayback(flows: recordings), other)
            #expect(answered.response == nil, "\(other.request.method) \(other.request.url)")
        }
    }

    @Test func ignoreHostAndIgnorePort() async throws {
        var options = ServerPlaybackOptions()
        options.ignoreHost = true
        let byHost = ServerPlayback(flows: [Self.recorded(Self.live(host: "a.com"), body: "A")], options: options)
        #expect(try await Self.answer(byHost, Self.live(host: "b.com")).response?.text == "A")
        let stillByPort = ServerPlayback(flows: [Self.recorded(Self.live(host: "a.com"), body: "A")], options: options)
        #expect(try await Self.answer(stillByPort, Self.live(host: "a.com", port: 81)).response == nil)

        options = ServerPlaybackOptions()
        options.ignorePort = true
        let byPort = ServerPlayback(flows: [Self.recorded(Self.live(port: 80), body: "A")], options: options)
        // The Host header names the port, but only the host part of it takes part.
        #expect(try await Self.answer(byPort, Self.live(port: 8080)).response?.text == "A")
    }

    @Test func ignoreParamsLeavesThoseQueryParametersOut() async throws {
        var options = ServerPlaybackOptions()
        options.ignoreParams = ["ts", "nonce"]
        let playback = ServerPlayback(flows: [Self.recorded(Self.live("GET", "/q?id=7&ts=100"), body: "A")], options: options)
        #expect(try await Self.answer(playback, Self.live("GET", "/q?id=8&ts=100")).response == nil)
        #expect(try await Self.answer(playback, Self.live("GET", "/q?id=7&ts=999&nonce=x")).response?.text == "A")
    }

    @Test func contentTakesPartUnlessIgnored() async throws {
        let recordings = [Self.recorded(Self.live("POST", "/p", body: "one"), body: "A")]
        #expect(try await Self.answer(ServerPlayback(flows: recordings), Self.live("POST", "/p", body: "two")).response == nil)
        var options = ServerPlaybackOptions()
        options.ignoreContent = true
        let ignoring = ServerPlayback(flows: recordings, options: options)
        #expect(try await Self.answer(ignoring, Self.live("POST", "/p", body: "two")).response?.text == "A")
    }

    @Test func useHeadersMakesTheirValuesTakePart() async throws {
        let recording = Self.recorded(Self.live(headers: [("Accept-Language", "de")]), body: "A")
        let plain = ServerPlayback(flows: [recording])
        #expect(try await Self.answer(plain, Self.live(headers: [("Accept-Language", "fr")])).response?.text == "A")
        var options = ServerPlaybackOptions()
        options.useHeaders = ["accept-language"]
        let strict = ServerPlayback(flows: [recording, recording], options: options)
        #expect(try await Self.answer(strict, Self.live(headers: [("Accept-Language", "fr")])).response == nil)
        #expect(try await Self.answer(strict, Self.live(headers: [("Accept-Language", "de")])).response?.text == "A")
        #expect(try await Self.answer(strict, Self.live()).response == nil, "a missing header differs from a present one")
    }

    @Test func ignorePayloadParamsInAnURLEncodedForm() async throws {
        let form = [("Content-Type", "application/x-www-form-urlencoded")]
        var options = ServerPlaybackOptions()
        options.ignorePayloadParams = ["csrf"]
        let playback = ServerPlayback(
            flows: [Self.recorded(Self.live("POST", "/f", headers: form, body: "user=ann&csrf=111"), body: "A")], options: options
        )
        #expect(try await Self.answer(playback, Self.live("POST", "/f", headers: form, body: "user=bob&csrf=111")).response == nil)
        #expect(try await Self.answer(playback, Self.live("POST", "/f", headers: form, body: "user=ann&csrf=222")).response?.text == "A")
    }

    @Test func ignorePayloadParamsInAMultipartForm() async throws {
        func multipart(user: String, token: String) -> HTTPFlow {
            let body = "--XyZ\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\n\(user)\r\n"
                + "--XyZ\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\n\(token)\r\n--XyZ--\r\n"
            return Self.live("POST", "/m", headers: [("Content-Type", "multipart/form-data; boundary=XyZ")], body: body)
        }
        var options = ServerPlaybackOptions()
        options.ignorePayloadParams = ["token"]
        let playback = ServerPlayback(flows: [Self.recorded(multipart(user: "ann", token: "1"), body: "A")], options: options)
        #expect(try await Self.answer(playback, multipart(user: "bob", token: "1")).response == nil)
        #expect(try await Self.answer(playback, multipart(user: "ann", token: "2")).response?.text == "A")
    }

    // MARK: - Consuming and reusing

    @Test func withoutReuseEachResponseIsServedOnceInOrder() async throws {
        let request = Self.live("GET", "/same")
        let playback = ServerPlayback(flows: [Self.recorded(request, body: "first"), Self.recorded(request, body: "second")])
        #expect(playback.count == 2)
        #expect(try await Self.answer(playback, Self.live("GET", "/same")).response?.text == "first")
        #expect(try await Self.answer(playback, Self.live("GET", "/same")).response?.text == "second")
        // Everything is used up: the request goes to its server, whatever `extra` says.
        #expect(try await Self.answer(playback, Self.live("GET", "/same")).response == nil)
        #expect(playback.count == 0)
    }

    @Test func reuseServesTheFirstResponseEveryTime() async throws {
        var options = ServerPlaybackOptions()
        options.reuse = true
        let request = Self.live("GET", "/same")
        let playback = ServerPlayback(flows: [Self.recorded(request, body: "first"), Self.recorded(request, body: "second")], options: options)
        for _ in 0..<3 {
            #expect(try await Self.answer(playback, Self.live("GET", "/same")).response?.text == "first")
        }
        #expect(playback.count == 2)
    }

    @Test func recordedFlowsWithoutAResponseAreSkipped() async throws {
        var failed = Self.live("GET", "/same")
        failed.isLive = false
        failed.error = FlowError("Server disconnected.")
        let playback = ServerPlayback(flows: [failed, Self.recorded(Self.live("GET", "/same"), body: "B")])
        #expect(try await Self.answer(playback, Self.live("GET", "/same")).response?.text == "B")
    }

    @Test func flowsThatAreNotLiveAreLeftAlone() async throws {
        let playback = ServerPlayback(flows: [Self.recorded(Self.live(), body: "A")])
        var fromFile = Self.live()
        fromFile.isLive = false
        #expect(try await Self.answer(playback, fromFile).response == nil)
        #expect(playback.count == 1)
    }

    // MARK: - Extra requests

    @Test func extraForwardLeavesTheFlowAlone() async throws {
        let playback = ServerPlayback(flows: [Self.recorded(Self.live("GET", "/known"), body: "A")])
        let flow = try await Self.answer(playback, Self.live("GET", "/unknown"))
        #expect(flow.response == nil)
        #expect(flow.error == nil)
        #expect(flow.isReplay == nil)
    }

    @Test func extraKillKillsTheFlow() async throws {
        var options = ServerPlaybackOptions()
        options.extra = try .init(parsing: "kill")
        let playback = ServerPlayback(flows: [Self.recorded(Self.live("GET", "/known"), body: "A")], options: options)
        let flow = try await Self.answer(playback, Self.live("GET", "/unknown"))
        #expect(flow.isKilled)
        #expect(flow.error?.message == "Connection killed.")
        #expect(flow.response == nil)
        #expect(!flow.isLive)
    }

    @Test(arguments: ["204", "404"])
    func extraStatusAnswersWithAnEmptyResponse(_ status: String) async throws {
        var options = ServerPlaybackOptions()
        options.extra = try .init(parsing: status)
        let playback = ServerPlayback(flows: [Self.recorded(Self.live("GET", "/known"), body: "A")], options: options)
        let flow = try await Self.answer(playback, Self.live("GET", "/unknown"))
        #expect(flow.response?.statusCode == Int(status))
        #expect(flow.response?.rawContent?.readableBytes == 0)
        #expect(flow.response?.headers["content-length"] == "0")
        #expect(flow.isReplay == "response")
    }

    @Test func extraRejectsOtherValues() {
        #expect(throws: ServerPlaybackOptionError.self) { try ServerPlaybackOptions.Extra(parsing: "drop") }
        #expect(throws: ServerPlaybackOptionError.self) { try ServerPlaybackOptions.Extra(parsing: "99") }
        #expect(throws: ServerPlaybackOptionError.self) { try ServerPlaybackOptions.Extra(parsing: "600") }
        let error = #expect(throws: ServerPlaybackOptionError.self) { try ServerPlaybackOptions.Extra(parsing: "drop") }
        #expect(error?.description.contains("'drop'") == true)
        #expect(error?.description.contains("forward") == true)
    }

    // MARK: - Flow files

    @Test func loadsRecordedFlowsFromAFlowFile() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("serverplayback-\(UUID().uuidString).mitm").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(FileManager.default.createFile(atPath: path, contents: nil))
        let writer = FlowWriter(fileHandle: try #require(FileHandle(forWritingAtPath: path)))
        try writer.write(Self.recorded(Self.live("GET", "/from-file"), body: "saved"))
        try writer.close()
        let playback = try ServerPlayback(paths: [path])
        #expect(playback.count == 1)
        #expect(try await Self.answer(playback, Self.live("GET", "/from-file")).response?.text == "saved")

        let missing = #expect(throws: FlowFileError.self) { try ServerPlayback(paths: [path + ".missing"]) }
        #expect(missing?.description.contains(".missing") == true)
    }

    // MARK: - Refresh

    @Test func refreshShiftsDatesAndCookieExpiry() async throws {
        let recordedAt = 1_000_000.0  // 1970-01-12 13:46:40 UTC
        let headers: Headers = [
            "Date": "Mon, 12 Jan 1970 13:46:40 GMT",
            "Expires": "Mon, 12 Jan 1970 14:46:40 GMT",
            "Last-Modified": "Sunday, 11-Jan-70 13:46:40 GMT",
            "Set-Cookie": "a=1; Expires=Tue, 13-Jan-1970 13:46:40 GMT; Path=/",
            "set-cookie": "b=2; expires=garbage; HttpOnly",
        ]
        var response = HTTPResponse.make(200, body: "x", headers: headers)
        response.timestampStart = recordedAt
        let day = 86_400.0
        response.refresh(now: recordedAt + day)
        #expect(response.headers["date"] == "Tue, 13 Jan 1970 13:46:40 GMT")
        #expect(response.headers["expires"] == "Tue, 13 Jan 1970 14:46:40 GMT")
        #expect(response.headers["last-modified"] == "Mon, 12 Jan 1970 13:46:40 GMT")
        #expect(response.headers.values(for: "set-cookie") == [
            "a=1; Expires=Wed, 14 Jan 1970 13:46:40 GMT; Path=/",
            "b=2; HttpOnly",
        ])
    }

    @Test func playbackRefreshesUnlessTurnedOff() async throws {
        let lastModified = "Sat, 01 Jan 2000 00:00:00 GMT"
        let recorded = Self.recorded(Self.live(), body: "A", headers: ["Last-Modified": lastModified], at: now() - 3600)
        let refreshing = try await Self.answer(ServerPlayback(flows: [recorded]), Self.live())
        #expect(refreshing.response?.headers["last-modified"] != lastModified)
        #expect(refreshing.response?.headers["last-modified"]?.hasPrefix("Sat, 01 Jan 2000 01:00:0") == true)
        var options = ServerPlaybackOptions()
        options.refresh = false
        let asRecorded = try await Self.answer(ServerPlayback(flows: [recorded], options: options), Self.live())
        #expect(asRecorded.response?.headers["last-modified"] == lastModified)
    }

    @Test func httpDatesParseInEveryForm() {
        let expected = 784_111_777.0  // Sun, 06 Nov 1994 08:49:37 GMT
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 08:49:37 GMT") == expected)
        #expect(HTTPDate.parse("Sunday, 06-Nov-94 08:49:37 GMT") == expected)
        #expect(HTTPDate.parse("Sun Nov  6 08:49:37 1994") == expected)
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 10:49:37 +0200") == expected)
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 03:49:37 -0500") == expected)
        #expect(HTTPDate.parse("not a date") == nil)
        #expect(HTTPDate.format(expected) == "Sun, 06 Nov 1994 08:49:37 GMT")
    }
}
