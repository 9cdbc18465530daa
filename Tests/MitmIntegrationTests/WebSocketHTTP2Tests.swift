import Foundation
import MitmAddons
import MitmCore
import MitmTestSupport
import Testing

/// WebSocket over HTTP/2 towards the client (RFC 8441), with Python's `h2` as a real HTTP/2 client
/// that frames the WebSocket by hand on its stream. Towards the server it is an HTTP/1.1 upgrade.
@Suite("WebSocket over HTTP/2 (RFC 8441)", .timeLimit(.minutes(1)))
struct WebSocketHTTP2Tests {
    /// Connects over TLS with ALPN h2, reads the SETTINGS, opens `path` with an extended CONNECT,
    /// sends one masked text frame and a close 1000, and prints what came back as JSON.
    static let script = """
        import json, os, socket, ssl, sys
        import h2.config, h2.connection, h2.events
        port, ca, protocol, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
        context = ssl.create_default_context(cafile=ca)
        context.set_alpn_protocols(["h2"])
        sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="localhost")
        out = {"alpn": sock.selected_alpn_protocol(), "settings": {}, "status": None, "frames": [], "ended": False, "reset": False}
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        stream_id = None
        buf = b""

        def frame(opcode, payload):
            mask = os.urandom(4)
            return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

        def take_frames():
            global buf
            while len(buf) >= 2:
                n, masked, off = buf[1] & 0x7F, bool(buf[1] & 0x80), 2
                if n == 126:
                    n, off = int.from_bytes(buf[2:4], "big"), 4
                if masked:
                    off += 4
                if len(buf) < off + n:
                    return
                out["frames"].append({"op": buf[0] & 0x0F, "masked": masked, "payload": buf[off:off + n].hex()})
                buf = buf[off + n:]

        def pump():
            global buf
            data = sock.recv(65535)
            if not data:
                raise EOFError("the proxy closed the connection")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RemoteSettingsChanged):
                    out["settings"].update({str(int(k)): v.new_value for k, v in event.changed_settings.items()})
                    out["got_settings"] = True
                elif isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id:
                    out["status"] = dict(event.headers)[":status"]
                    out["response_headers"] = dict(event.headers)
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream_id:
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    buf += event.data
                    take_frames()
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream_id:
                    out["ended"] = True
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream_id:
                    out["reset"] = True
            sock.sendall(conn.data_to_send())

        def until(condition):
            while not condition():
                pump()

        try:
            until(lambda: out.get("got_settings"))
            stream_id = conn.get_next_available_stream_id()
            conn.send_headers(stream_id, [
                (":method", "CONNECT"), (":protocol", protocol), (":scheme", "https"), (":path", path),
                (":authority", "localhost:%d" % port), ("sec-websocket-version", "13"),
            ])
            sock.sendall(conn.data_to_send())
            until(lambda: out["status"] is not None or out["reset"])
            if out["status"] != "200":
                sock.settimeout(3)
                try:
                    until(lambda: out["ended"] or out["reset"])
                except (socket.timeout, EOFError):
                    pass
            if out["status"] == "200":
                conn.send_data(stream_id, frame(0x1, b"hello h2"))
                sock.sendall(conn.data_to_send())
                until(lambda: len(out["frames"]) >= 1 or out["ended"] or out["reset"])
                conn.send_data(stream_id, frame(0x8, (1000).to_bytes(2, "big") + b"bye"))
                sock.sendall(conn.data_to_send())
                until(lambda: any(f["op"] == 8 for f in out["frames"]) or out["ended"] or out["reset"])
                # Our side ends too; then the proxy's END_STREAM (or a reset) closes the stream.
                if not out["ended"] and not out["reset"]:
                    conn.end_stream(stream_id)
                    sock.sendall(conn.data_to_send())
                sock.settimeout(3)
                try:
                    until(lambda: out["ended"] or out["reset"])
                except (socket.timeout, EOFError):
                    pass
                # The connection carries on: an ordinary request on a new stream.
                sock.settimeout(10)
                stream_id = conn.get_next_available_stream_id()
                out["status"], out["ended"], out["reset"], first_status = None, False, False, out["status"]
                conn.send_headers(stream_id, [(":method", "GET"), (":scheme", "https"), (":path", "/"), (":authority", "localhost:%d" % port)], end_stream=True)
                sock.sendall(conn.data_to_send())
                until(lambda: out["ended"] or out["reset"])
                out["after_status"], out["status"] = out["status"], first_status
        except Exception as error:
            out["error"] = repr(error)
        print(json.dumps(out))
        """

    struct Frame: Decodable, Equatable {
        var op: Int
        var masked: Bool
        var payload: String
    }

    struct Outcome: Decodable {
        var alpn: String?
        var settings: [String: Int]
        var status: String?
        var frames: [Frame]
        var ended: Bool
        var reset: Bool
        var error: String?
        /// The status of a GET sent on the same connection after the WebSocket stream.
        var after_status: String?
    }

    static func requireH2() async throws {
        if (try? await CommandRunner.run("python3", ["-c", "import h2"], timeout: 20))?.succeeded == true { return }
        _ = try? await CommandRunner.run("python3", ["-m", "pip", "install", "--quiet", "h2"], timeout: 120)
        guard (try? await CommandRunner.run("python3", ["-c", "import h2"], timeout: 20))?.succeeded == true else {
            try Test.cancel("Python's h2 is not installed and `pip install h2` failed: no HTTP/2 WebSocket client")
        }
    }

    /// Runs the client against the proxy on `port`; what it saw.
    static func runClient(port: Int, ca: String, protocol: String = "websocket", path: String = "/ws") async throws -> Outcome {
        let result = try await CommandRunner.run("python3", ["-c", script, String(port), ca, `protocol`, path], timeout: 30)
        guard result.succeeded, let line = result.output.split(separator: "\n").last,
            let outcome = try? JSONDecoder().decode(Outcome.self, from: Data(line.utf8))
        else {
            throw TestFailure("h2 WebSocket client failed: \(result)")
        }
        return outcome
    }

    /// A proxy in reverse mode in front of a plain HTTP/1.1 origin (which speaks WebSocket on `/ws`).
    static func withReverseProxy(
        addons: [any Addon],
        _ body: (LoopbackOrigin, ProxyHarness) async throws -> Void
    ) async throws {
        try await withLoopbackOrigin(.plain) { origin in
            let mode = try ProxyMode(parsing: "reverse:http://127.0.0.1:\(origin.port)")
            try await withProxy(addons: addons, configure: { $0.modes = [ProxyModeSpec(mode)] }) { proxy in
                try await body(origin, proxy)
            }
        }
    }

    static func hex(_ text: String) -> String {
        text.utf8.map { String(format: "%02x", $0) }.joined()
    }

    @Test("An h2 client opens a WebSocket with an extended CONNECT; the proxy advertises it and relays to an HTTP/1.1 origin")
    func extendedConnectEcho() async throws {
        try await Self.requireH2()
        let recorder = RecordingAddon()
        try await withLoopbackOrigin(.plain) { origin in
            let mode = try ProxyMode(parsing: "reverse:http://127.0.0.1:\(origin.port)")
            try await withProxy(addons: [recorder], configure: { $0.modes = [ProxyModeSpec(mode)] }) { proxy in
                let outcome = try await Self.runClient(port: proxy.port, ca: proxy.caCertificatePath)
                #expect(outcome.error == nil, "\(outcome)")
                #expect(outcome.alpn == "h2")
                #expect(outcome.settings["8"] == 1, "SETTINGS_ENABLE_CONNECT_PROTOCOL: \(outcome.settings)")
                #expect(outcome.settings["3"] == 100, "NIO's defaults stay: \(outcome.settings)")
                #expect(outcome.status == "200")
                #expect(outcome.frames.first == Frame(op: 1, masked: false, payload: Self.hex("hello h2")))
                let close = outcome.frames.first { $0.op == 8 }
                #expect(close?.payload.hasPrefix("03e8") == true, "close 1000 back: \(outcome.frames)")
                #expect(outcome.ended, "the proxy ends the stream with END_STREAM after the close: \(outcome)")
                #expect(outcome.after_status == "200", "the HTTP/2 connection still serves other streams: \(outcome)")

                let flow = try #require(await recorder.endedWebSocket(), "\(recorder.events)")
                #expect(flow.request.method == "CONNECT")
                #expect(flow.request.path == "/ws")
                #expect(flow.request.httpVersion == "HTTP/2.0")
                #expect(flow.metadata[HTTPFlow.extendedConnectProtocolKey] == "websocket")
                #expect(flow.response?.statusCode == 101, "the server's answer is recorded")
                let websocket = try #require(flow.websocket)
                #expect(websocket.messages.map(\.fromClient) == [true, false])
                #expect(websocket.messages.map(\.text) == ["hello h2", "hello h2"])
                #expect(websocket.closeCode == 1000)
                #expect(websocket.closedByClient == true)
                #expect(flow.error == nil)

                let upgrade = try #require(origin.requests.first { $0.uri == "/ws" }, "origin saw \(origin.requests)")
                #expect(upgrade.method == "GET")
                #expect(upgrade.httpVersion == "HTTP/1.1")
                #expect(upgrade.header("upgrade")?.lowercased() == "websocket")
                #expect(upgrade.header("sec-websocket-key") != nil)
                #expect(origin.webSocketMessages == [Array("hello h2".utf8)])
                #expect(await poll { proxy.server.openFlowCount == 0 }, "the flow is closed")
            }
        }
    }

    /// A reverse proxy in front of a server that answers every connection with `reply` (sent as
    /// soon as it connects: the loopback origin itself does not answer a declined WebSocket upgrade).
    static func withCannedServer(
        _ reply: String,
        addons: [any Addon],
        _ body: (ProxyHarness) async throws -> Void
    ) async throws {
        let server = try await TCPOrigin.start(.greeting(reply))
        do {
            let mode = try ProxyMode(parsing: "reverse:http://\(server.address)")
            try await withProxy(addons: addons, configure: { $0.modes = [ProxyModeSpec(mode)] }) { proxy in
                try await body(proxy)
            }
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }

    @Test("A refusal from the server (403) is forwarded as the stream's response; no WebSocket follows")
    func refusedByServer() async throws {
        try await Self.requireH2()
        let recorder = RecordingAddon()
        let reply = "HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno"
        try await Self.withCannedServer(reply, addons: [recorder]) { proxy in
            let outcome = try await Self.runClient(port: proxy.port, ca: proxy.caCertificatePath)
            #expect(outcome.error == nil, "\(outcome)")
            #expect(outcome.status == "403")
            #expect(outcome.ended || outcome.reset, "the stream is over: \(outcome)")
            #expect(await recorder.wait(for: .response))
            let flow = try #require(recorder.flows(at: .response).last)
            #expect(flow.request.method == "CONNECT")
            #expect(flow.response?.statusCode == 403)
            #expect(flow.websocket == nil)
            #expect(recorder.count(of: .websocketStart) == 0)
        }
    }

    @Test("A server that answers 200 without switching: the client gets 502, not a 2xx that would mean 'open'")
    func serverDidNotSwitch() async throws {
        try await Self.requireH2()
        let recorder = RecordingAddon()
        let reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        try await Self.withCannedServer(reply, addons: [recorder]) { proxy in
            let outcome = try await Self.runClient(port: proxy.port, ca: proxy.caCertificatePath)
            #expect(outcome.error == nil, "\(outcome)")
            #expect(outcome.status == "502")
            #expect(await recorder.wait(for: .error))
            let flow = try #require(recorder.flows(at: .error).last)
            #expect(flow.error?.message.contains("did not switch to WebSocket") == true, "\(String(describing: flow.error))")
            #expect(flow.websocket == nil)
        }
    }

    @Test("An extended CONNECT for another protocol is refused with 501")
    func otherProtocolRefused() async throws {
        try await Self.requireH2()
        try await Self.withReverseProxy(addons: []) { origin, proxy in
            let outcome = try await Self.runClient(port: proxy.port, ca: proxy.caCertificatePath, protocol: "connect-udp")
            #expect(outcome.error == nil, "\(outcome)")
            #expect(outcome.status == "501")
            #expect(origin.requests.isEmpty, "nothing reached the origin: \(origin.requests)")
        }
    }
}
