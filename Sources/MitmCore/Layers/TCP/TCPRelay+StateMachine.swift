import NIOCore

/// mitmproxy's `TCPLayer` (`proxy/layers/tcp.py`) as a state machine: it owns a `TCPFlow`, takes
/// in what happened on the two connections, and hands out actions one at a time for its driver to
/// carry out (`nextAction()` until `.wait`). It never touches a socket.
///
/// ```
///  start() ─► tcp_start ─► [connect the server] ─► relaying ─┬─► tcp_end   (both sides closed)
///                                    │                       └─► tcp_error (a side failed)
///                                    └─ connect failed ─────────► tcp_error
/// ```
///
/// While relaying, every chunk read from either side becomes a `TCPMessage` and runs `tcp_message`
/// before the (possibly edited) content is sent on. Events are handled strictly in arrival order,
/// one at a time: what arrives while a hook runs waits in a queue, as mitmproxy's layer pauses its
/// events while a hook blocks it. A side whose input closes (FIN) has its FIN forwarded to the other
/// side (half-close); the flow ends once neither side can be read.
public struct TCPRelayStateMachine: Sendable {
    public enum Side: Sendable, Hashable {
        case client
        case server

        public var other: Side { self == .client ? .server : .client }
    }

    public enum Action: Sendable {
        /// Run `hook` on the flow and call ``hookCompleted(_:)`` with the flow as the addons left it.
        /// The machine holds no copy meanwhile (so appending messages never copies the array).
        case runHook(TCPHook, TCPFlow)
        /// Open the server connection, then call ``serverConnected(_:)`` or ``serverConnectFailed(_:)``.
        case connectServer
        /// Write `data` to `side`.
        case send(Side, ByteBuffer)
        /// Shut our output towards `side`: the other side has closed its output.
        case halfClose(Side)
        /// Close both connections.
        case closeConnections
        /// The flow is over: its last hook (`tcp_end` or `tcp_error`) has run.
        case finished
        /// Nothing to do until the next event or hook completion.
        case wait
    }

    private enum Phase: Sendable {
        case notStarted
        /// `tcp_start` runs.
        case starting
        /// The server connection is being opened.
        case connecting
        case relaying
        /// `tcp_end` or `tcp_error` has been issued.
        case ending
        case done
    }

    private enum Event: Sendable {
        case data(Side, ByteBuffer)
        case inputClosed(Side)
        case connectionClosed(Side)
        case failed(String)
    }

    /// The flow; `nil` while a hook has it.
    private var flow: TCPFlow?
    private var phase: Phase = .notStarted
    private var hookInFlight: TCPHook?
    private var serverIsConnected: Bool
    private var canRead: (client: Bool, server: Bool) = (true, true)
    private var queue = CircularBuffer<Event>()
    private var outbox = CircularBuffer<Action>()
    /// When false, a message's content is dropped once it has been forwarded: nobody can look at
    /// the flow (no addons), and keeping every byte would make the relay's memory grow with the stream.
    private let keepsMessages: Bool

    /// `serverIsConnected`: the server connection is already open (opened for TLS interception).
    public init(flow: TCPFlow, serverIsConnected: Bool, keepsMessages: Bool = true) {
        self.flow = flow
        self.serverIsConnected = serverIsConnected
        self.keepsMessages = keepsMessages
    }

    // MARK: - Reading the state

    /// Whether the driver should read from the connections now: relaying and no hook running. (While
    /// a hook runs, or the server is being connected, reads wait, so the queue stays short.)
    public var wantsReads: Bool {
        phase == .relaying && hookInFlight == nil && queue.isEmpty
    }

    /// Whether the flow is over or ending (no more data is relayed).
    public var isFinishing: Bool {
        phase == .ending || phase == .done
    }

    /// The flow as it stands, unless a hook has it.
    public var currentFlow: TCPFlow? { flow }

    // MARK: - Events

    /// Starts the flow: `tcp_start` first, as mitmproxy does, even before the server is connected.
    public mutating func start() {
        guard phase == .notStarted else { return }
        phase = .starting
        issueHook(.start)
    }

    /// A chunk arrived from `side`.
    public mutating func dataReceived(from side: Side, _ data: ByteBuffer) {
        guard !isFinishing, data.readableBytes > 0 else { return }
        queue.append(.data(side, data))
    }

    /// `side` closed its output (FIN, or the connection went away).
    public mutating func inputClosed(_ side: Side) {
        guard !isFinishing else { return }
        queue.append(.inputClosed(side))
    }

    /// `side`'s connection is gone in both directions (closed, not half-closed): nothing more can
    /// reach it, so the flow ends (`tcp_end`) and the other side is closed too. This is how proxy
    /// shutdown ends a TCP flow.
    public mutating func connectionClosed(_ side: Side) {
        guard !isFinishing else { return }
        queue.append(.connectionClosed(side))
    }

    /// A connection failed (reset, TLS error, …): the flow ends with `tcp_error`.
    public mutating func connectionFailed(_ message: String) {
        guard !isFinishing else { return }
        queue.append(.failed(message))
    }

    public mutating func serverConnected(_ server: ServerConnection) {
        guard phase == .connecting else { return }
        serverIsConnected = true
        flow?.serverConnection = server
        phase = .relaying
    }

    /// The server connection could not be opened: `tcp_error` with `message`, and both sides close.
    public mutating func serverConnectFailed(_ message: String) {
        guard phase == .connecting else { return }
        fail(message)
    }

    /// The hook issued by the last `.runHook` has run; `flow` is the flow as the addons left it.
    public mutating func hookCompleted(_ flow: TCPFlow) {
        guard let hook = hookInFlight else { return }
        hookInFlight = nil
        self.flow = flow
        switch hook {
        case .start:
            if phase == .starting {
                if serverIsConnected {
                    phase = .relaying
                } else {
                    phase = .connecting
                    outbox.append(.connectServer)
                }
            }
        case .message:
            if let message = self.flow?.messages.last {
                outbox.append(.send(message.fromClient ? .server : .client, message.content))
                if !keepsMessages {
                    self.flow?.messages.removeAll(keepingCapacity: true)
                }
            }
        case .end, .error:
            phase = .done
            outbox.append(.finished)
        }
    }

    // MARK: - Actions

    /// The next thing to do; `.wait` when there is nothing until another event.
    public mutating func nextAction() -> Action {
        if let action = outbox.popFirst() { return action }
        guard hookInFlight == nil, phase == .relaying, let event = queue.popFirst() else { return .wait }
        switch event {
        case .data(let side, let data):
            flow?.messages.append(TCPMessage(fromClient: side == .client, content: data))
            issueHook(.message)
        case .inputClosed(let side):
            // A side closes once; a repeated report (FIN, then the channel going away) is no news.
            switch side {
            case .client:
                guard canRead.client else { return outbox.popFirst() ?? .wait }
                canRead.client = false
            case .server:
                guard canRead.server else { return outbox.popFirst() ?? .wait }
                canRead.server = false
            }
            if !canRead.client && !canRead.server {
                phase = .ending
                outbox.append(.closeConnections)
                issueHook(.end)
            } else {
                outbox.append(.halfClose(side.other))
            }
        case .connectionClosed:
            canRead = (false, false)
            phase = .ending
            outbox.append(.closeConnections)
            issueHook(.end)
        case .failed(let message):
            fail(message)
        }
        return outbox.popFirst() ?? .wait
    }

    private mutating func fail(_ message: String) {
        phase = .ending
        queue.removeAll()
        flow?.error = FlowError(message)
        outbox.append(.closeConnections)
        issueHook(.error)
    }

    /// Hands the flow to `hook`: the action carries it, the machine keeps none.
    private mutating func issueHook(_ hook: TCPHook) {
        guard let flow else { return }
        self.flow = nil
        hookInFlight = hook
        outbox.append(.runHook(hook, flow))
    }
}
