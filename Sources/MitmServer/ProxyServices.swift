import Logging
import MitmAddons
import MitmCertificates
import MitmCore
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import Synchronization

/// What every connection of one proxy shares: options, addons, the certificate store and the TLS
/// contexts made from it. Immutable apart from the caches, which are lock-protected.
final class ProxyServices: Sendable {
    let options: ProxyOptions
    let addons: AddonManager
    let certificates: CertificateStore
    let logger: Logger
    /// Checks proxy credentials when `proxyauth` is set.
    let authenticator: CachingAuthenticator?
    /// Flows in progress, so shutdown can let them finish.
    let openFlows = Atomic<Int>(0)
    /// `ignore_hosts`, `allow_hosts`, `tcp_hosts` and `rawtcp`, compiled once.
    let nextLayer: NextLayerRules
    /// Client connections still open, so shutdown can close what outlives the grace period (a
    /// WebSocket or TCP flow), letting their end hooks run before `done`.
    private let clients = NIOLockedValueBox([ObjectIdentifier: any Channel]())

    func track(client channel: any Channel) {
        let id = ObjectIdentifier(channel)
        clients.withLockedValue { $0[id] = channel }
        channel.closeFuture.whenComplete { _ in
            self.clients.withLockedValue { _ = $0.removeValue(forKey: id) }
        }
    }

    func closeClients() {
        for channel in clients.withLockedValue({ Array($0.values) }) {
            channel.close(promise: nil)
        }
    }

    /// Server-side contexts (towards clients), one per leaf and ALPN choice, so a repeated host costs
    /// neither signing nor context set-up. Protected by its lock.
    private let serverContexts = NIOLockedValueBox([ServerContextKey: NIOSSLContext]())
    /// Client-side contexts (towards servers), one per ALPN offer list. Protected by its lock.
    private let clientContexts = NIOLockedValueBox([[String]: NIOSSLContext]())

    struct ServerContextKey: Hashable {
        var leaf: LeafRequest
        var alpn: String?
    }

    /// Throws when a host pattern option does not compile.
    init(
        options: ProxyOptions,
        addons: AddonManager,
        certificates: CertificateStore,
        logger: Logger,
        authenticator: ProxyAuthenticator? = nil
    ) throws {
        self.nextLayer = try NextLayerRules(options: options)
        self.authenticator = authenticator.map(CachingAuthenticator.init)
        self.options = options
        self.addons = addons
        self.certificates = certificates
        self.logger = logger
    }

    // MARK: - Hooks

    /// Runs hooks on `value` and calls `completion` with the edited value on `eventLoop`: inline when
    /// there are no addons (nothing to run, e.g. `mitmdump -q`: a relayed chunk or message then costs
    /// no task and no hop), otherwise after the hook chain, never inside it. The caller's state
    /// machine has already moved on when it asked, so re-entering it from `completion` is safe.
    ///
    /// The hook chain starts as an immediate task: addons that do not suspend run straight away on
    /// the event loop thread, without a hop through the global executor.
    func runHooks<Value: Sendable>(
        _ hook: HookName,
        on value: Value,
        eventLoop: any EventLoop,
        _ body: @escaping @Sendable (AddonManager, inout Value) async -> Void,
        completion: @escaping (Value) -> Void
    ) {
        let addons = self.addons
        if !addons.handles(hook) {
            completion(value)
            return
        }
        let completion = NIOLoopBound(completion, eventLoop: eventLoop)
        Task.immediate {
            var value = value
            await body(addons, &value)
            let result = value
            eventLoop.execute { completion.value(result) }
        }
    }

    /// Runs an HTTP hook (see `runHooks`).
    func runHook(_ hook: HTTPHook, on flow: HTTPFlow, eventLoop: any EventLoop, completion: @escaping (HTTPFlow) -> Void) {
        runHooks(hook.name, on: flow, eventLoop: eventLoop, { await $0.run(hook, on: &$1) }, completion: completion)
    }

    /// Runs a WebSocket hook (see `runHooks`).
    func runWebSocketHook(_ hook: WebSocketHook, on flow: HTTPFlow, eventLoop: any EventLoop, completion: @escaping (HTTPFlow) -> Void) {
        runHooks(hook.name, on: flow, eventLoop: eventLoop, { await $0.run(hook, on: &$1) }, completion: completion)
    }

    /// Runs a TCP hook (see `runHooks`).
    func runTCPHook(_ hook: TCPHook, on flow: TCPFlow, eventLoop: any EventLoop, completion: @escaping (TCPFlow) -> Void) {
        runHooks(hook.name, on: flow, eventLoop: eventLoop, { await $0.run(hook, on: &$1) }, completion: completion)
    }

    /// Runs any other hook, fire-and-forget, in the background (connection and TLS events);
    /// `hooks` are the ones `body` runs, so nothing starts when no addon implements them.
    func notify(_ hooks: HookName..., body: @escaping @Sendable (AddonManager) async -> Void) {
        let addons = self.addons
        guard hooks.contains(where: addons.handles) else { return }
        Task.immediate { await body(addons) }
    }

    // MARK: - TLS contexts

    /// The context that presents `leaf` to a client and selects `alpn` (if the client offered it).
    func serverContext(for request: LeafRequest, leaf: LeafCertificate, alpn: String?) throws -> NIOSSLContext {
        let key = ServerContextKey(leaf: request, alpn: alpn)
        if let context = serverContexts.withLockedValue({ $0[key] }) {
            return context
        }
        let chain = try leaf.chainDER.map { try NIOSSLCertificate(bytes: $0, format: .der) }
        let privateKey = try NIOSSLPrivateKey(bytes: leaf.privateKeyDER, format: .der)
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) },
            privateKey: .privateKey(privateKey)
        )
        configuration.applicationProtocols = alpn.map { [$0] } ?? []
        let context = try NIOSSLContext(configuration: configuration)
        serverContexts.withLockedValue {
            if $0.count > 2000 { $0.removeAll() }
            $0[ServerContextKey(leaf: request, alpn: alpn)] = context
        }
        return context
    }

    /// The context for connecting to servers, offering `alpn`; verification follows `ssl_insecure`.
    func clientContext(alpn: [String]) throws -> NIOSSLContext {
        if let context = clientContexts.withLockedValue({ $0[alpn] }) {
            return context
        }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.applicationProtocols = alpn
        if options.sslInsecure {
            configuration.certificateVerification = .none
        }
        let context = try NIOSSLContext(configuration: configuration)
        clientContexts.withLockedValue { $0[alpn] = context }
        return context
    }
}

/// A `ProxyAuthenticator` that remembers credentials it accepted: a bcrypt check costs a fifth of a
/// second by design, and clients send the same header on every connection. Only successes are
/// kept, so a wrong password is checked in full every time.
final class CachingAuthenticator: Sendable {
    private let authenticator: ProxyAuthenticator
    private let accepted = Mutex<Set<String>>([])

    init(_ authenticator: ProxyAuthenticator) {
        self.authenticator = authenticator
    }

    func verify(username: String, password: String) -> Bool {
        let key = username + "\u{0}" + password
        if accepted.withLock({ $0.contains(key) }) { return true }
        guard authenticator.verify(username: username, password: password) else { return false }
        accepted.withLock { accepted in
            if accepted.count > 1000 { accepted.removeAll() }
            accepted.insert(key)
        }
        return true
    }
}
