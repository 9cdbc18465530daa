import MitmAddons
import MitmCore
import NIOCore
import NIOSSL

/// Opens the server side of a TCP flow on the client's event loop: a plain connection, or TLS when
/// the client's TLS was intercepted (with the client's SNI and ALPN offers), and no HTTP handlers.
/// `ServerConnector` does the same for HTTP and sets up HTTP/1 or HTTP/2 on top.
enum TCPServerConnector {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Where to connect and how.
    struct Target {
        var address: Address
        var usesTLS: Bool
        var sni: String?
        var alpnOffers: [String]
    }

    /// Connects and, for TLS, completes the handshake. The returned `ServerConnection` carries the
    /// addresses, timestamps and TLS details. `server_connect`, `server_connected` and
    /// `server_disconnected` (and the server TLS hooks) are notified as for HTTP connections. The
    /// connection goes through the upstream proxy in upstream mode, and a connection the mode
    /// opened ahead (SOCKS5) is used when there is one.
    static func connect(_ target: Target, connection: ClientConnectionContext) -> EventLoopFuture<(any Channel, ServerConnection)> {
        let client = connection.client
        let services = connection.services
        let eventLoop = connection.eventLoop
        var opening = ServerConnection(
            address: target.address,
            usesTLS: target.usesTLS,
            sni: target.sni,
            alpnOffers: target.alpnOffers
        )
        let preconnected = connection.takePreconnected(for: target.address)
        opening.timestampStart = preconnected?.opened ?? now()
        let connectData = ServerConnectionHookData(client: client, server: opening)
        services.notify(.serverConnect) { addons in
            var data = connectData
            await addons.serverConnect(&data)
        }
        let address = target.address
        let connecting =
            preconnected.map { eventLoop.makeSucceededFuture($0.channel) }
            ?? ServerConnector.openTunnel(to: address, via: connection.upstreamProxy, services: services, eventLoop: eventLoop)
        let start = opening
        return connecting
            .flatMapErrorThrowing { error in
                throw Failure(description: "Error connecting to \(address): \(describe(error))")
            }
            .flatMap { channel -> EventLoopFuture<(any Channel, ServerConnection)> in
                // Half-closes are relayed: a server's FIN must arrive as an event, not close the channel.
                try? channel.syncOptions?.setOption(.allowRemoteHalfClosure, value: true)
                var server = start
                server.timestampTCPSetup = preconnected?.connected ?? now()
                server.peername = channel.remoteAddress.flatMap(Address.init)
                server.sockname = channel.localAddress.flatMap(Address.init)
                let ready: EventLoopFuture<ServerConnection>
                if target.usesTLS {
                    ready = startTLS(on: channel, target: target, server: server, client: client, services: services)
                } else {
                    ready = eventLoop.makeSucceededFuture(server)
                }
                return ready.map { server in
                    let data = ServerConnectionHookData(client: client, server: server)
                    services.notify(.serverConnected) { await $0.serverConnected(data) }
                    channel.closeFuture.whenComplete { _ in
                        var closed = server
                        closed.timestampEnd = now()
                        let data = ServerConnectionHookData(client: client, server: closed)
                        services.notify(.serverDisconnected) { await $0.serverDisconnected(data) }
                    }
                    return (channel, server)
                }
                .flatMapErrorThrowing { error in
                    channel.close(promise: nil)
                    throw error
                }
            }
    }

    private static func startTLS(
        on channel: any Channel,
        target: Target,
        server: ServerConnection,
        client: ClientConnection,
        services: ProxyServices
    ) -> EventLoopFuture<ServerConnection> {
        let promise = channel.eventLoop.makePromise(of: String?.self)
        let startData = TLSHookData(side: .server, client: client, server: server)
        services.notify(.tlsStartServer) { await $0.tls(.tlsStartServer, startData) }
        do {
            let context = try services.clientContext(alpn: target.alpnOffers)
            // SNI cannot carry an IP address (RFC 6066 §3).
            let sni = target.sni.flatMap { isIPAddress($0) ? nil : $0 }
            let handler = try NIOSSLClientHandler(context: context, serverHostname: sni)
            try channel.pipeline.syncOperations.addHandlers([handler, TLSHandshakeWaiter(promise: promise)])
        } catch {
            promise.fail(error)
        }
        let host = target.sni ?? target.address.host
        return promise.futureResult
            .flatMapThrowing { alpn -> ServerConnection in
                var server = server
                server.timestampTLSSetup = now()
                server.tls = TLSInfo.afterHandshake(on: channel, sni: target.sni, alpn: alpn, alpnOffers: target.alpnOffers)
                let data = TLSHookData(side: .server, client: client, server: server)
                services.notify(.tlsEstablishedServer) { await $0.tls(.tlsEstablishedServer, data) }
                return server
            }
            .flatMapErrorThrowing { error in
                let reason = describe(tlsError: error)
                var failed = server
                failed.error = reason
                let data = TLSHookData(side: .server, client: client, server: failed, error: reason)
                services.notify(.tlsFailedServer) { await $0.tls(.tlsFailedServer, data) }
                throw Failure(description: "TLS handshake failed with server \(host): \(reason)")
            }
    }
}
