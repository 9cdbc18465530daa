import NIOCore

/// Holds back the first bytes of a connection until `decide` can tell what they are (TLS, HTTP/1,
/// HTTP/2, something else), then lets `decide`'s caller rebuild the pipeline behind it and replays
/// the held bytes into the new handlers when it is removed: mitmproxy's peek, the way NIO's
/// `SNIHandler` does it.
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
    private let limit: Int

    init(limit: Int = 64 * 1024, decide: @escaping (ByteBuffer) -> Decision) {
        self.decide = decide
        self.limit = limit
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
        context.leavePipeline(removalToken: removalToken)
    }
}
