import Foundation
import MitmCore
import MitmIO
import Synchronization

/// mitmproxy's `savehar` addon (`--set hardump=PATH`): every finished or failed HTTP flow is kept
/// (a WebSocket connection when it ends, with its messages), and at shutdown the lot is written as
/// HAR 1.2 — zlib-compressed when the path ends in `.zhar`. HAR has no place for TCP flows.
public final class SaveHAR: Addon {
    public let name = "savehar"
    private let path: String
    private let filter: (@Sendable (Flow) -> Bool)?
    /// Flows in the order they finished. Protected by its mutex.
    private let flows = Mutex<(list: [HTTPFlow], ids: Set<FlowID>)>(([], []))

    public init(path: String, filter: (@Sendable (Flow) -> Bool)? = nil) {
        self.path = NSString(string: path).expandingTildeInPath
        self.filter = filter
    }

    public func response(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        guard flow.websocket == nil else { return }
        keep(flow)
    }

    public func error(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        guard flow.websocket == nil else { return }
        keep(flow)
    }

    public func websocketEnd(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        keep(flow)
    }

    public func done(context: AddonContext) async throws {
        let flows = self.flows.withLock { $0.list }
        let data = try HARWriter.data(for: flows, compressed: path.hasSuffix(".zhar"))
        try data.write(to: URL(fileURLWithPath: path))
        context.logger.info("HAR file saved (\(flows.count) flows) to \(path).")
    }

    private func keep(_ flow: HTTPFlow) {
        if let filter, !filter(.http(flow)) { return }
        flows.withLock { kept in
            if kept.ids.insert(flow.id).inserted {
                kept.list.append(flow)
            }
        }
    }
}
