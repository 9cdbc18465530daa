import MitmAddons
import MitmCore
import NIOCore

/// For a tunnel to a `tcp_hosts` server: connects as soon as the tunnel opens, as mitmproxy does
/// (it connects on CONNECT), so a server that speaks first (SMTP, IMAP, FTP) starts the TCP flow
/// without waiting for a client that waits for it.
///
/// ```
///  tunnel open ──► connect ──► server speaks first ──► TCP flow over this connection
///                     └──────► client speaks first ──► TCP: claim() this connection
///                                                  └─► TLS or HTTP: discard() it
/// ```
///
/// Confined to the client connection's event loop (the connection is opened on it too).
final class EarlyServerConnection {
    private let connection: ClientConnectionContext
    private let target: Address
    private var connecting: EventLoopFuture<(any Channel, ServerConnection)>?
    /// Someone took the connection, or it was discarded: the server speaking decides nothing any more.
    private var isSettled = false

    init(connection: ClientConnectionContext, target: Address) {
        self.connection = connection
        self.target = target
    }

    /// Connects; the first bytes from the server decide for `clientPeek`: a TCP flow.
    func start(clientPeek: ProtocolPeekHandler) {
        let connection = self.connection
        let future = TCPServerConnector.connect(
            TCPServerConnector.Target(address: target, usesTLS: false, sni: nil, alpnOffers: []),
            connection: connection
        )
        connecting = future
        future.assumeIsolated().whenSuccess { [self] channel, _ in
            guard !isSettled else { return }
            // Holds what the server sends until the relay takes the channel.
            let serverPeek = ProtocolPeekHandler { [self] _ in
                .decided { [self] _ in
                    guard !isSettled else { return }
                    isSettled = true
                    clientPeek.decide(now: { context in
                        PipelineSetup.startTCPRelay(replacing: context, connection: connection, preconnected: future)
                    })
                }
            }
            do {
                try channel.pipeline.syncOperations.addHandler(serverPeek)
            } catch {
                channel.close(promise: nil)
            }
        }
    }

    /// The client's bytes made this a TCP flow: the relay uses this connection.
    func claim() -> EventLoopFuture<(any Channel, ServerConnection)>? {
        isSettled = true
        return connecting
    }

    /// Not a TCP flow after all (TLS is intercepted with its own connection, HTTP has its pool).
    func discard() {
        isSettled = true
        connecting?.whenSuccess { channel, _ in channel.close(promise: nil) }
    }
}
