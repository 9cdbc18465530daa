import Foundation
import MitmAddons
import MitmCore
import MitmTestSupport
import Testing

/// Python's `websocket-client` as a real WebSocket client through the proxy (it tunnels with
/// CONNECT, for `ws://` and `wss://` alike), driven by a plan of steps; it prints what it received
/// as JSON.
enum PythonWebSocketClient {
    static let script = """
        import json, sys, websocket
        port, url, ca, plan = int(sys.argv[1]), sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
        # Offer compression, which the proxy must strip (it relays frames without permessage-deflate).
        proxy = dict(http_proxy_host="127.0.0.1", http_proxy_port=port, proxy_type="http") if port else {}
        ws = websocket.create_connection(
            url, sslopt={"ca_certs": ca}, timeout=10,
            header=["Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"], **proxy)
        out = []
        for step in plan:
            kind = step[0]
            if kind == "text":
                ws.send(step[1])
            elif kind == "binary":
                ws.send_binary(bytes.fromhex(step[1]))
            elif kind == "ping":
                ws.ping(step[1])
            elif kind == "close":
                ws.close(status=step[1], reason=step[2].encode())
            elif kind == "recv":
                opcode, data = ws.recv_data(control_frame=True)
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    out.append({"op": "text", "data": data.decode()})
                elif opcode == websocket.ABNF.OPCODE_BINARY:
                    out.append({"op": "binary", "data": data.hex()})
                elif opcode == websocket.ABNF.OPCODE_CLOSE:
                    code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 0
                    out.append({"op": "close", "data": "%d %s" % (code, data[2:].decode())})
                elif opcode == websocket.ABNF.OPCODE_PONG:
                    out.append({"op": "pong", "data": data.decode()})
        print(json.dumps(out))
        """

    struct Received: Decodable, Equatable, CustomStringConvertible {
        var op: String
        var data: String
        var description: String { "\(op)(\(data))" }

        static func text(_ text: String) -> Received { Received(op: "text", data: text) }
        static func binary(_ hex: String) -> Received { Received(op: "binary", data: hex) }
        static func close(_ code: Int, _ reason: String) -> Received { Received(op: "close", data: "\(code) \(reason)") }
        static func pong(_ text: String) -> Received { Received(op: "pong", data: text) }
    }

    /// Whether `import websocket` works, installing `websocket-client` with pip once if it does not.
    static func available() async -> Bool {
        if (try? await CommandRunner.run("python3", ["-c", "import websocket"], timeout: 20))?.succeeded == true {
            return true
        }
        _ = try? await CommandRunner.run("python3", ["-m", "pip", "install", "--quiet", "websocket-client"], timeout: 120)
        return (try? await CommandRunner.run("python3", ["-c", "import websocket"], timeout: 20))?.succeeded == true
    }

    static func requireAvailable() async throws {
        guard await available() else {
            try Test.cancel("Python websocket-client is not installed and `pip install websocket-client` failed")
        }
    }

    /// Runs `plan` against `url` through the proxy on `port` (0: straight to `url`, as a client of a
    /// reverse proxy); returns what the client received.
    static func run(port: Int, url: String, ca: String, plan: [[Any]]) async throws -> [Received] {
        let planJSON = String(decoding: try JSONSerialization.data(withJSONObject: plan), as: UTF8.self)
        let result = try await CommandRunner.run("python3", ["-c", script, String(port), url, ca, planJSON], timeout: 30)
        guard result.succeeded else { throw TestFailure("websocket client failed: \(result)") }
        guard let line = result.output.split(separator: "\n").last,
            let received = try? JSONDecoder().decode([Received].self, from: Data(line.utf8))
        else {
            throw TestFailure("unexpected websocket client output: \(result)")
        }
        return received
    }
}

/// WebSocket frames by hand, for clients no library would be (fragments, unmasked client frames).
enum RawWebSocket {
    /// The upgrade request for `/ws` on `authority`, absolute-form (a plain proxy request).
    static func upgradeRequest(authority: String) -> String {
        "GET http://\(authority)/ws HTTP/1.1\r\nHost: \(authority)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    }

    /// One frame; `mask` nil sends it unmasked.
    static func frame(fin: Bool = true, opcode: UInt8, payload: [UInt8], mask: [UInt8]? = [1, 2, 3, 4]) -> [UInt8] {
        var bytes: [UInt8] = [(fin ? 0x80 : 0) | opcode]
        let maskBit: UInt8 = mask == nil ? 0 : 0x80
        precondition(payload.count < 126, "test frames are small")
        bytes.append(maskBit | UInt8(payload.count))
        if let mask {
            bytes += mask
            bytes += payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
        } else {
            bytes += payload
        }
        return bytes
    }

    struct Parsed: Equatable, CustomStringConvertible {
        var fin: Bool
        var opcode: UInt8
        var masked: Bool
        var payload: [UInt8]
        var text: String { String(decoding: payload, as: UTF8.self) }
        var closeCode: Int? { payload.count >= 2 ? Int(payload[0]) << 8 | Int(payload[1]) : nil }
        var description: String { "frame(op \(opcode), fin \(fin), masked \(masked), \(text))" }
    }

    /// The frames in `bytes` (what follows the 101's head), as far as they are complete.
    static func parse(_ bytes: ArraySlice<UInt8>) -> [Parsed] {
        var frames: [Parsed] = []
        var rest = bytes
        while rest.count >= 2 {
            let first = rest[rest.startIndex]
            let second = rest[rest.startIndex + 1]
            var length = Int(second & 0x7F)
            var offset = 2
            if length == 126 {
                guard rest.count >= 4 else { break }
                length = Int(rest[rest.startIndex + 2]) << 8 | Int(rest[rest.startIndex + 3])
                offset = 4
            } else if length == 127 {
                break  // not used in these tests
            }
            let masked = second & 0x80 != 0
            var mask: [UInt8] = []
            if masked {
                guard rest.count >= offset + 4 else { break }
                mask = Array(rest[(rest.startIndex + offset)..<(rest.startIndex + offset + 4)])
                offset += 4
            }
            guard rest.count >= offset + length else { break }
            var payload = Array(rest[(rest.startIndex + offset)..<(rest.startIndex + offset + length)])
            if masked {
                payload = payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
            }
            frames.append(Parsed(fin: first & 0x80 != 0, opcode: first & 0x0F, masked: masked, payload: payload))
            rest = rest.dropFirst(offset + length)
        }
        return frames
    }

    /// The frames a raw connection received after the 101's head.
    static func frames(in connection: RawConnection) -> [Parsed] {
        let received = connection.received
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        guard let end = received.indices.first(where: { received[$0...].starts(with: separator) }) else { return [] }
        return parse(received[(end + 4)...])
    }
}

/// Upper-cases every text message from the client.
struct ShoutingAddon: Addon {
    func websocketMessage(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        guard let index = flow.websocket?.messages.indices.last, flow.websocket!.messages[index].fromClient else { return }
        flow.websocket!.messages[index].text = flow.websocket!.messages[index].text.uppercased()
    }
}

/// Drops client messages that say `drop me`; on `inject`, also sends a message of its own to the client.
struct DropAndInjectAddon: Addon {
    func websocketMessage(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        guard let message = flow.websocket?.messages.last, message.fromClient else { return }
        if message.text == "drop me" {
            flow.websocket!.messages[flow.websocket!.messages.count - 1].dropped = true
        }
        if message.text == "inject" {
            var injected = WebSocketMessage(kind: .text, fromClient: false, text: "injected by the addon")
            injected.injected = true
            flow.websocket!.messages.append(injected)
        }
    }
}

extension RecordingAddon {
    /// The flow as websocket_end saw it, once it has run.
    func endedWebSocket(timeout: Double = 5) async -> HTTPFlow? {
        await wait(for: .websocketEnd, timeout: timeout)
        return flows(at: .websocketEnd).last
    }
}

/// Takes its time over every message, so frames pile up behind the hook.
struct SlowAddon: Addon {
    func websocketMessage(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        try await Task.sleep(for: .milliseconds(30))
    }
}
