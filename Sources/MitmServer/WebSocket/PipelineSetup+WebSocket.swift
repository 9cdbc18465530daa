import MitmCore
import NIOCore
import NIOHTTP1
import NIOWebSocket

extension PipelineSetup {
    /// Whether an exchange ends in a WebSocket connection: the HTTP state machine marked the flow
    /// (a `101` answering `Upgrade: websocket`) and the addons left it a 101.
    static func isWebSocketUpgrade(_ flow: HTTPFlow) -> Bool {
        flow.websocket != nil && flow.response?.statusCode == 101
    }

    /// After the 101 has been written to the client: both the client's pipeline and the server
    /// connection switch from HTTP/1 to WebSocket framing, joined by a `WebSocketRelay`.
    ///
    /// As in `switchToTunnel`, the new handlers go in first and the HTTP decoders leave last: on
    /// removal a decoder hands the bytes it did not parse (frames a peer sent right behind its
    /// upgrade request or 101) to the frame decoder behind it, so nothing is lost. A decoder leaves
    /// on the next event loop tick, and until then it still sits in the way of writes (the response
    /// decoder watches requests), so the relay starts only once both have left: frames handed over
    /// meanwhile wait in its state machine.
    ///
    /// The server connection leaves the client's pool for good: it is never reused for HTTP.
    static func switchToWebSocket(
        client: any Channel,
        server: UpstreamConnection,
        flow: HTTPFlow,
        connection: ClientConnectionContext
    ) {
        let parts = WebSocketSwitch(flow: flow, connection: connection, client: client, server: server)
        do {
            let clientSync = client.pipeline.syncOperations
            try clientSync.addHandlers(parts.frameHandlers(parts.clientEndpoint))
            let requestDecoder = try clientSync.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            let responseEncoder = try clientSync.handler(type: HTTPResponseEncoder.self)
            let timer = try clientSync.handler(type: RequestHeadTimer.self)
            let proxy = try clientSync.handler(type: HTTPProxyHandler.self)
            // Every HTTP handler in the way of a frame leaves before either decoder hands over its
            // leftover bytes: those frames are relayed at once, through both pipelines.
            clientSync.removeHandler(proxy, promise: nil)
            clientSync.removeHandler(responseEncoder, promise: nil)
            clientSync.removeHandler(timer, promise: nil)
            let serverDecoderGone = try parts.switchServer()
            let clientDecoderGone = client.eventLoop.makePromise(of: Void.self)
            clientSync.removeHandler(requestDecoder, promise: clientDecoderGone)
            clientDecoderGone.futureResult.and(serverDecoderGone).assumeIsolated().whenComplete { result in
                switch result {
                case .success:
                    parts.relay.start()
                case .failure(let error):
                    parts.fail(error)
                }
            }
        } catch {
            parts.fail(error)
        }
    }
}

/// What switching a client side and a server connection to WebSocket framing takes, whichever HTTP
/// version the client spoke: the relay with its two endpoints, the frame codecs, and the server
/// side's switch (always HTTP/1.1 there).
struct WebSocketSwitch {
    let relay: WebSocketRelay
    let clientEndpoint: WebSocketEndpointHandler
    let serverEndpoint: WebSocketEndpointHandler
    let maxFrameSize: Int
    let connection: ClientConnectionContext
    let client: any Channel
    let server: UpstreamConnection

    init(flow: HTTPFlow, connection: ClientConnectionContext, client: any Channel, server: UpstreamConnection) {
        let limits = WebSocketStreamStateMachine.Limits(bodySizeLimit: connection.options.bodySizeLimit)
        // NIO's decoder takes at most UInt32.max; a frame can never be larger than a message.
        maxFrameSize = min(limits.maxMessageSize, Int(UInt32.max))
        clientEndpoint = WebSocketEndpointHandler(side: .client)
        serverEndpoint = WebSocketEndpointHandler(side: .server)
        relay = WebSocketRelay(
            flow: flow,
            limits: limits,
            maxFrameSize: maxFrameSize,
            services: connection.services,
            eventLoop: connection.eventLoop,
            client: clientEndpoint,
            server: serverEndpoint
        )
        self.connection = connection
        self.client = client
        self.server = server
    }

    /// NIOWebSocket's frame codec in front of `endpoint`.
    func frameHandlers(_ endpoint: WebSocketEndpointHandler) -> [any ChannelHandler] {
        [WebSocketFrameEncoder(), ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: maxFrameSize)), endpoint]
    }

    /// Puts the frame codec on the server connection and takes its HTTP/1.1 handlers off, the
    /// response decoder last (it hands the frames that came right behind the 101 to the frame
    /// decoder). The future completes once that decoder has left.
    func switchServer() throws -> EventLoopFuture<Void> {
        let serverSync = server.channel.pipeline.syncOperations
        try serverSync.addHandlers(frameHandlers(serverEndpoint))
        let responseDecoder = try serverSync.handler(type: ByteToMessageHandler<HTTPResponseDecoder>.self)
        let requestEncoder = try serverSync.handler(type: HTTPRequestEncoder.self)
        let upstream = try serverSync.handler(type: UpstreamStreamHandler.self)
        serverSync.removeHandler(upstream, promise: nil)
        serverSync.removeHandler(requestEncoder, promise: nil)
        let gone = server.channel.eventLoop.makePromise(of: Void.self)
        serverSync.removeHandler(responseDecoder, promise: gone)
        return gone.futureResult
    }

    func fail(_ error: any Error) {
        connection.services.logger.error(
            "could not switch to WebSocket: \(error)",
            metadata: ["client": "\(connection.client.peername)"]
        )
        server.channel.close(promise: nil)
        client.close(promise: nil)
    }
}
