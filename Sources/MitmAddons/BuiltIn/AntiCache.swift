import MitmCore

/// mitmproxy's `anticache` addon (`--anticache`): strips the request headers that let a server
/// answer 304 Not Modified (`If-None-Match`, `If-Modified-Since`), so every response carries its
/// body and shows up whole in the flow.
public struct AntiCache: Addon {
    public var hooks: Set<HookName>? { [.request] }
    public let name = "anticache"

    public init() {}

    public func request(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        guard context.options.anticache else { return }
        flow.request.headers.remove("if-modified-since")
        flow.request.headers.remove("if-none-match")
    }
}
