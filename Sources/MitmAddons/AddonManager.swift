import Logging
import MitmCore

/// Runs hooks on every addon, in order. An addon that throws is logged with its name and the hook,
/// and the chain goes on: one broken addon never takes the proxy down (mitmproxy's `safecall`).
public final class AddonManager: Sendable {
    public let addons: [any Addon]
    public let context: AddonContext

    public init(addons: [any Addon], context: AddonContext) {
        self.addons = addons
        self.context = context
    }

    /// Runs `hook` on each addon with the same value, passing edits along the chain.
    public func invoke<Value>(
        _ hook: HookName,
        _ value: inout Value,
        _ call: (any Addon, inout Value, AddonContext) async throws -> Void
    ) async {
        for addon in addons {
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

    /// Runs the hooks a finished flow went through, in order, as mitmproxy does for flows read from
    /// a file (`-r`): requestheaders, request, then responseheaders and response if it has one, and
    /// error if it failed.
    public func replay(_ flow: inout HTTPFlow) async {
        await run(.requestHeaders, on: &flow)
        await run(.request, on: &flow)
        if flow.response != nil {
            await run(.responseHeaders, on: &flow)
            await run(.response, on: &flow)
        }
        if flow.error != nil {
            await run(.error, on: &flow)
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
