import MitmCore

/// mitmproxy's `anticomp` addon (`--anticomp`): asks servers for uncompressed responses
/// (`Accept-Encoding: identity`), so bodies can be read and rewritten without decoding.
public struct AntiComp: Addon {
    public var hooks: Set<HookName>? { [.request] }
    public let name = "anticomp"

    public init() {}

    public func request(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        guard context.options.anticomp else { return }
        flow.request.headers["accept-encoding"] = "identity"
    }
}
