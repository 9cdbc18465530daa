import Foundation
import MitmCore
import MitmTestSupport
import NIOCore
import NIOPosix
import Testing

/// A server that sends its first frame in the same packet as its 101: the frame sits behind the
/// response in the proxy's HTTP decoder and must reach the client once the decoder leaves.
@Suite("WebSocket server that talks first", .timeLimit(.minutes(1)))
struct WebSocketEagerServerTests {
    /// Answers the first bytes it reads with a 101 and an unmasked text frame `welcome`, in one write.
    final class EagerUpgradeHandler: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let request = String(buffer: unwrapInboundIn(data))
            guard request.hasPrefix("GET ") else { return }  // later frames are ignored
            var out = ByteBuffer(
                string: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    + "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
            )
            out.writeBytes(RawWebSocket.frame(opcode: 1, payload: Array("welcome".utf8), mask: nil))
            context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        }
    }

    @Test("the frame right behind the 101 reaches the client")
    func frameBehindTheUpgrade() async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(EagerUpgradeHandler())
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        defer { server.close(promise: nil) }
        let port = try #require(server.localAddress?.port)
        let recorder = RecordingAddon()
        try await withProxy(addons: [recorder]) { proxy in
            let raw = try await RawConnection.connect(port: proxy.port)
            try await raw.send(RawWebSocket.upgradeRequest(authority: "127.0.0.1:\(port)"))
            let got = await poll { !RawWebSocket.frames(in: raw).isEmpty }
            #expect(got, "\(raw.receivedText)")
            #expect(RawWebSocket.frames(in: raw).first?.text == "welcome")
            #expect(await recorder.wait(for: .websocketMessage))
            #expect(recorder.flows(at: .websocketMessage).first?.websocket?.messages.first?.fromClient == false)
            await raw.close()
        }
    }
}
