import MitmCore
import Synchronization

/// mitmproxy's `stickyauth` addon (`-u FILTER`): the `Authorization` header of a matching request is
/// remembered per host, and added to later matching requests to that host that carry none, so a
/// client (or a replay) that forgot its credentials is still let in.
///
/// mitmproxy remembers the header of every request once the option is set; we remember it only from
/// requests the filter matches, so credentials for hosts outside the filter are never held.
public struct StickyAuth: Addon {
    public var hooks: Set<HookName>? { [.request] }
    public let name = "stickyauth"
    public let filter: FlowFilter
    private let store = Store()

    /// The addon for the `stickyauth` option's filter expression.
    public init(filter expression: String) throws(FlowFilterError) {
        self.filter = try FlowFilter(expression)
    }

    /// Per host, the last `Authorization` value seen. Shared by every connection's hooks.
    private final class Store: Sendable {
        let headers = Mutex<[String: String]>([:])
    }

    /// The remembered headers, by host, for inspection.
    public var rememberedAuthorization: [String: String] { store.headers.withLock { $0 } }

    public func request(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        guard filter.matches(flow) else { return }
        let host = flow.request.host.lowercased()
        if let authorization = flow.request.headers["authorization"] {
            store.headers.withLock { $0[host] = authorization }
        } else if let remembered = store.headers.withLock({ $0[host] }) {
            flow.request.headers["authorization"] = remembered
        }
    }
}
