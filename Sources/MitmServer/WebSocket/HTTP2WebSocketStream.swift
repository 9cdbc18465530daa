import MitmCore
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOWebSocket

/// Sits in front of NIO's HTTP/2 ⇄ HTTP/1 codec on a client stream and keeps the `:protocol`
/// pseudo-header of the request's HEADERS (RFC 8441 §4): the codec turns the HEADERS into an
/// `HTTPRequestHead` and drops every pseudo-header it does not map, so without this an extended
/// CONNECT would be indistinguishable from a malformed CONNECT with a path.
///
/// Confined to its stream channel's event loop, as is the `HTTPProxyHandler` that reads it.
final class ExtendedConnectRecorder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias InboundOut = HTTP2Frame.FramePayload

    /// The request's `:protocol`, once its HEADERS have passed (nil when it had none).
    private(set) var protocolName: String?
    private var sawRequestHeaders = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !sawRequestHeaders, case .headers(let headers) = unwrapInboundIn(data) {
            sawRequestHeaders = true
            protocolName = headers.headers.first(name: ":protocol")
        }
        context.fireChannelRead(data)
    }
}

/// Once an RFC 8441 WebSocket is accepted, it takes the place of `HTTPProxyHandler` on the client's
/// stream channel, behind NIO's HTTP/2 ⇄ HTTP/1 codec: the stream's DATA frames are the WebSocket
/// bytes, so request body parts become plain buffers for NIOWebSocket's frame decoder, and the
/// frame encoder's buffers become response body parts.
///
/// Ending: our side closes by sending END_STREAM (`.end`), as RFC 8441 §5 has it, not by resetting
/// the stream; the stream channel closes once the client has ended its side too (or after
/// `endGracePeriod`, with a reset). A client's END_STREAM means it sends nothing more: like a TCP
/// close under HTTP/1 WebSocket, the client side is then closed.
///
/// Confined to the stream channel's event loop.
final class HTTP2WebSocketStreamAdapter: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = HTTPServerResponsePart

    /// How long after our END_STREAM the client has to end its side before the stream is reset.
    static let endGracePeriod: TimeAmount = .seconds(1)

    /// Bytes the client sent on the stream before the switch (after its CONNECT's HEADERS).
    private var pending: [ByteBuffer]
    private var clientEnded: Bool
    private var sentEnd = false

    init(pending: [ByteBuffer], clientEnded: Bool) {
        self.pending = pending
        self.clientEnded = clientEnded
    }

    /// Hands on what the client sent before the switch; called once the frame decoder is in place.
    func deliverPending(context: ChannelHandlerContext) {
        let buffers = pending
        pending = []
        for buffer in buffers {
            context.fireChannelRead(wrapInboundOut(buffer))
        }
        if clientEnded {
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            break  // a stream carries one request head; the codec would not pass a second
        case .body(let buffer):
            context.fireChannelRead(wrapInboundOut(buffer))
        case .end:
            clientEnded = true
            if !sentEnd {
                context.close(promise: nil)
            }
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        context.write(wrapOutboundOut(.body(.byteBuffer(unwrapOutboundIn(data)))), promise: promise)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard !sentEnd, context.channel.isActive else {
            context.close(mode: mode, promise: promise)
            return
        }
        sentEnd = true
        let ended = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: ended)
        if clientEnded {
            // Both sides have ended: NIO closes the stream channel by itself.
            ended.futureResult.cascade(to: promise)
            return
        }
        let channel = context.channel
        channel.eventLoop.assumeIsolated().scheduleTask(in: Self.endGracePeriod) {
            channel.close(promise: nil)
        }
        ended.futureResult.cascade(to: promise)
    }
}

extension PipelineSetup {
    /// After the `:status 200` to an RFC 8441 CONNECT: the client's stream and the server connection
    /// switch to WebSocket framing, joined by a `WebSocketRelay`, as `switchToWebSocket` does for
    /// HTTP/1.1. On the stream, NIO's payload codec stays and `HTTP2WebSocketStreamAdapter` takes
    /// the proxy handler's place; the HTTP/2 connection goes on carrying other streams.
    static func switchHTTP2StreamToWebSocket(
        stream: any Channel,
        server: UpstreamConnection,
        flow: HTTPFlow,
        connection: ClientConnectionContext,
        pendingClientBytes: [ByteBuffer],
        clientEnded: Bool
    ) {
        let parts = WebSocketSwitch(flow: flow, connection: connection, client: stream, server: server)
        do {
            let adapter = HTTP2WebSocketStreamAdapter(pending: pendingClientBytes, clientEnded: clientEnded)
            let streamSync = stream.pipeline.syncOperations
            let proxy = try streamSync.handler(type: HTTPProxyHandler.self)
            try streamSync.addHandlers([adapter] + parts.frameHandlers(parts.clientEndpoint))
            streamSync.removeHandler(proxy, promise: nil)
            let adapterContext = try streamSync.context(handler: adapter)
            try parts.switchServer().assumeIsolated().whenComplete { result in
                switch result {
                case .success:
                    parts.relay.start()
                    adapter.deliverPending(context: adapterContext)
                case .failure(let error):
                    parts.fail(error)
                }
            }
        } catch {
            parts.fail(error)
        }
    }
}
