import MitmAddons
import MitmCore
import NIOCore

/// The server side of a TCP flow inside TLS (`tcp_hosts` matched the host or the SNI): one TLS
/// connection, opened before the client handshake as for HTTP (its certificate's names go into
/// ours, its ALPN choice becomes ours), but with no HTTP on top, and handed to the TCP relay.
extension TLSInterceptor {
    /// What was opened ahead of the client handshake.
    enum EagerServer: Sendable {
        /// An HTTP connection, parked in the pool (nil when none was opened or it failed).
        case http(UpstreamConnection?)
        /// A TLS connection for a TCP flow, and its details once connected (nil if it failed; the
        /// relay reports the failure as the flow's error).
        case tcp(EventLoopFuture<(any Channel, ServerConnection)>, ServerConnection?)

        var tcpServer: EventLoopFuture<(any Channel, ServerConnection)>? {
            if case .tcp(let future, _) = self { return future }
            return nil
        }
    }

    /// Opens the TLS server connection of a TCP flow, or returns nil when this connection is not one
    /// (then HTTP's eager connection applies) or `upstream_cert` is off (the relay connects later).
    static func connectEagerlyForTCP(hello: ClientHello, connection: ClientConnectionContext) -> EventLoopFuture<EagerServer>? {
        guard connection.options.upstreamCert, let target = connection.tunnelTarget else { return nil }
        let decision = connection.services.nextLayer.decideAfterClientTLS(
            server: target,
            sni: hello.serverName,
            alpn: nil,
            inTunnel: true
        )
        guard decision == .tcp else { return nil }
        let server = TCPServerConnector.connect(
            TCPServerConnector.Target(
                address: target,
                usesTLS: true,
                sni: hello.serverName ?? target.host,
                alpnOffers: hello.alpnProtocols
            ),
            connection: connection
        )
        return server.map { EagerServer.tcp(server, $0.1) }
            .recover { _ in EagerServer.tcp(server, nil) }
    }
}
