import MitmAddons
import MitmCore
import NIOCore

/// The TCP and next-layer decisions of the pipeline: a TCP flow in place of the peek handler (or
/// behind intercepted TLS), and what runs inside intercepted TLS.
extension PipelineSetup {
    /// Replaces the handler of `context` (a peek handler, or the client TLS handshake handler) with a
    /// TCP relay to the connection's server. Bytes the replaced handler held are replayed into the
    /// relay when it leaves the pipeline. `preconnected`: a server connection already being opened
    /// for this flow (`EarlyServerConnection`).
    static func startTCPRelay(
        replacing context: ChannelHandlerContext,
        connection: ClientConnectionContext,
        preconnected: EventLoopFuture<(any Channel, ServerConnection)>? = nil
    ) {
        guard let address = connection.originalServerAddress else {
            context.close(promise: nil)
            return
        }
        // The client's FIN must reach us as an event so it can be forwarded (half-close).
        try? context.channel.syncOptions?.setOption(.allowRemoteHalfClosure, value: true)
        let clientTLS = connection.client.tls
        let target = TCPServerConnector.Target(
            address: address,
            usesTLS: clientTLS != nil,
            sni: clientTLS.map { $0.sni ?? address.host },
            alpnOffers: clientTLS?.alpnOffers ?? []
        )
        let flow = TCPFlow(
            clientConnection: connection.client,
            serverConnection: ServerConnection(
                address: address,
                usesTLS: target.usesTLS,
                sni: target.sni,
                alpnOffers: target.alpnOffers
            )
        )
        let relay = TCPRelay(flow: flow, target: target, connection: connection, preconnected: preconnected)
        do {
            let sync = context.pipeline.syncOperations
            try sync.addHandler(TCPRelaySideHandler(relay: relay, side: .client), position: .after(context.handler))
            relay.start()
            sync.removeHandler(context: context, promise: nil)
        } catch {
            context.close(promise: nil)
        }
    }

    /// After the client's TLS handshake: HTTP/1, HTTP/2 or a TCP flow (`tcp_hosts`), or, when the
    /// ALPN does not say, a peek at the first decrypted bytes (`rawtcp`). Replaces the handler of
    /// `context`. `tcpServer`: the TLS server connection opened for a TCP flow before the handshake.
    static func configureAfterClientTLS(
        context: ChannelHandlerContext,
        connection: ClientConnectionContext,
        alpn: String?,
        tcpServer: EventLoopFuture<(any Channel, ServerConnection)>? = nil
    ) {
        let rules = connection.services.nextLayer
        let decision = rules.decideAfterClientTLS(
            server: connection.originalServerAddress,
            sni: connection.client.tls?.sni,
            alpn: alpn,
            inTunnel: connection.tunnelTarget != nil
        )
        if decision != .tcp {
            tcpServer?.whenSuccess { channel, _ in channel.close(promise: nil) }
        }
        do {
            let sync = context.pipeline.syncOperations
            switch decision {
            case .http1:
                try addHTTP1(to: sync, connection: connection)
                sync.removeHandler(context: context, promise: nil)
            case .http2:
                try addHTTP2(to: context.channel, connection: connection)
                sync.removeHandler(context: context, promise: nil)
            case .tcp:
                startTCPRelay(replacing: context, connection: connection, preconnected: tcpServer)
            case .peek:
                try sync.addHandler(makeDecryptedPeekHandler(connection: connection), position: .after(context.handler))
                sync.removeHandler(context: context, promise: nil)
            }
        } catch {
            context.close(promise: nil)
        }
    }

    /// Peeks at the first decrypted bytes when the ALPN left the protocol open: HTTP if they look
    /// like it, else (with `rawtcp`) a TCP flow.
    static func makeDecryptedPeekHandler(connection: ClientConnectionContext) -> ProtocolPeekHandler {
        let rules = connection.services.nextLayer
        return ProtocolPeekHandler { bytes in
            switch rules.decideDecrypted(bytes) {
            case .needMoreData:
                return .needMoreData
            case .http2:
                return .decided { context in
                    replace(context) { try addHTTP2(to: context.channel, connection: connection) }
                }
            case .tcp:
                return .decided { context in startTCPRelay(replacing: context, connection: connection) }
            case .http1, .ignore, .tls, .malformedTLS, .unrecognized:
                return .decided { context in
                    replace(context) {
                        try addHTTP1(to: context.pipeline.syncOperations, connection: connection)
                    }
                }
            }
        }
    }

    /// Runs `install` to add handlers, then removes the handler of `context`; closes on failure.
    static func replace(_ context: ChannelHandlerContext, install: () throws -> Void) {
        do {
            try install()
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        } catch {
            context.close(promise: nil)
        }
    }
}
