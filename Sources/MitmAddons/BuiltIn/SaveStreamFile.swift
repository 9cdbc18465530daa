import MitmCore
import Synchronization

/// Where saved flows go: a flow file writer (`MitmIO.FlowWriter` in mitmdump) or anything else.
public protocol FlowSink: Sendable {
    func write(_ flow: Flow) throws
    func close() throws
}

/// mitmproxy's `save` addon (`-w/--save-stream-file`, `save_stream_filter`): every flow that
/// matches the filter is written once it is complete or has failed — an HTTP flow at `response` or
/// `error`, a WebSocket connection at `websocket_end`, a TCP flow at `tcp_end` or `tcp_error`.
/// Flows still open at shutdown are written as they are, as mitmproxy does.
public final class SaveStreamFile: Addon {
    public let name = "save"
    private let sink: any FlowSink
    private let filter: (@Sendable (Flow) -> Bool)?
    /// Flows seen but not yet written. Protected by its mutex (hooks of different connections run
    /// on different threads).
    private let open = Mutex<[FlowID: Flow]>([:])

    public init(sink: any FlowSink, filter: (@Sendable (Flow) -> Bool)? = nil) {
        self.sink = sink
        self.filter = filter
    }

    public func request(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        let flow = flow
        open.withLock { $0[flow.id] = .http(flow) }
    }

    public func response(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        // A WebSocket connection is saved when it ends, with its messages.
        guard flow.websocket == nil else { return }
        try save(.http(flow))
    }

    public func error(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        guard flow.websocket == nil else { return }
        try save(.http(flow))
    }

    public func websocketEnd(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        try save(.http(flow))
    }

    public func tcpStart(_ flow: inout TCPFlow, context: AddonContext) async throws {
        let flow = flow
        open.withLock { $0[flow.id] = .tcp(flow) }
    }

    public func tcpEnd(_ flow: inout TCPFlow, context: AddonContext) async throws {
        try save(.tcp(flow))
    }

    public func tcpError(_ flow: inout TCPFlow, context: AddonContext) async throws {
        try save(.tcp(flow))
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

    private func save(_ flow: Flow) throws {
        open.withLock { $0[flow.id] = nil }
        if let filter, !filter(flow) { return }
        try sink.write(flow)
    }
}
