import MitmCore
import NIOCore
import NIOWebSocket

/// The last handler of one side's pipeline once a connection has switched to WebSocket framing:
/// hands decoded frames to the relay, sends the frames the relay decides on, and withholds reads
/// while the relay says so (a hook is running, or the other side cannot take more).
///
/// Confined to its channel's event loop, like every handler; the relay that drives it lives there too.
final class WebSocketEndpointHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let side: WebSocketStreamStateMachine.Side
    /// Set by the relay; cleared when the handler leaves the pipeline, which breaks the cycle.
    var relay: WebSocketRelay?
    private var context: ChannelHandlerContext?
    private var readGate = ReadGate()
    /// The last write, so a close waits until what was sent before it is out.
    private var lastWrite: EventLoopFuture<Void>?
    private var isInactive = false
    /// Set after a codec error: later decoder complaints about the same bytes are noise.
    private var codecFailed = false

    init(side: WebSocketStreamStateMachine.Side) {
        self.side = side
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        relay = nil
    }

    var isWritable: Bool { context?.channel.isWritable ?? true }

    // MARK: - Outbound

    /// Sends one frame and flushes. Towards the server a frame is masked with a fresh random key
    /// (RFC 6455 §5.3); towards the client never.
    func send(_ frame: WebSocketStreamStateMachine.Frame) {
        guard let context, !isInactive else { return }
        let maskKey: WebSocketMaskingKey? = side == .server ? .random() : nil
        let wire = WebSocketFrame(fin: frame.fin, opcode: WebSocketOpcode(frame.opcode), maskKey: maskKey, data: frame.payload)
        let promise = context.eventLoop.makePromise(of: Void.self)
        lastWrite = promise.futureResult
        context.writeAndFlush(wrapOutboundOut(wire), promise: promise)
    }

    /// Closes the connection once everything sent so far is written.
    func closeAfterWrites() {
        guard let context, !isInactive else { return }
        let channel = context.channel
        if let lastWrite {
            lastWrite.whenComplete { _ in channel.close(promise: nil) }
        } else {
            channel.close(promise: nil)
        }
    }

    // MARK: - Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let wire = unwrapInboundIn(data)
        let frame = WebSocketStreamStateMachine.Frame(
            fin: wire.fin,
            reservedBits: (wire.rsv1 ? 0b100 : 0) | (wire.rsv2 ? 0b010 : 0) | (wire.rsv3 ? 0b001 : 0),
            opcode: UInt8(webSocketOpcode: wire.opcode),
            isMasked: wire.maskKey != nil,
            payload: wire.unmaskedData
        )
        relay?.frameReceived(frame, from: side)
    }

    func channelInactive(context: ChannelHandlerContext) {
        isInactive = true
        relay?.connectionClosed(side)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? NIOWebSocketError {
            guard !codecFailed else { return }
            codecFailed = true
            let (code, message) = Self.describe(error, limit: relay?.maxFrameSize ?? 0)
            relay?.codecFailed(side, code: code, message: message)
            return
        }
        if case ByteToMessageDecoderError.dataReceivedInErrorState = error {
            return  // the decoder refuses bytes after its first error; that error was handled
        }
        // A network or TLS failure: the connection is over.
        context.close(promise: nil)
    }

    static func describe(_ error: NIOWebSocketError, limit: Int) -> (code: Int, message: String) {
        switch error {
        case .invalidFrameLength:
            return (1009, "frame larger than the limit of \(limit) bytes")
        case .fragmentedControlFrame:
            return (1002, "control frame is fragmented")
        case .multiByteControlFrameLength:
            return (1002, "control frame payload longer than 125 bytes")
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        relay?.writabilityChanged()
        context.fireChannelWritabilityChanged()
    }

    // MARK: - Backpressure

    func setReadsPaused(_ paused: Bool) {
        if readGate.setPaused(paused) { context?.read() }
    }

    func read(context: ChannelHandlerContext) {
        if readGate.admitRead() { context.read() }
    }
}

extension WebSocketOpcode {
    /// Opcodes are four bits; the state machine hands out only valid ones. File-private: NIO's type,
    /// our convenience.
    fileprivate init(_ raw: UInt8) {
        self = WebSocketOpcode(encodedWebSocketOpcode: raw & 0x0F) ?? .binary
    }
}
