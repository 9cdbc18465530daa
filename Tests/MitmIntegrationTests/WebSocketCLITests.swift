import Foundation
import MitmTestSupport
import Testing

/// mitmdump with a live WebSocket connection: the lines it prints, and `-w` / `-nr`.
@Suite("mitmdump WebSocket", .timeLimit(.minutes(1)))
struct WebSocketCLITests {
    @Test("mitmdump prints WebSocket messages and the close; -w saves the flow with its messages; -nr shows them")
    func dumpAndSave() async throws {
        try await PythonWebSocketClient.requireAvailable()
        try await withLoopbackOrigin(.plain) { origin in
            let directory = try temporaryDirectory()
            let capture = directory + "/ws.mitm"
            let dump = try await RunningMitmDump.start([
                "--set", "confdir=\(directory)", "--listen-host", "127.0.0.1", "-p", "0", "-w", capture,
            ])
            defer { dump.kill() }
            let port = try await dump.waitForPort()
            let received = try await PythonWebSocketClient.run(
                port: port, url: "ws://127.0.0.1:\(origin.port)/ws", ca: directory + "/mitmproxy-ca-cert.pem",
                plan: [["text", "hi there"], ["recv"], ["close", 1000, "done"]]
            )
            #expect(received == [.text("hi there")])
            let server = "127.0.0.1:\(origin.port)/ws"
            _ = try await dump.waitForOutput(containing: "WebSocket connection closed by client")
            dump.interrupt()
            #expect(try await dump.waitForExit(timeout: 10) == 0)
            let live = dump.output
            #expect(live.contains("<< 101 Switching Protocols"), "\(live)")
            #expect(live.contains("-> WebSocket text message -> \(server)"), "\(live)")
            #expect(live.contains("<- WebSocket text message <- \(server)"), "\(live)")
            #expect(live.contains("WebSocket connection closed by client: 1000 done"), "\(live)")

            let read = try await CommandRunner.run(MitmDumpCLITests.binary.path, ["-n", "-r", capture], timeout: 20)
            #expect(read.exitCode == 0, "\(read)")
            #expect(read.output.contains("-> WebSocket text message -> \(server)"), "\(read.output)")
            #expect(read.output.contains("<- WebSocket text message <- \(server)"), "\(read.output)")
            #expect(read.output.contains("WebSocket connection closed by client: 1000 done"), "\(read.output)")
            let detailed = try await CommandRunner.run(MitmDumpCLITests.binary.path, ["-n", "-r", capture, "--flow-detail", "3"], timeout: 20)
            #expect(detailed.output.contains("hi there"), "message contents at flow detail 3: \(detailed.output)")
        }
    }

    @Test("Ctrl-C with a WebSocket still open: after the grace period it is closed, websocket_end runs and -w keeps it")
    func interruptWithOpenWebSocket() async throws {
        try await withLoopbackOrigin(.plain) { origin in
            let directory = try temporaryDirectory()
            let capture = directory + "/open.mitm"
            let dump = try await RunningMitmDump.start([
                "--set", "confdir=\(directory)", "--listen-host", "127.0.0.1", "-p", "0", "-w", capture,
            ])
            defer { dump.kill() }
            let port = try await dump.waitForPort()
            let connection = try await RawConnection.connect(port: port)
            try await connection.send(RawWebSocket.upgradeRequest(authority: "127.0.0.1:\(origin.port)"))
            #expect(await connection.waitForText("101 Switching Protocols"), "\(connection.receivedText)")
            try await connection.send(RawWebSocket.frame(opcode: 1, payload: Array("still here".utf8)))
            _ = try await dump.waitForOutput(containing: "<- WebSocket text message")
            dump.interrupt()
            #expect(try await dump.waitForExit(timeout: 15) == 0)
            await connection.close()
            let read = try await CommandRunner.run(MitmDumpCLITests.binary.path, ["-n", "-r", capture], timeout: 20)
            #expect(read.output.contains("-> WebSocket text message ->"), "the open connection was saved: \(read.output)")
            #expect(read.output.contains("WebSocket"), "\(read.output)")
        }
    }
}
