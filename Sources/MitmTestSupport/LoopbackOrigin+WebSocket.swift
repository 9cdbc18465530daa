import NIOCore
import NIOHTTP1
import NIOWebSocket

/// The origin's `/ws` route: NIO's server upgrader, then an echo of every data frame.
///
/// | the client sends | the origin answers |
/// | --- | --- |
/// | a text or binary frame | the same frame back (same opcode, FIN and payload) |
/// | text `server-close` | close 4001 `server says bye` (it closes after the client's echo) |
/// | text `server-drop` | nothing: it closes the TCP connection without a close frame |
/// | ping | pong with the same payload |
/// | close | the same close back, then it closes the connection |
///
/// Every text and binary payload received is recorded (``LoopbackOrigin/webSocketMessages``).
enum OriginWebSocket {
    /// The upgrader that accepts `/ws` (any other path goes on as plain HTTP).
    static func upgrader(state: OriginState, connectionID: Int, isTLS: Bool) -> NIOWebSocketServerUpgrader {
        NIOWebSocketServerUpgrader(
            maxFrameSize: 1 << 24,
            automaticErrorHandling: true,
            shouldUpgrade: { channel, head in
                let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
                return channel.eventLoop.makeSucceededFuture(path == "/ws" ? HTTPHeaders() : nil)
            },
            upgradePipelineHandler: { channel, head in
                channel.eventLoop.makeCompletedFuture {
                    state.record(
                        RecordedRequest(
                            method: head.method.rawValue,
                            uri: head.uri,
                            httpVersion: "HTTP/\(head.version.major).\(head.version.minor)",
                            headers: head.headers.map { ($0.name, $0.value) },
                            body: [],
                            connectionID: connectionID,
                            isTLS: isTLS
                        )
                    )
                    let sync = channel.pipeline.syncOperations
                    // The request handler sits behind the upgrader; frames must not reach it.
                    if let handler = try? sync.handler(type: OriginRequestHandler.self) {
                        sync.removeHandler(handler, promise: nil)
                    }
                    try sync.addHandler(OriginWebSocketEchoHandler(state: state))
                }
            }
        )
    }
}

/// Echoes frames on one upgraded origin connection.
final class OriginWebSocketEchoHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let state: OriginState
    private var sentClose = false

    init(state: OriginState) {
        self.state = state
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        let payload = frame.unmaskedData
        switch frame.opcode {
        case .text, .binary, .continuation:
            state.webSocketMessages.withLock { $0.append(Array(payload.readableBytesView)) }
            if frame.opcode == .text, String(buffer: payload) == "server-drop" {
                context.close(promise: nil)
                return
            }
            if frame.opcode == .text, String(buffer: payload) == "server-close" {
                var close = ByteBuffer()
                close.writeInteger(UInt16(4001))
                close.writeString("server says bye")
                sentClose = true
                context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: close)), promise: nil)
                return
            }
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: frame.fin, opcode: frame.opcode, data: payload)), promise: nil)
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: payload)), promise: nil)
        case .connectionClose:
            if sentClose {
                context.close(promise: nil)
                return
            }
            sentClose = true
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: payload)))
                .whenComplete { _ in channel.close(promise: nil) }
        default:
            break
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
