import MitmCore
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

@testable import MitmServer

/// The relay and its endpoint handlers between two `EmbeddedChannel`s (client and server) on one
/// embedded loop, each behind NIO's frame codec: masking on the wire, codec errors, closing.
@Suite("WebSocketRelay")
struct WebSocketRelayTests {
    /// Both sides wired as `PipelineSetup.switchToWebSocket` wires them, the relay started.
    struct Pair {
        let loop = EmbeddedEventLoop()
        let client: EmbeddedChannel
        let server: EmbeddedChannel
        let relay: WebSocketRelay
        let services = TestServices()

        init(maxFrameSize: Int = 1 << 20) throws {
            client = EmbeddedChannel(loop: loop)
            server = EmbeddedChannel(loop: loop)
            let clientEndpoint = WebSocketEndpointHandler(side: .client)
            let serverEndpoint = WebSocketEndpointHandler(side: .server)
            for (channel, endpoint) in [(client, clientEndpoint), (server, serverEndpoint)] {
                try channel.pipeline.syncOperations.addHandlers([
                    WebSocketFrameEncoder(),
                    ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: maxFrameSize)),
                    endpoint,
                ])
                try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            }
            let request = HTTPRequest(method: "GET", scheme: "http", host: "example.com", port: 80, path: "/ws", httpVersion: "HTTP/1.1")
            let connection = services.connection(on: loop, mode: .regular)
            relay = WebSocketRelay(
                flow: HTTPFlow(request: request, clientConnection: connection.client),
                limits: .init(maxMessageSize: maxFrameSize),
                maxFrameSize: maxFrameSize,
                services: services.services,
                eventLoop: loop,
                client: clientEndpoint,
                server: serverEndpoint
            )
            relay.start()
            _ = runUntil(client) { services.services.openFlows.load(ordering: .relaxed) == 1 }
        }

        /// Feeds raw bytes as if `channel`'s peer sent them, and lets hooks complete.
        func receive(_ bytes: [UInt8], on channel: EmbeddedChannel) throws {
            try channel.writeInbound(ByteBuffer(bytes: bytes))
            _ = runUntil(channel, iterations: 20) { false }
        }
    }

    static func frame(opcode: UInt8, payload: [UInt8], mask: [UInt8]?) -> [UInt8] {
        var bytes: [UInt8] = [0x80 | opcode, (mask == nil ? 0 : 0x80) | UInt8(payload.count)]
        if let mask {
            bytes += mask + payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
        } else {
            bytes += payload
        }
        return bytes
    }

    /// The frames a channel wrote, decoded: (opcode, masking key, unmasked payload).
    static func written(_ channel: EmbeddedChannel) -> [(opcode: UInt8, mask: [UInt8]?, payload: [UInt8])] {
        var bytes = Array(drainOutbound(channel).readableBytesView)
        var frames: [(UInt8, [UInt8]?, [UInt8])] = []
        while bytes.count >= 2 {
            let length = Int(bytes[1] & 0x7F)
            let masked = bytes[1] & 0x80 != 0
            let start = masked ? 6 : 2
            guard length < 126, bytes.count >= start + length else { break }
            let mask = masked ? Array(bytes[2..<6]) : nil
            var payload = Array(bytes[start..<(start + length)])
            if let mask { payload = payload.enumerated().map { $0.element ^ mask[$0.offset % 4] } }
            frames.append((bytes[0] & 0x0F, mask, payload))
            bytes.removeFirst(start + length)
        }
        return frames
    }

    @Test("client frames go to the server masked with a fresh key each; server frames go to the client unmasked")
    func masking() throws {
        let pair = try Pair()
        try pair.receive(Self.frame(opcode: 1, payload: Array("one".utf8), mask: [9, 9, 9, 9]), on: pair.client)
        try pair.receive(Self.frame(opcode: 1, payload: Array("two".utf8), mask: [9, 9, 9, 9]), on: pair.client)
        let toServer = Self.written(pair.server)
        #expect(toServer.map(\.payload) == [Array("one".utf8), Array("two".utf8)])
        #expect(toServer.allSatisfy { $0.mask != nil })
        #expect(toServer[0].mask != toServer[1].mask || toServer[0].mask != [9, 9, 9, 9], "keys are fresh, not the client's")

        try pair.receive(Self.frame(opcode: 2, payload: [1, 2, 3], mask: nil), on: pair.server)
        let toClient = Self.written(pair.client)
        #expect(toClient.count == 1)
        #expect(toClient.first?.mask == nil)
        #expect(toClient.first?.payload == [1, 2, 3])
    }

    @Test("a frame over the size limit (NIO's decoder refuses it) closes with 1009 to its sender")
    func oversizedFrame() throws {
        let pair = try Pair(maxFrameSize: 8)
        try pair.receive(Self.frame(opcode: 2, payload: Array(repeating: 7, count: 20), mask: nil), on: pair.server)
        let toServer = Self.written(pair.server)
        #expect(toServer.first?.opcode == 8)
        #expect(toServer.first.map { Int($0.payload[0]) << 8 | Int($0.payload[1]) } == 1009)
        let toClient = Self.written(pair.client)
        #expect(toClient.first.map { Int($0.payload[0]) << 8 | Int($0.payload[1]) } == 1001)
        #expect(runUntil(pair.client) { isClosed(pair.client) && isClosed(pair.server) })
        #expect(runUntil(pair.client) { pair.services.services.openFlows.load(ordering: .relaxed) == 0 })
        #expect(pair.services.logs.messages.contains { $0.contains("WebSocket protocol error from server: frame larger than the limit of 8 bytes") })
    }

    @Test("a close from the client reaches the server; the server's echo reaches the client; both close")
    func closingHandshake() throws {
        let pair = try Pair()
        try pair.receive(Self.frame(opcode: 8, payload: [0x03, 0xE8] + Array("bye".utf8), mask: [1, 2, 3, 4]), on: pair.client)
        #expect(Self.written(pair.server).first?.payload == [0x03, 0xE8] + Array("bye".utf8))
        #expect(!isClosed(pair.client))
        try pair.receive(Self.frame(opcode: 8, payload: [0x03, 0xE8], mask: nil), on: pair.server)
        #expect(Self.written(pair.client).first?.payload == [0x03, 0xE8])
        #expect(runUntil(pair.client) { isClosed(pair.client) && isClosed(pair.server) })
        #expect(runUntil(pair.client) { pair.services.services.openFlows.load(ordering: .relaxed) == 0 })
    }
}
