import NIOCore
import NIOSSL

/// One side (client or server) of a TCP flow: hands what the channel reports to the `TCPRelay` and
/// lets the relay decide when the channel reads. The relay writes through this handler's context.
final class TCPRelaySideHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let relay: TCPRelay
    private let side: TCPRelay.Side
    private var inputClosed = false

    init(relay: TCPRelay, side: TCPRelay.Side) {
        self.relay = relay
        self.side = side
    }

    func handlerAdded(context: ChannelHandlerContext) {
        relay.attach(side, context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        relay.detach(side)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        relay.received(unwrapInboundIn(data), from: side)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        relay.readComplete(side)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            closeInput()
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Gone in both directions (a FIN arrives as an input-closed event instead).
        relay.connectionClosed(side)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A TLS peer that closes without close_notify has still closed: not a failure of the flow.
        if let tlsError = error as? NIOSSLError, case .uncleanShutdown = tlsError {
            closeInput()
            return
        }
        relay.failed(side, error: error)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        relay.writabilityChanged()
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if relay.mayRead(side) {
            context.read()
        }
    }

    private func closeInput() {
        guard !inputClosed else { return }
        inputClosed = true
        relay.inputClosed(side)
    }
}
