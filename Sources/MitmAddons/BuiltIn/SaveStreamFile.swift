import MitmCore
import Synchronization

/// Where saved flows go: a flow file writer (`MitmIO.FlowWriter` in mitmdump) or anything else.
public protocol FlowSink: Sendable {
    func write(_ flow: HTTPFlow) throws
    func close() throws
}

/// mitmproxy's `save` addon (`-w/--save-stream-file`, `save_stream_filter`): every flow that
/// matches the filter is written once it is complete (`response`) or has failed (`error`); flows
/// still open at shutdown are written as they are, as mitmproxy does.
public final class SaveStreamFile: Addon {
    public let name = "save"
    private let sink: any FlowSink
    private let filter: (@Sendable (HTTPFlow) -> Bool)?
    /// Flows seen but not yet written. Protected by its mutex (hooks of different connections run
    /// on different threads).
    private let open = Mutex<[FlowID: HTTPFlow]>([:])

    public init(sink: any FlowSink, filter: (@Sendable (HTTPFlow) -> Bool)? = nil) {
        self.sink = sink
        self.filter = filter
    }

    public func request(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        let flow = flow
        open.withLock { $0[flow.id] = flow }
    }

    public func response(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        try save(flow)
    }

    public func error(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        try save(flow)
    }

    public func done(context: AddonContext) async throws {
        let remaining = open.withLock { flows in
            defer { flows.removeAll() }
            return Array(flows.values)
        }
        for flow in remaining.sorted(by: { $0.timestampCreated < $1.timestampCreated }) {
            try save(flow)
        }
        try sink.close()
    }

    private func save(_ flow: HTTPFlow) throws {
        open.withLock { $0[flow.id] = nil }
        if let filter, !filter(flow) { return }
        try sink.write(flow)
    }
}
