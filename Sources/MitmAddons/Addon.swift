import Logging
import MitmCore

/// An addon: an object that reacts to mitmproxy's hooks. Every hook has a no-op default, so an addon
/// implements just the ones it needs, and the compiler checks their names and types (mitmproxy finds
/// hooks by name at run time, where a misspelt hook is silently never called).
///
/// Hooks may suspend (`async`) and may throw: a thrown error is logged with the addon's name and the
/// proxy goes on with the next addon (mitmproxy's `safecall`). HTTP hooks receive the flow `inout`:
/// edits are kept, and setting `flow.response` in `requestHeaders`/`request` answers the client
/// without contacting the server.
public protocol Addon: Sendable {
    /// The name used in logs.
    var name: String { get }

    /// The hooks this addon implements, if it declares them; `nil` (the default) means it may
    /// implement any. Declaring them lets the proxy skip the rest: a proxy whose only addon watches
    /// connections (block_global, on by default) then runs no task per request.
    var hooks: Set<HookName>? { get }

    // MARK: Connection lifecycle
    /// A client connected. Nothing is read from it until every addon has run this hook; setting
    /// `client.error` has the connection closed without being served (what `Block` does).
    func clientConnected(_ client: inout ClientConnection, context: AddonContext) async throws
    func clientDisconnected(_ client: ClientConnection, context: AddonContext) async throws
    func serverConnect(_ data: inout ServerConnectionHookData, context: AddonContext) async throws
    func serverConnected(_ data: ServerConnectionHookData, context: AddonContext) async throws
    func serverDisconnected(_ data: ServerConnectionHookData, context: AddonContext) async throws

    // MARK: TLS
    func tlsClientHello(_ data: inout TLSClientHelloData, context: AddonContext) async throws
    func tlsStartClient(_ data: TLSHookData, context: AddonContext) async throws
    func tlsStartServer(_ data: TLSHookData, context: AddonContext) async throws
    func tlsEstablishedClient(_ data: TLSHookData, context: AddonContext) async throws
    func tlsEstablishedServer(_ data: TLSHookData, context: AddonContext) async throws
    func tlsFailedClient(_ data: TLSHookData, context: AddonContext) async throws
    func tlsFailedServer(_ data: TLSHookData, context: AddonContext) async throws

    // MARK: HTTP
    func requestHeaders(_ flow: inout HTTPFlow, context: AddonContext) async throws
    func request(_ flow: inout HTTPFlow, context: AddonContext) async throws
    func responseHeaders(_ flow: inout HTTPFlow, context: AddonContext) async throws
    func response(_ flow: inout HTTPFlow, context: AddonContext) async throws
    func error(_ flow: inout HTTPFlow, context: AddonContext) async throws

    // MARK: WebSocket
    /// The flow's `websocket` is set; messages follow.
    func websocketStart(_ flow: inout HTTPFlow, context: AddonContext) async throws
    /// The last of `flow.websocket!.messages` just arrived. Edit its content, set `dropped` to not
    /// forward it, or append messages with `injected` set to send them too.
    func websocketMessage(_ flow: inout HTTPFlow, context: AddonContext) async throws
    func websocketEnd(_ flow: inout HTTPFlow, context: AddonContext) async throws

    // MARK: TCP
    func tcpStart(_ flow: inout TCPFlow, context: AddonContext) async throws
    /// The last of `flow.messages` just arrived; its content may be edited before it is forwarded.
    func tcpMessage(_ flow: inout TCPFlow, context: AddonContext) async throws
    func tcpEnd(_ flow: inout TCPFlow, context: AddonContext) async throws
    func tcpError(_ flow: inout TCPFlow, context: AddonContext) async throws

    // MARK: Lifecycle
    /// The proxy is up and serving.
    func running(context: AddonContext) async throws
    /// The proxy is shutting down; flush what you hold.
    func done(context: AddonContext) async throws
}

extension Addon {
    public var name: String { String(describing: type(of: self)) }
    public var hooks: Set<HookName>? { nil }

    public func clientConnected(_ client: inout ClientConnection, context: AddonContext) async throws {}
    public func clientDisconnected(_ client: ClientConnection, context: AddonContext) async throws {}
    public func serverConnect(_ data: inout ServerConnectionHookData, context: AddonContext) async throws {}
    public func serverConnected(_ data: ServerConnectionHookData, context: AddonContext) async throws {}
    public func serverDisconnected(_ data: ServerConnectionHookData, context: AddonContext) async throws {}
    public func tlsClientHello(_ data: inout TLSClientHelloData, context: AddonContext) async throws {}
    public func tlsStartClient(_ data: TLSHookData, context: AddonContext) async throws {}
    public func tlsStartServer(_ data: TLSHookData, context: AddonContext) async throws {}
    public func tlsEstablishedClient(_ data: TLSHookData, context: AddonContext) async throws {}
    public func tlsEstablishedServer(_ data: TLSHookData, context: AddonContext) async throws {}
    public func tlsFailedClient(_ data: TLSHookData, context: AddonContext) async throws {}
    public func tlsFailedServer(_ data: TLSHookData, context: AddonContext) async throws {}
    public func requestHeaders(_ flow: inout HTTPFlow, context: AddonContext) async throws {}
    public func request(_ flow: inout HTTPFlow, context: AddonContext) async throws {}
    public func responseHeaders(_ flow: inout HTTPFlow, context: AddonContext) async throws {}
    public func response(_ flow: inout HTTPFlow, context: AddonContext) async throws {}
    public func error(_ flow: inout HTTPFlow, context: AddonContext) async throws {}
    public func websocketStart(_ flow: inout HTTPFlow, context: AddonContext) async throws {}
    public func websocketMessage(_ flow: inout HTTPFlow, context: AddonContext) async throws {}
    public func websocketEnd(_ flow: inout HTTPFlow, context: AddonContext) async throws {}
    public func tcpStart(_ flow: inout TCPFlow, context: AddonContext) async throws {}
    public func tcpMessage(_ flow: inout TCPFlow, context: AddonContext) async throws {}
    public func tcpEnd(_ flow: inout TCPFlow, context: AddonContext) async throws {}
    public func tcpError(_ flow: inout TCPFlow, context: AddonContext) async throws {}
    public func running(context: AddonContext) async throws {}
    public func done(context: AddonContext) async throws {}
}

/// What a hook may use besides its argument: the options and the log. Passed in, rather than read
/// from a global `ctx` as in mitmproxy, so an addon can be tested with a context made on the spot.
public struct AddonContext: Sendable {
    public var options: ProxyOptions
    public var logger: Logger

    public init(options: ProxyOptions = ProxyOptions(), logger: Logger = Logger(label: "mitmproxy")) {
        self.options = options
        self.logger = logger
    }
}

/// The server_connect / server_connected / server_disconnected hook argument.
public struct ServerConnectionHookData: Sendable, Hashable {
    public var client: ClientConnection
    public var server: ServerConnection

    public init(client: ClientConnection, server: ServerConnection) {
        self.client = client
        self.server = server
    }
}

/// The tls_clienthello hook argument: the parsed ClientHello, and whether to intercept at all.
public struct TLSClientHelloData: Sendable, Hashable {
    public var client: ClientConnection
    public var clientHello: ClientHello
    /// Set to pass the connection through untouched, without TLS interception.
    public var ignoreConnection: Bool

    public init(client: ClientConnection, clientHello: ClientHello, ignoreConnection: Bool = false) {
        self.client = client
        self.clientHello = clientHello
        self.ignoreConnection = ignoreConnection
    }
}

/// The tls_start/established/failed hook argument, for either side.
public struct TLSHookData: Sendable, Hashable {
    public enum Side: Sendable, Hashable { case client, server }
    public var side: Side
    public var client: ClientConnection
    public var server: ServerConnection?
    /// Why the handshake failed (tls_failed_* only).
    public var error: String?

    public init(side: Side, client: ClientConnection, server: ServerConnection? = nil, error: String? = nil) {
        self.side = side
        self.client = client
        self.server = server
        self.error = error
    }
}
