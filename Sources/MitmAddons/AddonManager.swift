import Logging
import MitmCore

/// Runs hooks on every addon, in order. An addon that throws is logged with its name and the hook,
/// and the chain goes on: one broken addon never takes the proxy down (mitmproxy's `safecall`).
public final class AddonManager: Sendable {
    public let addons: [any Addon]
    public let context: AddonContext

    /// For each hook, the addons that may implement it, in order.
    private let addonsByHook: [HookName: [any Addon]]

    public init(addons: [any Addon], context: AddonContext) {
        self.addons = addons
        self.context = context
        var byHook: [HookName: [any Addon]] = [:]
        for hook in HookName.allCases {
            byHook[hook] = addons.filter { $0.hooks?.contains(hook) ?? true }
        }
        self.addonsByHook = byHook
    }

    /// Whether any addon may implement `hook`: when none does, running it can be skipped.
    public func handles(_ hook: HookName) -> Bool {
        !(addonsByHook[hook] ?? addons).isEmpty
    }

    /// Runs `hook` on each addon with the same value, passing edits along the chain.
    public func invoke<Value>(
        _ hook: HookName,
        _ value: inout Value,
        _ call: (any Addon, inout Value, AddonContext) async throws -> Void
    ) async {
        for addon in addonsByHook[hook] ?? addons {
            do {
                try await call(addon, &value, context)
            } catch {
                context.logger.error("Addon error in \(addon.name).\(hook.rawValue): \(error)")
            }
        }
    }

    /// Runs an HTTP hook on `flow`.
    public func run(_ hook: HTTPHook, on flow: inout HTTPFlow) async {
        switch hook {
        case .requestHeaders: await invoke(.requestHeaders, &flow) { try await $0.requestHeaders(&$1, context: $2) }
        case .request: await invoke(.request, &flow) { try await $0.request(&$1, context: $2) }
        case .responseHeaders: await invoke(.responseHeaders, &flow) { try await $0.responseHeaders(&$1, context: $2) }
        case .response: await invoke(.response, &flow) { try await $0.response(&$1, context: $2) }
        case .error: await invoke(.error, &flow) { try await $0.error(&$1, context: $2) }
        }
    }

    /// Runs a WebSocket hook on `flow`.
    public func run(_ hook: WebSocketHook, on flow: inout HTTPFlow) async {
        switch hook {
        case .start: await invoke(.websocketStart, &flow) { try await $0.websocketStart(&$1, context: $2) }
        case .message: await invoke(.websocketMessage, &flow) { try await $0.websocketMessage(&$1, context: $2) }
        case .end: await invoke(.websocketEnd, &flow) { try await $0.websocketEnd(&$1, context: $2) }
        }
    }

    /// Runs a TCP hook on `flow`.
    public func run(_ hook: TCPHook, on flow: inout TCPFlow) async {
        switch hook {
        case .start: await invoke(.tcpStart, &flow) { try await $0.tcpStart(&$1, context: $2) }
        case .message: await invoke(.tcpMessage, &flow) { try await $0.tcpMessage(&$1, context: $2) }
        case .end: await invoke(.tcpEnd, &flow) { try await $0.tcpEnd(&$1, context: $2) }
        case .error: await invoke(.tcpError, &flow) { try await $0.tcpError(&$1, context: $2) }
        }
    }

    /// Runs the hooks a finished flow went through, in order, as mitmproxy does for flows read from
    /// a file (`-r`): requestheaders, request, then responseheaders and response if it has one;
    /// then, for a WebSocket connection, websocket_start, websocket_message once per message (the
    /// messages growing one at a time, as they did live) and websocket_end; else error if it failed.
    public func replay(_ flow: inout HTTPFlow) async {
        await run(.requestHeaders, on: &flow)
        await run(.request, on: &flow)
        if flow.response != nil {
            await run(.responseHeaders, on: &flow)
            await run(.response, on: &flow)
        }
        if let websocket = flow.websocket {
            let messages = websocket.messages
            flow.websocket?.messages = []
            await run(.start, on: &flow)
            for message in messages {
                flow.websocket?.messages.append(message)
                await run(.message, on: &flow)
            }
            await run(.end, on: &flow)
        } else if flow.error != nil {
            await run(.error, on: &flow)
        }
    }

    /// Runs the hooks a finished TCP flow went through: tcp_start, tcp_message per message (the
    /// messages growing one at a time), then tcp_error if it failed, else tcp_end.
    public func replay(_ flow: inout TCPFlow) async {
        let messages = flow.messages
        flow.messages = []
        await run(.start, on: &flow)
        for message in messages {
            flow.messages.append(message)
            await run(.message, on: &flow)
        }
        await run(flow.error == nil ? .end : .error, on: &flow)
    }

    /// Replays any flow (see the HTTP and TCP variants).
    public func replay(_ flow: inout Flow) async {
        switch flow {
        case .http(var http):
            await replay(&http)
            flow = .http(http)
        case .tcp(var tcp):
            await replay(&tcp)
            flow = .tcp(tcp)
        }
    }

    public func clientConnected(_ client: inout ClientConnection) async {
        await invoke(.clientConnected, &client) { try await $0.clientConnected(&$1, context: $2) }
    }

    public func clientDisconnected(_ client: ClientConnection) async {
        var client = client
        await invoke(.clientDisconnected, &client) { try await $0.clientDisconnected($1, context: $2) }
    }

    public func serverConnect(_ data: inout ServerConnectionHookData) async {
        await invoke(.serverConnect, &data) { try await $0.serverConnect(&$1, context: $2) }
    }

    public func serverConnected(_ data: ServerConnectionHookData) async {
        var data = data
        await invoke(.serverConnected, &data) { try await $0.serverConnected($1, context: $2) }
    }

    public func serverDisconnected(_ data: ServerConnectionHookData) async {
        var data = data
        await invoke(.serverDisconnected, &data) { try await $0.serverDisconnected($1, context: $2) }
    }

    public func tlsClientHello(_ data: inout TLSClientHelloData) async {
        await invoke(.tlsClientHello, &data) { try await $0.tlsClientHello(&$1, context: $2) }
    }

    /// Runs one of the tls_start/established/failed hooks, chosen by `hook`.
    public func tls(_ hook: HookName, _ data: TLSHookData) async {
        var data = data
        await invoke(hook, &data) { addon, data, context in
            switch hook {
            case .tlsStartClient: try await addon.tlsStartClient(data, context: context)
            case .tlsStartServer: try await addon.tlsStartServer(data, context: context)
            case .tlsEstablishedClient: try await addon.tlsEstablishedClient(data, context: context)
            case .tlsEstablishedServer: try await addon.tlsEstablishedServer(data, context: context)
            case .tlsFailedClient: try await addon.tlsFailedClient(data, context: context)
            case .tlsFailedServer: try await addon.tlsFailedServer(data, context: context)
            default: preconditionFailure("\(hook) is not a TLS hook")
            }
        }
    }

    public func running() async {
        var none: Void = ()
        await invoke(.running, &none) { addon, _, context in try await addon.running(context: context) }
    }

    public func done() async {
        var none: Void = ()
        await invoke(.done, &none) { addon, _, context in try await addon.done(context: context) }
    }
}
