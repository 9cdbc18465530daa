import Foundation
import MitmAddons
import MitmCore
import MitmTestSupport
import Testing

/// WebSocket through the proxy with real clients: Python's `websocket-client`, and hand-made frames.
@Suite("WebSocket", .timeLimit(.minutes(1)))
struct WebSocketTests {
    typealias Received = PythonWebSocketClient.Received

    @Test("ws:// echo of text and binary; messages, hooks and the client's close are recorded on the flow")
    func echoPlain() async throws {
        try await PythonWebSocketClient.requireAvailable()
        let recorder = RecordingAddon()
        try await withLoopbackOrigin(.plain) { origin in
            try await withProxy(addons: [recorder]) { proxy in
                let received = try await PythonWebSocketClient.run(
                    port: proxy.port, url: "ws://127.0.0.1:\(origin.port)/ws", ca: proxy.caCertificatePath,
                    plan: [["text", "hello"], ["recv"], ["binary", "00ff10"], ["recv"], ["ping", "p"], ["recv"], ["close", 1000, "bye"]]
                )
                #expect(received == [.text("hello"), .binary("00ff10"), .pong("p")])
                let flow = try #require(await recorder.endedWebSocket(), "\(recorder.events)")
                let websocket = try #require(flow.websocket)
                #expect(websocket.messages.map(\.fromClient) == [true, false, true, false])
                #expect(websocket.messages.map(\.kind) == [.text, .text, .binary, .binary])
                #expect(websocket.messages[0].text == "hello")
                #expect(Array(websocket.messages[3].content.readableBytesView) == [0x00, 0xFF, 0x10])
                #expect(websocket.closeCode == 1000)
                #expect(websocket.closeReason == "bye")
                #expect(websocket.closedByClient == true)
                #expect(websocket.timestampEnd != nil)
                #expect(flow.error == nil)
                #expect(flow.response?.statusCode == 101)
                #expect(recorder.httpHooks(for: flow.id) == [
                    .requestHeaders, .request, .responseHeaders, .response,
                    .websocketStart, .websocketMessage, .websocketMessage, .websocketMessage, .websocketMessage, .websocketEnd,
                ])
                #expect(recorder.flows(at: .response).last?.websocket != nil, "the response hook knows a WebSocket follows")
                let upgrade = try #require(origin.requests.first { $0.uri == "/ws" })
                #expect(upgrade.header("sec-websocket-extensions") == nil, "no compression offered to the server")
                #expect(origin.webSocketMessages == [Array("hello".utf8), [0x00, 0xFF, 0x10]])
                #expect(await waitForNoOpenFlows(proxy))
            }
        }
    }

    @Test("wss:// through CONNECT, trusting the proxy's CA")
    func echoTLS() async throws {
        try await PythonWebSocketClient.requireAvailable()
        let recorder = RecordingAddon()
        try await withLoopbackOrigin(.tlsHTTP1Only) { origin in
            try await withProxy(addons: [recorder], configure: { $0.sslInsecure = true }) { proxy in
                let received = try await PythonWebSocketClient.run(
                    port: proxy.port, url: "wss://localhost:\(origin.port)/ws", ca: proxy.caCertificatePath,
                    plan: [["text", "secure"], ["recv"], ["close", 1000, ""]]
                )
                #expect(received == [.text("secure")])
                let flow = try #require(await recorder.endedWebSocket())
                #expect(flow.request.scheme == "https")
                #expect(flow.websocket?.messages.map(\.text) == ["secure", "secure"])
                #expect(flow.websocket?.closeCode == 1000)
                #expect(origin.requests.first { $0.uri == "/ws" }?.isTLS == true)
            }
        }
    }

    @Test("wss:// to an origin that prefers HTTP/2: the upgrade still goes over HTTP/1.1")
    func echoTLSOriginPrefersH2() async throws {
        try await PythonWebSocketClient.requireAvailable()
        try await withLoopbackOrigin(.tlsH2) { origin in
            try await withProxy(configure: { $0.sslInsecure = true }) { proxy in
                let received = try await PythonWebSocketClient.run(
                    port: proxy.port, url: "wss://localhost:\(origin.port)/ws", ca: proxy.caCertificatePath,
                    plan: [["text", "h1 only"], ["recv"], ["close", 1000, ""]]
                )
                #expect(received == [.text("h1 only")])
            }
        }
    }

    @Test("an addon modifies messages: the server gets the edited text")
    func modify() async throws {
        try await PythonWebSocketClient.requireAvailable()
        try await withLoopbackOrigin(.plain) { origin in
            try await withProxy(addons: [ShoutingAddon()]) { proxy in
                let received = try await PythonWebSocketClient.run(
                    port: proxy.port, url: "ws://127.0.0.1:\(origin.port)/ws", ca: proxy.caCertificatePath,
                    plan: [["text", "quiet please"], ["recv"], ["close", 1000, ""]]
                )
                #expect(received == [.text("QUIET PLEASE")])
                #expect(origin.webSocketMessages == [Array("QUIET PLEASE".utf8)])
            }
        }
    }

    @Test("an addon drops one message and injects another")
    func dropAndInject() async throws {
        try await PythonWebSocketClient.requireAvailable()
        let recorder = RecordingAddon()
        try await withLoopbackOrigin(.plain) { origin in
            try await withProxy(addons: [DropAndInjectAddon(), recorder]) { proxy in
                let received = try await PythonWebSocketClient.run(
                    port: proxy.port, url: "ws://127.0.0.1:\(origin.port)/ws", ca: proxy.caCertificatePath,
                    plan: [["text", "drop me"], ["text", "inject"], ["recv"], ["recv"], ["close", 1000, ""]]
                )
                // The injected message goes out right after the hook; the echo of "inject" follows.
                #expect(received == [.text("injected by the addon"), .text("inject")])
                #expect(origin.webSocketMessages == [Array("inject".utf8)], "the dropped message never reached the server")
                let flow = try #require(await recorder.endedWebSocket())
                let messages = try #require(flow.websocket?.messages)
                #expect(messages.map(\.text) == ["drop me", "inject", "injected by the addon", "inject"])
                #expect(messages.map(\.dropped) == [true, false, false, false])
                #expect(messages.map(\.injected) == [false, false, true, false])
            }
        }
    }

    @Test("the server closes: its code and reason reach the client and the flow")
    func serverCloses() async throws {
        try await PythonWebSocketClient.requireAvailable()
        let recorder = RecordingAddon()
        try await withLoopbackOrigin(.plain) { origin in
            try await withProxy(addons: [recorder]) { proxy in
                let received = try await PythonWebSocketClient.run(
                    port: proxy.port, url: "ws://127.0.0.1:\(origin.port)/ws", ca: proxy.caCertificatePath,
                    plan: [["text", "server-close"], ["recv"]]
                )
                #expect(received == [.close(4001, "server says bye")])
                let flow = try #require(await recorder.endedWebSocket())
                #expect(flow.websocket?.closeCode == 4001)
                #expect(flow.websocket?.closeReason == "server says bye")
                #expect(flow.websocket?.closedByClient == false)
                #expect(flow.error == nil)
            }
        }
    }

    @Test("a fragmented message with a ping in between, sent in the same packet as the upgrade request")
    func fragmentedFromRawClient() async throws {
        let recorder = RecordingAddon()
        try await withLoopbackOrigin(.plain) { origin in
            try await withProxy(addons: [recorder]) { proxy in
                let raw = try await RawConnection.connect(port: proxy.port)
                defer { Task { await raw.close() } }
                var bytes = Array(RawWebSocket.upgradeRequest(authority: origin.authority()).utf8)
                bytes += RawWebSocket.frame(fin: false, opcode: 1, payload: Array("frag".utf8))
                bytes += RawWebSocket.frame(opcode: 9, payload: Array("ping!".utf8))
                bytes += RawWebSocket.frame(fin: false, opcode: 0, payload: Array("men".utf8))
                bytes += RawWebSocket.frame(opcode: 0, payload: Array("ted".utf8))
                try await raw.send(bytes)
                let gotBoth = await poll { RawWebSocket.frames(in: raw).count >= 2 }
                let frames = RawWebSocket.frames(in: raw)
                #expect(gotBoth, "\(raw.receivedText)")
                #expect(raw.receivedText.hasPrefix("HTTP/1.1 101 "), "\(raw.receivedText)")
                #expect(frames.contains(RawWebSocket.Parsed(fin: true, opcode: 10, masked: false, payload: Array("ping!".utf8))), "\(frames)")
                #expect(frames.contains(RawWebSocket.Parsed(fin: true, opcode: 1, masked: false, payload: Array("fragmented".utf8))), "\(frames)")
                #expect(origin.webSocketMessages == [Array("fragmented".utf8)], "one message, one frame to the server")
                #expect(recorder.flows(at: .websocketMessage).first?.websocket?.messages.first?.text == "fragmented")
                await raw.close()
                let flow = try #require(await recorder.endedWebSocket())
                #expect(flow.websocket?.closeCode == 1006, "the client left without a close frame")
            }
        }
    }

    @Test("an unmasked client frame is answered with close 1002 and recorded as the flow's error")
    func unmaskedClientFrame() async throws {
        let recorder = RecordingAddon()
        try await withLoopbackOrigin(.plain) { origin in
            try await withProxy(addons: [recorder]) { proxy in
                let raw = try await RawConnection.connect(port: proxy.port)
                try await raw.send(RawWebSocket.upgradeRequest(authority: origin.authority()))
                #expect(await raw.waitForText("\r\n\r\n"))
                try await raw.send(RawWebSocket.frame(opcode: 1, payload: Array("naked".utf8), mask: nil))
                #expect(await raw.waitForClose(), "the proxy closes the connection")
                let close = RawWebSocket.frames(in: raw).last
                #expect(close?.opcode == 8)
                #expect(close?.closeCode == 1002, "\(String(describing: close))")
                let flow = try #require(await recorder.endedWebSocket())
                #expect(flow.error?.message == "WebSocket protocol error from client: client frame is not masked")
                #expect(flow.websocket?.closeCode == 1002)
                #expect(origin.webSocketMessages.isEmpty)
                #expect(proxy.logs.messages.contains { $0.contains("WebSocket protocol error from client") }, "\(proxy.logs.messages)")
                await raw.close()
            }
        }
    }

    @Test("an upgrade the server does not take is an ordinary exchange, and the connection closes after it")
    func refusedUpgrade() async throws {
        try await withLoopbackOrigin(.plain) { origin in
            try await withProxy { proxy in
                let raw = try await RawConnection.connect(port: proxy.port)
                // An upgrade the origin does not speak: it answers as if there were none.
                let request = RawWebSocket.upgradeRequest(authority: origin.authority())
                    .replacingOccurrences(of: "/ws ", with: "/status/404 ")
                    .replacingOccurrences(of: "Upgrade: websocket", with: "Upgrade: foo")
                try await raw.send(request)
                #expect(await raw.waitForClose())
                #expect(raw.receivedText.hasPrefix("HTTP/1.1 404"), "\(raw.receivedText)")
                await raw.close()
            }
        }
    }

    @Test("a slow websocket_message hook: messages queue behind it and keep their order")
    func slowHook() async throws {
        try await PythonWebSocketClient.requireAvailable()
        let recorder = RecordingAddon()
        try await withLoopbackOrigin(.plain) { origin in
            try await withProxy(addons: [SlowAddon(), recorder]) { proxy in
                let texts = (1...8).map { "message \($0)" }
                let plan: [[Any]] = texts.map { ["text", $0] } + texts.map { _ in ["recv"] } + [["close", 1000, ""]]
                let received = try await PythonWebSocketClient.run(
                    port: proxy.port, url: "ws://127.0.0.1:\(origin.port)/ws", ca: proxy.caCertificatePath, plan: plan
                )
                #expect(received == texts.map { .text($0) })
                #expect(origin.webSocketMessages == texts.map { Array($0.utf8) })
                let flow = try #require(await recorder.endedWebSocket())
                #expect(flow.websocket?.messages.filter(\.fromClient).map(\.text) == texts)
            }
        }
    }

    @Test("the connection counts as an open flow until websocket_end; a server that drops it gives 1006")
    func openFlowAndServerDrop() async throws {
        let recorder = RecordingAddon()
        try await withLoopbackOrigin(.plain) { origin in
            try await withProxy(addons: [recorder]) { proxy in
                let raw = try await RawConnection.connect(port: proxy.port)
                try await raw.send(RawWebSocket.upgradeRequest(authority: origin.authority()))
                #expect(await raw.waitForText("\r\n\r\n"))
                #expect(await recorder.wait(for: .websocketStart))
                #expect(proxy.server.openFlowCount == 1, "an open WebSocket connection is an open flow")
                try await raw.send(RawWebSocket.frame(opcode: 1, payload: Array("server-drop".utf8)))
                #expect(await raw.waitForClose(), "the proxy closes the client's side too")
                let flow = try #require(await recorder.endedWebSocket())
                #expect(flow.websocket?.closeCode == 1006)
                #expect(flow.websocket?.closedByClient == false)
                #expect(flow.error == nil)
                #expect(await waitForNoOpenFlows(proxy))
                await raw.close()
            }
        }
    }

    private func waitForNoOpenFlows(_ proxy: ProxyHarness) async -> Bool {
        await poll { proxy.server.openFlowCount == 0 }
    }
}

/// Polls `condition` every 10 ms for up to `timeout` seconds.
func poll(timeout: Double = 5, _ condition: () -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        if condition() { return true }
        if Date() >= deadline { return false }
        try? await Task.sleep(for: .milliseconds(10))
    }
}
