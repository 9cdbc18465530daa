import Foundation
import MitmCore
import MitmTestSupport
import Testing

/// WebSocket in the other proxy modes: reverse, and upstream (through a second proxy).
@Suite("WebSocket in other modes", .timeLimit(.minutes(1)))
struct WebSocketModesTests {
    @Test("reverse mode: the client connects to the proxy as if it were the server")
    func reverse() async throws {
        try await PythonWebSocketClient.requireAvailable()
        let recorder = RecordingAddon()
        try await withLoopbackOrigin(.plain) { origin in
            let mode = ProxyMode.reverse(.init(scheme: "http", address: Address(host: "127.0.0.1", port: origin.port)))
            try await withProxy(addons: [recorder], configure: { $0.modes = [ProxyModeSpec(mode)] }) { proxy in
                let received = try await PythonWebSocketClient.run(
                    port: 0, url: "ws://127.0.0.1:\(proxy.port)/ws", ca: proxy.caCertificatePath,
                    plan: [["text", "reversed"], ["recv"], ["close", 1000, ""]]
                )
                #expect(received == [.text("reversed")])
                let flow = try #require(await recorder.endedWebSocket())
                #expect(flow.websocket?.messages.map(\.text) == ["reversed", "reversed"])
                #expect(flow.websocket?.closeCode == 1000)
            }
        }
    }

    @Test("upstream mode: the upgrade goes through the upstream proxy, which sees the messages too")
    func upstream() async throws {
        try await PythonWebSocketClient.requireAvailable()
        let ours = RecordingAddon()
        let theirs = RecordingAddon()
        try await withLoopbackOrigin(.plain) { origin in
            try await withProxy(addons: [theirs]) { upstream in
                let mode = ProxyMode.upstream(.init(scheme: .http, address: Address(host: "127.0.0.1", port: upstream.port)))
                try await withProxy(addons: [ours], configure: { $0.modes = [ProxyModeSpec(mode)] }) { proxy in
                    let received = try await PythonWebSocketClient.run(
                        port: proxy.port, url: "ws://127.0.0.1:\(origin.port)/ws", ca: proxy.caCertificatePath,
                        plan: [["text", "chained"], ["recv"], ["close", 1000, "end"]]
                    )
                    #expect(received == [.text("chained")])
                    let here = try #require(await ours.endedWebSocket())
                    let there = try #require(await theirs.endedWebSocket())
                    #expect(here.websocket?.messages.map(\.text) == ["chained", "chained"])
                    #expect(there.websocket?.messages.map(\.text) == ["chained", "chained"])
                    #expect(there.websocket?.closeCode == 1000)
                    #expect(there.websocket?.closeReason == "end")
                }
            }
        }
    }
}
