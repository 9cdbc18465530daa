import NIOCore

/// Holds back the first bytes of a connection until `decide` can tell what they are (TLS, HTTP/1,
/// HTTP/2, something else), then lets `decide`'s caller rebuild the pipeline behind it and replays
/// the held bytes into the new handlers when it is removed: mitmproxy's peek, the way NIO's
/// `SNIHandler` does it. An input-closed event (a FIN on a half-closable channel) that arrives
/// meanwhile is held too and replayed after the bytes.
final class ProtocolPeekHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    enum Decision {
        /// Not enough bytes yet.
        case needMoreData
        /// Decided: the closure reconfigures the pipeline; the held bytes follow once this handler
        /// is removed (the closure must remove it, now or later).
        case decided((ChannelHandlerContext) -> Void)
    }

    private var buffered: ByteBuffer?
    private let decide: (ByteBuffer) -> Decision
    private var isDecided = false
    private var heldInputClosed = false
    private let limit: Int
    private var context: ChannelHandlerContext?

    /// Called when the handler joins a pipeline (to start work that may decide from elsewhere, see
    /// ``decide(now:)``).
    var onAdded: ((ChannelHandlerContext) -> Void)?

    init(limit: Int = 64 * 1024, decide: @escaping (ByteBuffer) -> Decision) {
        self.decide = decide
        self.limit = limit
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        onAdded?(context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        onAdded = nil
    }

    /// Decides without waiting for the client's bytes (something else told, e.g. the server spoke
    /// first). Does nothing once decided or when not in a pipeline.
    func decide(now reconfigure: (ChannelHandlerContext) -> Void) {
        guard !isDecided, let context else { return }
        isDecided = true
        reconfigure(context)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            heldInputClosed = true
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if buffered == nil {
            buffered = incoming
        } else {
            buffered!.writeBuffer(&incoming)
        }
        guard !isDecided else { return }
        switch decide(buffered!) {
        case .needMoreData:
            if buffered!.readableBytes > limit {
                context.close(promise: nil)
            }
        case .decided(let reconfigure):
            isDecided = true
            reconfigure(context)
        }
    }

    func removeHandler(context: ChannelHandlerContext, removalToken: ChannelHandlerContext.RemovalToken) {
        if let buffered, buffered.readableBytes > 0 {
            self.buffered = nil
            context.fireChannelRead(wrapInboundOut(buffered))
            context.fireChannelReadComplete()
        }
        if heldInputClosed {
            heldInputClosed = false
            context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        }
        context.leavePipeline(removalToken: removalToken)
    }
}
