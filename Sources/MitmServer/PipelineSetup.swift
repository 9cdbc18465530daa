import MitmAddons
import MitmCore
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix

/// Builds and rebuilds client pipelines: where mitmproxy's `NextLayer` decides which layer comes
/// next, we decide which handlers come next. The decisions themselves are pure functions
/// (`ProtocolSniffer`, `ClientHello.parse`); this file only wires handlers.
enum PipelineSetup {
    /// A client has connected to a listener of `spec`.
    static func configureNewClient(channel: any Channel, services: ProxyServices, spec: ProxyModeSpec) throws {
        let peer = channel.remoteAddress.flatMap(Address.init) ?? Address(host: "?", port: 0)
        let local = channel.localAddress.flatMap(Address.init) ?? Address(host: "?", port: 0)
        let client = ClientConnection(peername: peer, sockname: local, proxyMode: spec.spec)
        let connection = ClientConnectionContext(services: services, eventLoop: channel.eventLoop, mode: spec.mode, client: client)
        services.track(client: channel)
        // client_connected blocks, as in mitmproxy: nothing is read from the client until the addons
        // have run, and a hook that sets `client.error` (the block addon) has the connection closed
        // without being served. The pipeline is built now; reads start once the hook is through.
        let waitsForHook = services.addons.handles(.clientConnected)
        if waitsForHook {
            try channel.syncOptions?.setOption(.autoRead, value: false)
        }
        services.runHooks(.clientConnected, on: client, eventLoop: channel.eventLoop, { await $0.clientConnected(&$1) }) { edited in
            if let error = edited.error {
                connection.client.error = error
                services.logger.debug("Client connection closed by an addon: \(error)", metadata: ["client": "\(peer)"])
                channel.close(promise: nil)
            } else if waitsForHook {
                try? channel.syncOptions?.setOption(.autoRead, value: true)
            }
        }
        channel.closeFuture.whenComplete { _ in
            connection.close()
            var client = connection.client
            client.timestampEnd = now()
            let closed = client
            services.notify(.clientDisconnected) { await $0.clientDisconnected(closed) }
        }
        let pipeline = channel.pipeline.syncOperations
        switch spec.mode {
        case .regular, .upstream:
            try addHTTP1(to: pipeline, connection: connection)
        case .reverse:
            try pipeline.addHandler(makePeekHandler(connection: connection))
        case .transparent:
            // The client never named its server: the firewall's redirect did, and the kernel kept it.
            do {
                let destination = try OriginalDestination.lookupOnEventLoop(channel)
                connection.tunnelTarget = Address(host: destination.host, port: destination.port)
            } catch {
                services.logger.info("Transparent mode failure: \(error)", metadata: ["client": "\(peer)"])
                channel.close(promise: nil)
                return
            }
            try pipeline.addHandler(makePeekHandler(connection: connection))
        case .socks5:
            try pipeline.addHandler(SOCKS5ServerHandler(connection: connection))
        }
    }

    /// HTTP/1 towards the client: timeouts, codec with framing left to us, the proxy handler.
    static func addHTTP1(to pipeline: ChannelPipeline.SynchronousOperations, connection: ClientConnectionContext) throws {
        let options = connection.options
        let timer = RequestHeadTimer(headTimeout: options.requestHeadTimeout, idleTimeout: options.idleTimeout)
        var encoderConfiguration = HTTPResponseEncoder.Configuration()
        encoderConfiguration.automaticallySetFramingHeaders = false
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = options.headerSizeLimit
        limits.maxHeaderFieldSize = options.headerSizeLimit
        let handler = HTTPProxyHandler(connection: connection, isHTTP2: false, headTimer: timer)
        timer.onHeadTimeout = { [weak handler] in handler?.requestHeadTimedOut() }
        try pipeline.addHandlers([
            timer,
            HTTPResponseEncoder(configuration: encoderConfiguration),
            ByteToMessageHandler(
                HTTPRequestDecoder(
                    leftOverBytesStrategy: .forwardBytes,
                    informationalResponseStrategy: .drop,
                    limitConfiguration: limits
                )
            ),
            handler,
        ])
    }

    /// The settings we announce to HTTP/2 clients: NIO's defaults (at most 100 concurrent streams,
    /// a 16 KiB header list), plus `SETTINGS_ENABLE_CONNECT_PROTOCOL` (RFC 8441 §3), so that clients
    /// may open WebSockets on a stream with an extended CONNECT.
    static let clientHTTP2Settings: HTTP2Settings =
        nioDefaultSettings + [HTTP2Setting(parameter: .enableConnectProtocol, value: 1)]

    /// HTTP/2 towards the client: each stream gets NIO's HTTP/2 ⇄ HTTP/1 codec and its own proxy
    /// handler, so every stream is one flow. In front of the codec, `ExtendedConnectRecorder` keeps
    /// the `:protocol` the codec drops.
    static func addHTTP2(to channel: any Channel, connection: ClientConnectionContext) throws {
        var connectionConfiguration = NIOHTTP2Handler.ConnectionConfiguration()
        connectionConfiguration.initialSettings = clientHTTP2Settings
        _ = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
            mode: .server,
            connectionConfiguration: connectionConfiguration,
            streamConfiguration: .init(),
            inboundStreamInitializer: { stream in
                stream.eventLoop.makeCompletedFuture {
                    let recorder = ExtendedConnectRecorder()
                    try stream.pipeline.syncOperations.addHandlers([
                        recorder,
                        HTTP2FramePayloadToHTTP1ServerCodec(),
                        HTTPProxyHandler(connection: connection, isHTTP2: true, headTimer: nil, extendedConnect: recorder),
                    ])
                }
            }
        )
    }

    /// After `CONNECT`: the HTTP/1 handlers leave, and whatever the client sends next is peeked at.
    static func switchToTunnel(pipeline: ChannelPipeline, connection: ClientConnectionContext) throws {
        let sync = pipeline.syncOperations
        try sync.addHandler(makePeekHandler(connection: connection))
        let decoder = try sync.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
        let encoder = try sync.handler(type: HTTPResponseEncoder.self)
        let timer = try sync.handler(type: RequestHeadTimer.self)
        let proxy = try sync.handler(type: HTTPProxyHandler.self)
        // The decoder goes last: on removal it hands bytes it has not parsed to the peek handler.
        sync.removeHandler(proxy, promise: nil)
        sync.removeHandler(encoder, promise: nil)
        sync.removeHandler(timer, promise: nil)
        sync.removeHandler(decoder, promise: nil)
    }

    /// After a 101 to `Upgrade: h2c`: the HTTP/1 handlers leave (the encoder before any HTTP/2 frame
    /// is written, the decoder last, handing on the client's preface if it came already), HTTP/2
    /// takes over, and the upgrade request arrives on stream 1 through the splice handler.
    static func switchToH2C(channel: any Channel, connection: ClientConnectionContext, headersFrame: [UInt8]) throws {
        let sync = channel.pipeline.syncOperations
        let decoder = try sync.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
        let encoder = try sync.handler(type: HTTPResponseEncoder.self)
        let timer = try sync.handler(type: RequestHeadTimer.self)
        let proxy = try sync.handler(type: HTTPProxyHandler.self)
        try sync.addHandler(H2CSpliceHandler(headersFrame: headersFrame))
        sync.removeHandler(proxy, promise: nil)
        sync.removeHandler(encoder, promise: nil)
        sync.removeHandler(timer, promise: nil)
        try addHTTP2(to: channel, connection: connection)
        sync.removeHandler(decoder, promise: nil)
    }

    /// Peeks at the first bytes and picks what comes next (`NextLayerRules.decide`): a pass-through
    /// for ignored hosts, TLS interception, HTTP/1, HTTP/2 with prior knowledge, a TCP flow
    /// (`tcp_hosts`, or not HTTP with `rawtcp`), or, for anything else, a raw pass-through.
    static func makePeekHandler(connection: ClientConnectionContext) -> ProtocolPeekHandler {
        let rules = connection.services.nextLayer
        // A tunnel to a tcp_hosts server: connect now, in case the server speaks first. (Not when
        // ignore rules are set: those may still need the client's bytes to decide.)
        let early = connection.tunnelTarget.flatMap { target in
            rules.tcpHosts.matches(target.host) && !rules.hasIgnoreRules
                ? EarlyServerConnection(connection: connection, target: target) : nil
        }
        let handler = ProtocolPeekHandler { bytes in
            let server = connection.originalServerAddress
            let decision = rules.decide(firstBytes: bytes, server: server, inTunnel: connection.tunnelTarget != nil)
            if decision != .needMoreData && decision != .tcp {
                early?.discard()
            }
            switch decision {
            case .needMoreData:
                return .needMoreData
            case .tcp:
                let preconnected = early?.claim()
                return .decided { context in
                    startTCPRelay(replacing: context, connection: connection, preconnected: preconnected)
                }
            case .ignore:
                return .decided { context in
                    guard let server else {
                        context.close(promise: nil)
                        return
                    }
                    connection.services.logger.debug(
                        "Ignoring connection to \(server) (ignore_hosts/allow_hosts): passed through",
                        metadata: ["client": "\(connection.client.peername)"]
                    )
                    if connection.options.showIgnoredHosts {
                        // Relayed as it is (TLS stays encrypted), but recorded.
                        startTCPRelay(replacing: context, connection: connection)
                    } else {
                        passThrough(peekContext: context, to: server, connection: connection)
                    }
                }
            case .tls(let hello):
                return .decided { context in
                    TLSInterceptor.intercept(hello: hello, peekContext: context, connection: connection)
                }
            case .malformedTLS(let reason):
                return .decided { context in
                    connection.services.logger.info(
                        "Client TLS handshake failed: invalid ClientHello (\(reason))",
                        metadata: ["client": "\(connection.client.peername)"]
                    )
                    context.close(promise: nil)
                }
            case .http1:
                return .decided { context in
                    replace(context) {
                        try addHTTP1(to: context.pipeline.syncOperations, connection: connection)
                    }
                }
            case .http2:
                return .decided { context in
                    replace(context) { try addHTTP2(to: context.channel, connection: connection) }
                }
            case .unrecognized:
                return .decided { context in
                    guard let server else {
                        context.close(promise: nil)
                        return
                    }
                    passThrough(peekContext: context, to: server, connection: connection)
                }
            }
        }
        if let early {
            handler.onAdded = { [weak handler] _ in
                if let handler { early.start(clientPeek: handler) }
            }
        }
        return handler
    }

    /// Relays the connection to `target` byte for byte (no interception).
    static func passThrough(peekContext: ChannelHandlerContext, to target: Address, connection: ClientConnectionContext) {
        let clientChannel = peekContext.channel
        let peek = NIOLoopBound(peekContext, eventLoop: peekContext.eventLoop)
        let connecting =
            connection.takePreconnected(for: target).map { clientChannel.eventLoop.makeSucceededFuture($0.channel) }
            ?? ServerConnector.openTunnel(
                to: target, via: connection.upstreamProxy, services: connection.services, eventLoop: clientChannel.eventLoop
            )
        connecting
            .whenComplete { result in
                let peekContext = peek.value
                switch result {
                case .success(let serverChannel):
                    let (ours, theirs) = GlueHandler.matchedPair()
                    do {
                        try serverChannel.pipeline.syncOperations.addHandler(theirs)
                        try peekContext.pipeline.syncOperations.addHandler(ours)
                        peekContext.pipeline.syncOperations.removeHandler(context: peekContext, promise: nil)
                    } catch {
                        serverChannel.close(promise: nil)
                        clientChannel.close(promise: nil)
                    }
                case .failure(let error):
                    connection.services.logger.info(
                        "Error connecting to \(target): \(describe(error))",
                        metadata: ["client": "\(connection.client.peername)"]
                    )
                    clientChannel.close(promise: nil)
                }
            }
    }
}

extension HTTPProxyHandler {
    /// A client that began a request head and did not finish it in time gets a 408.
    func requestHeadTimedOut() {
        writeBareResponse(status: 408, message: "Request head not received within the request_head_timeout.")
    }
}
