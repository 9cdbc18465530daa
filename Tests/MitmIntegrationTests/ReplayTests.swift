import Foundation
import MitmAddons
import MitmCore
import MitmServer
import MitmTestSupport
import NIOCore
import Testing

/// Server replay (`-S`) and client replay (`-C`) against real sockets.
@Suite("Replay", .timeLimit(.minutes(1)))
struct ReplayTests {
    static let client = ClientConnection(
        peername: Address(host: "127.0.0.1", port: 50000), sockname: Address(host: "127.0.0.1", port: 8080), proxyMode: "regular"
    )

    /// A request as it was recorded (not live).
    static func recordedRequest(_ method: String, _ path: String, port: Int, body: String = "") -> HTTPFlow {
        var headers: Headers = ["Host": "127.0.0.1:\(port)", "User-Agent": "recorded"]
        if !body.isEmpty { headers["Content-Length"] = String(body.utf8.count) }
        let request = HTTPRequest(
            method: method, scheme: "http", host: "127.0.0.1", port: port, path: path,
            headers: headers, rawContent: ByteBuffer(string: body), timestampStart: now() - 60
        )
        return HTTPFlow(request: request, clientConnection: client)
    }

    // MARK: - Server replay

    @Test("Server replay answers curl from a recorded flow while no origin runs")
    func serverReplayWithoutOrigin() async throws {
        let port = try await closedPort()
        var recorded = Self.recordedRequest("GET", "/recorded?x=1", port: port)
        recorded.response = HTTPResponse.make(201, body: "from the recording", headers: ["Content-Type": "text/plain", "X-Recorded": "yes"])
        let playback = ServerPlayback(flows: [recorded])
        let recorder = RecordingAddon()
        try await withProxy(addons: [playback, recorder]) { proxy in
            let t = try await Curl.transfer(["-x", proxy.proxyURL, "http://127.0.0.1:\(port)/recorded?x=1"])
            #expect(t.statusCode == 201, "\(t)")
            #expect(t.bodyText == "from the recording", "\(t)")
            #expect(t.header("x-recorded") == "yes", "\(t)")
            #expect(await recorder.wait(for: .response))
            let flow = try #require(recorder.flows.first)
            #expect(flow.isReplay == "response")
            #expect(flow.serverConnection == nil, "the server was never contacted")
            #expect(playback.count == 0)
        }
    }

    @Test("server_replay_extra=kill closes the client connection without an answer, and the flow records it")
    func serverReplayKillsExtraRequests() async throws {
        let port = try await closedPort()
        var recorded = Self.recordedRequest("GET", "/known", port: port)
        recorded.response = HTTPResponse.make(200, body: "known")
        var options = ServerPlaybackOptions()
        options.extra = .kill
        let recorder = RecordingAddon()
        try await withProxy(addons: [ServerPlayback(flows: [recorded], options: options), recorder]) { proxy in
            let t = try await Curl.transfer(["-x", proxy.proxyURL, "http://127.0.0.1:\(port)/unknown"])
            #expect(t.statusCode == 0, "no response at all: \(t)")
            #expect(t.command.exitCode == 52, "curl: empty reply from server: \(t)")
            #expect(await recorder.wait(for: .error))
            let flow = try #require(recorder.flows.first)
            #expect(flow.error?.message == "Connection killed.")
            #expect(recorder.httpHooks(for: flow.id) == [.requestHeaders, .request, .error])
            #expect(proxy.logs.contains("killed non-replay request"), "\(proxy.logs.messages)")
        }
    }

    // MARK: - Client replay

    @Test("Client replay sends three recorded requests in order, through the addons")
    func clientReplayInOrder() async throws {
        let recorder = RecordingAddon()
        try await withLoopbackOrigin { origin in
            let flows = [
                Self.recordedRequest("GET", "/echo?n=1", port: origin.port),
                Self.recordedRequest("POST", "/echo?n=2", port: origin.port, body: "second body"),
                Self.recordedRequest("GET", "/echo?n=3", port: origin.port),
            ]
            try await withProxy(addons: [recorder]) { proxy in
                let replay = ClientReplay(server: proxy.server, flows: flows)
                #expect(replay.count == 3)
                let replayed = await replay.run()
                #expect(replay.count == 0)
                #expect(origin.requests.map(\.uri) == ["/echo?n=1", "/echo?n=2", "/echo?n=3"])
                #expect(origin.requests[1].bodyString == "second body")
                #expect(origin.requests[0].header("user-agent") == "recorded")
                #expect(replayed.map(\.id) == flows.map(\.id), "replayed flows keep their ids, in order")
                for flow in replayed {
                    #expect(flow.response?.statusCode == 200, "\(flow.request.path): \(String(describing: flow.error))")
                    #expect(flow.isReplay == "request")
                    #expect(flow.error == nil)
                    #expect(recorder.httpHooks(for: flow.id) == [.requestHeaders, .request, .responseHeaders, .response])
                }
                let echo = try JSONDecoder().decode(EchoResponse.self, from: Data((replayed[1].response?.text ?? "").utf8))
                #expect(echo.body == "second body")
                #expect(recorder.flows(at: .request).allSatisfy { $0.isLive && $0.isReplay == "request" })
                #expect(recorder.flows(at: .requestHeaders).first?.request.rawContent == nil, "requestheaders comes before the body")
            }
        }
    }

    @Test("A replay to a closed port ends in a flow error, logged, and the error hook runs")
    func clientReplayToClosedPort() async throws {
        let port = try await closedPort()
        let recorder = RecordingAddon()
        try await withProxy(addons: [recorder]) { proxy in
            let replayed = await ClientReplay(server: proxy.server, flows: [Self.recordedRequest("GET", "/", port: port)]).run()
            let flow = try #require(replayed.first)
            #expect(flow.response == nil)
            #expect(flow.error?.message.contains("Error connecting to 127.0.0.1:\(port)") == true, "\(String(describing: flow.error))")
            #expect(recorder.httpHooks(for: flow.id) == [.requestHeaders, .request, .error])
            #expect(proxy.logs.contains("Error connecting"), "\(proxy.logs.messages)")
        }
    }

    @Test("Client replay of HTTPS requests honours ssl_insecure; without it the unknown CA is a flow error")
    func clientReplayOverTLS() async throws {
        try await withLoopbackOrigin(.tlsH2) { origin in
            var flow = Self.recordedRequest("GET", "/echo?tls", port: origin.port)
            flow.request.scheme = "https"
            try await withProxy(configure: { $0.sslInsecure = true }) { proxy in
                let replayed = await ClientReplay(server: proxy.server, flows: [flow]).run()
                #expect(replayed.first?.response?.statusCode == 200, "\(String(describing: replayed.first?.error))")
                #expect(replayed.first?.serverConnection?.tls != nil)
            }
            try await withProxy { proxy in
                let replayed = await ClientReplay(server: proxy.server, flows: [flow]).run()
                #expect(replayed.first?.response == nil)
                #expect(replayed.first?.error?.message.contains("TLS handshake failed") == true, "\(String(describing: replayed.first?.error))")
            }
            #expect(origin.requests.map(\.uri) == ["/echo?tls"])
        }
    }

    @Test("Client replay runs without a listener (mitmdump -n -C), and skips flows it cannot replay")
    func clientReplayWithoutListener() async throws {
        let recorder = RecordingAddon()
        try await withLoopbackOrigin { origin in
            var options = ProxyOptions()
            options.confdir = try ProxyHarness.makeConfdir()
            defer { try? FileManager.default.removeItem(atPath: options.confdir) }
            let server = try ProxyServer(options: options, addons: [recorder])
            var streamed = Self.recordedRequest("GET", "/echo?streamed", port: origin.port)
            streamed.request.rawContent = nil
            let replayed = await ClientReplay(
                server: server,
                flows: [streamed, Self.recordedRequest("GET", "/echo?n=1", port: origin.port)],
                concurrency: -1
            ).run()
            await server.shutdown(grace: 1)
            #expect(replayed.count == 1)
            #expect(replayed.first?.response?.statusCode == 200)
            #expect(origin.requests.map(\.uri) == ["/echo?n=1"])
        }
    }

    @Test("Server replay answers client replay: a recording replayed against itself needs no server")
    func clientReplayAnsweredByServerReplay() async throws {
        let port = try await closedPort()
        var recorded = Self.recordedRequest("GET", "/both", port: port)
        recorded.response = HTTPResponse.make(200, body: "replayed both ways")
        try await withProxy(addons: [ServerPlayback(flows: [recorded])]) { proxy in
            let replayed = await ClientReplay(server: proxy.server, flows: [recorded]).run()
            #expect(replayed.first?.response?.text == "replayed both ways")
            #expect(replayed.first?.error == nil)
        }
    }
}
