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
        let limits = WebSocketStreamStateMachine.Limits(bodySizeLimit: connection.options.bodySizeLimit)
        // NIO's decoder takes at most UInt32.max; a frame can never be larger than a message.
        let maxFrameSize = min(limits.maxMessageSize, Int(UInt32.max))
        let clientEndpoint = WebSocketEndpointHandler(side: .client)
        let serverEndpoint = WebSocketEndpointHandler(side: .server)
        let relay = WebSocketRelay(
            flow: flow,
            limits: limits,
            maxFrameSize: maxFrameSize,
            services: connection.services,
            eventLoop: connection.eventLoop,
            client: clientEndpoint,
            server: serverEndpoint
        )
        func fail(_ error: any Error) {
            connection.services.logger.error(
                "could not switch to WebSocket: \(error)",
                metadata: ["client": "\(connection.client.peername)"]
            )
            server.channel.close(promise: nil)
            client.close(promise: nil)
        }
        do {
            let clientSync = client.pipeline.syncOperations
            try clientSync.addHandlers([
                WebSocketFrameEncoder(),
                ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: maxFrameSize)),
                clientEndpoint,
            ])
            let serverSync = server.channel.pipeline.syncOperations
            try serverSync.addHandlers([
                WebSocketFrameEncoder(),
                ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: maxFrameSize)),
                serverEndpoint,
            ])

            let requestDecoder = try clientSync.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            let responseEncoder = try clientSync.handler(type: HTTPResponseEncoder.self)
            let timer = try clientSync.handler(type: RequestHeadTimer.self)
            let proxy = try clientSync.handler(type: HTTPProxyHandler.self)
            let responseDecoder = try serverSync.handler(type: ByteToMessageHandler<HTTPResponseDecoder>.self)
            let requestEncoder = try serverSync.handler(type: HTTPRequestEncoder.self)
            let upstream = try serverSync.handler(type: UpstreamStreamHandler.self)
            // Every HTTP handler in the way of a frame leaves before either decoder hands over its
            // leftover bytes: those frames are relayed at once, through both pipelines.
            clientSync.removeHandler(proxy, promise: nil)
            clientSync.removeHandler(responseEncoder, promise: nil)
            clientSync.removeHandler(timer, promise: nil)
            serverSync.removeHandler(upstream, promise: nil)
            serverSync.removeHandler(requestEncoder, promise: nil)
            let clientDecoderGone = client.eventLoop.makePromise(of: Void.self)
            let serverDecoderGone = client.eventLoop.makePromise(of: Void.self)
            clientSync.removeHandler(requestDecoder, promise: clientDecoderGone)
            serverSync.removeHandler(responseDecoder, promise: serverDecoderGone)
            clientDecoderGone.futureResult.and(serverDecoderGone.futureResult).assumeIsolated().whenComplete { result in
                switch result {
                case .success:
                    relay.start()
                case .failure(let error):
                    fail(error)
                }
            }
        } catch {
            fail(error)
        }
    }
}
