import Foundation
import Logging
import MitmAddons
import MitmCertificates
import MitmCore
import NIOCore
import NIOPosix
import Synchronization

/// The proxy: listeners, the certificate store and the addons, on one event loop group. Each client
/// connection and every server connection it opens stay on one event loop.
public final class ProxyServer: Sendable {
    public let options: ProxyOptions
    let services: ProxyServices
    let group: MultiThreadedEventLoopGroup
    private let listeners = Mutex<[any Channel]>([])
    private let ownsGroup: Bool

    /// Sets up the proxy: loads or creates the CA in `options.confdir` and the user's `--certs`.
    /// Throws a readable error when the CA or a certificate file cannot be used.
    public init(
        options: ProxyOptions,
        addons: [any Addon],
        logger: Logger = Logger(label: "mitmproxy"),
        group: MultiThreadedEventLoopGroup? = nil
    ) throws {
        self.options = options
        let confdir = NSString(string: options.confdir).expandingTildeInPath
        let authority = try CertificateAuthority.loadOrCreate(confdir: confdir)
        let certificates = CertificateStore(authority: authority)
        for spec in options.certs {
            try certificates.addCustomCertificate(spec: spec)
        }
        let manager = AddonManager(addons: addons, context: AddonContext(options: options, logger: logger))
        let authenticator = try options.proxyauth.map(Self.makeAuthenticator)
        self.services = try ProxyServices(
            options: options,
            addons: manager,
            certificates: certificates,
            logger: logger,
            authenticator: authenticator
        )
        self.ownsGroup = group == nil
        self.group = group ?? MultiThreadedEventLoopGroup(numberOfThreads: options.threads ?? System.coreCount)
    }

    /// Binds one listener per mode and starts serving. Returns the bound addresses (useful with port 0).
    @discardableResult
    public func start() async throws -> [SocketAddress] {
        var addresses: [SocketAddress] = []
        for spec in options.modes {
            let services = self.services
            let listenHost = spec.listenHost ?? options.listenHost
            let host = listenHost.isEmpty ? "0.0.0.0" : listenHost
            let port = spec.listenPort ?? options.listenPort ?? spec.mode.defaultPort
            let channel = try await ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 1024)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelOption(.maxMessagesPerRead, value: 16)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try PipelineSetup.configureNewClient(channel: channel, services: services, spec: spec)
                    }
                }
                .bind(host: host, port: port)
                .get()
            listeners.withLock { $0.append(channel) }
            if let address = channel.localAddress {
                addresses.append(address)
                let shownHost = listenHost.isEmpty ? "*" : (address.ipAddress ?? host)
                let shown = "\(shownHost.contains(":") ? "[\(shownHost)]" : shownHost):\(address.port ?? 0)"
                services.logger.notice("\(spec.mode.listenerDescription) listening at \(shown).")
            }
        }
        await services.addons.running()
        return addresses
    }

    /// The checker for `--proxyauth SPEC`, reading an htpasswd file now; errors name the spec.
    static func makeAuthenticator(_ spec: String) throws -> ProxyAuthenticator {
        do {
            let parsed = try ProxyAuthSpec(parsing: spec)
            return try ProxyAuthenticator(spec: parsed) { path in
                try String(contentsOfFile: NSString(string: path).expandingTildeInPath, encoding: .utf8)
            }
        } catch {
            throw ProxyServerError(message: "invalid proxyauth '\(spec)': \(error)")
        }
    }

    /// The addon chain this proxy runs hooks on (so flows read from a file meet the same addons).
    public var addons: AddonManager { services.addons }

    /// Flows still in progress (requests read, response not yet sent).
    public var openFlowCount: Int { services.openFlows.load(ordering: .relaxed) }

    /// Stops accepting, lets open flows finish (up to `grace` seconds), then closes everything and
    /// tells the addons we are done.
    public func shutdown(grace: Double = 5) async {
        let channels = listeners.withLock { channels in
            defer { channels.removeAll() }
            return channels
        }
        for channel in channels {
            try? await channel.close()
        }
        let deadline = Date().addingTimeInterval(grace)
        while openFlowCount > 0 && Date() < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        // What outlived the grace period (a WebSocket or TCP connection) is closed now, so its
        // end hook runs, and `-w` saves it, before `done`.
        services.closeClients()
        let closing = Date().addingTimeInterval(1)
        while openFlowCount > 0 && Date() < closing {
            try? await Task.sleep(for: .milliseconds(20))
        }
        await services.addons.done()
        if ownsGroup {
            try? await group.shutdownGracefully()
        }
    }
}

/// The proxy could not be set up as configured.
public struct ProxyServerError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
