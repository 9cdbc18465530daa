import NIOCore

/// The life of one WebSocket connection after a successful upgrade: mitmproxy's `WebsocketLayer` as a
/// state machine. It validates and reassembles frames, records messages on the flow, decides what
/// goes to which side, and when hooks run; the server's relay does the I/O.
///
/// Events come in as method calls; each returns the actions the driver must perform, in order. Hooks
/// are blocking, as in mitmproxy's layers: after `.runHook(h)` the driver runs the addons on `flow`
/// and answers with `hookCompleted(_:)`. Everything that arrives meanwhile (frames from either side, a
/// connection end) is queued and handled, in arrival order, once the hook is through; the driver
/// should stop reading while `isHookInFlight` (backpressure).
///
/// ```
///   websocket_start ──► open ──► (message from a side) ──► websocket_message ──► forward ──► open
///                        │ close frame from A: record, forward to B
///                        ▼
///                     closing ──► (B's echo, a connection end, or a time-out) ──► close both ──► websocket_end ──► done
///   open: a connection ends without a close frame ──► code 1006, close the other ──► websocket_end
///   any RFC 6455 violation ──► close 1002/1007/1009 to the violator, 1001 to the other, flow.error ──► websocket_end
/// ```
///
/// Decisions mitmproxy leaves open or that differ from it:
/// - A message is forwarded as one frame, whatever its fragmentation was (as mitmproxy does).
/// - Messages an addon appends to `flow.websocket.messages` during a hook with `injected = true` are
///   sent after the hook (no hook runs for them). `fromClient` says who the message pretends to come
///   from: an injected `fromClient` message goes to the server, else to the client.
/// - Ping and pong frames are forwarded as they are and not recorded.
/// - After a close frame, data from either side is dropped; only the other side's close (the echo) is
///   forwarded back. mitmproxy answers the close itself and closes at once; we wait for the echo so
///   each peer sees the other's answer.
/// - Reassembled messages are limited to `Limits.maxMessageSize`; a larger one is refused with 1009.
public struct WebSocketStreamStateMachine: Sendable {
    public enum Side: Sendable, Hashable, CustomStringConvertible {
        case client
        case server

        public var other: Side { self == .client ? .server : .client }
        public var description: String { self == .client ? "client" : "server" }
    }

    public struct Limits: Sendable, Hashable {
        /// The largest message, after reassembly, that is accepted (and the largest frame).
        public var maxMessageSize: Int

        /// 16 MiB: the default of mitmproxy's `stream_large_bodies` in this port, large enough for any
        /// ordinary application message and small enough that a peer cannot make us buffer without end.
        public static let defaultMaxMessageSize = 16 * 1024 * 1024

        public init(maxMessageSize: Int = Limits.defaultMaxMessageSize) {
            self.maxMessageSize = maxMessageSize
        }

        /// `body_size_limit` when it is set, else the default.
        public init(bodySizeLimit: Int?) {
            self.init(maxMessageSize: bodySizeLimit ?? Self.defaultMaxMessageSize)
        }
    }

    public enum Action: Sendable, Hashable {
        /// Run the hook on `flow` and call `hookCompleted(_:)` with the result.
        case runHook(WebSocketHook)
        /// Send a frame to a side. Frames to the server must be masked by the driver.
        case send(Frame, to: Side)
        /// Close that side's connection once what was sent to it is written.
        case close(Side)
        /// Log a line (info level) about the connection.
        case log(String)
    }

    private enum State: Sendable {
        case startHook
        case open
        /// `initiator` sent a close frame; it went to the other side, whose echo we wait for.
        case closing(initiator: Side)
        case endHook
        case done
    }

    /// Something that happened while a hook was out, handled once it is through.
    private enum Pending: Sendable {
        case frame(Frame, from: Side)
        case closed(Side)
        case protocolError(Side, code: Int, message: String)
        case closingTimedOut
    }

    /// A message being reassembled from fragments.
    private struct Partial: Sendable {
        var kind: WebSocketMessage.Kind
        var content: ByteBuffer
    }

    public private(set) var flow: HTTPFlow
    private let limits: Limits
    private var state: State = .startHook
    private var hookInFlight = false
    /// Whether `start()` was called. Events before it (frames a peer sent right behind the upgrade,
    /// handed over while the driver rewires its pipelines) wait for websocket_start too.
    private var started = false
    private var pending: [Pending] = []
    private var partialFromClient: Partial?
    private var partialFromServer: Partial?
    /// How many messages the flow had when the running hook started (injected ones come after).
    private var messageCountAtHook = 0

    public init(flow: HTTPFlow, limits: Limits = Limits()) {
        self.flow = flow
        self.limits = limits
        if self.flow.websocket == nil {
            self.flow.websocket = WebSocketData()
        }
    }

    /// Whether a hook is out: the driver should stop reading from both sides until it completes.
    public var isHookInFlight: Bool { hookInFlight }

    /// Whether the connection is over and websocket_end has run.
    public var isDone: Bool {
        if case .done = state { return true }
        return false
    }

    /// Whether a close frame was forwarded and the echo is awaited (the driver arms a time-out).
    public var isClosing: Bool {
        if case .closing = state { return true }
        return false
    }

    // MARK: - Events

    /// The upgrade is through: websocket_start runs first.
    public mutating func start() -> [Action] {
        precondition(!started, "Internal inconsistency: WebSocket stream started twice")
        started = true
        return runHook(.start)
    }

    /// Whether events must wait: before the start, and while a hook is out.
    private var mustQueue: Bool { !started || hookInFlight }

    /// A frame arrived from `side`.
    public mutating func frameReceived(_ frame: Frame, from side: Side) -> [Action] {
        if mustQueue {
            pending.append(.frame(frame, from: side))
            return []
        }
        return handleFrame(frame, from: side)
    }

    /// The connection to `side` ended (closed, reset, or failed).
    public mutating func connectionClosed(_ side: Side) -> [Action] {
        if mustQueue {
            pending.append(.closed(side))
            return []
        }
        return handleClosed(side)
    }

    /// The driver's codec refused what `side` sent before it became a frame (a frame larger than the
    /// limit, a fragmented or oversized control frame): treated like any other violation.
    public mutating func codecFailed(_ side: Side, code: Int, message: String) -> [Action] {
        if mustQueue {
            pending.append(.protocolError(side, code: code, message: message))
            return []
        }
        return violation(side, code: code, message: message)
    }

    /// The other side's close echo did not come in time.
    public mutating func closingTimedOut() -> [Action] {
        if mustQueue {
            pending.append(.closingTimedOut)
            return []
        }
        return handleClosingTimeout()
    }

    /// The hook from the last `.runHook` is through; `edited` is the flow as the addons left it.
    public mutating func hookCompleted(_ edited: HTTPFlow) -> [Action] {
        precondition(hookInFlight, "Internal inconsistency: hook completed while none was running")
        hookInFlight = false
        let previous = flow.websocket ?? WebSocketData()
        flow = edited
        if flow.websocket == nil {
            // An addon removed the WebSocket data: the connection still is one.
            flow.websocket = previous
        }
        var actions: [Action] = []
        switch state {
        case .startHook:
            state = .open
            actions += injectedMessages()
        case .open:
            actions += forwardCurrentMessage()
            actions += injectedMessages()
        case .closing:
            break
        case .endHook:
            state = .done
            pending = []
            return actions
        case .done:
            return actions
        }
        while !hookInFlight, !pending.isEmpty {
            let next = pending.removeFirst()
            switch next {
            case .frame(let frame, let side): actions += handleFrame(frame, from: side)
            case .closed(let side): actions += handleClosed(side)
            case .protocolError(let side, let code, let message): actions += violation(side, code: code, message: message)
            case .closingTimedOut: actions += handleClosingTimeout()
            }
        }
        return actions
    }

    // MARK: - Frames

    private mutating func handleFrame(_ frame: Frame, from side: Side) -> [Action] {
        switch state {
        case .open, .closing:
            break
        case .startHook, .endHook, .done:
            return []
        }
        if let problem = Self.frameViolation(frame, from: side) {
            return violation(side, code: 1002, message: problem)
        }
        switch frame.opcode {
        case Frame.Opcode.close:
            return handleClose(frame, from: side)
        case Frame.Opcode.ping, Frame.Opcode.pong:
            guard case .open = state else { return [] }
            return [.send(Frame(opcode: frame.opcode, payload: frame.payload), to: side.other)]
        default:
            return handleData(frame, from: side)
        }
    }

    /// What is wrong with a frame on its own (RFC 6455 §5.2, §5.5), or nil.
    private static func frameViolation(_ frame: Frame, from side: Side) -> String? {
        if frame.reservedBits != 0 {
            return "reserved bits set (\(frame.reservedBits)) but no extension was negotiated"
        }
        if side == .client && !frame.isMasked {
            return "client frame is not masked"
        }
        if side == .server && frame.isMasked {
            return "server frame is masked"
        }
        switch frame.opcode {
        case Frame.Opcode.continuation, Frame.Opcode.text, Frame.Opcode.binary:
            return nil
        case Frame.Opcode.close, Frame.Opcode.ping, Frame.Opcode.pong:
            if !frame.fin { return "control frame is fragmented" }
            if frame.payload.readableBytes > 125 {
                return "control frame payload is \(frame.payload.readableBytes) bytes (at most 125)"
            }
            return nil
        default:
            return "reserved opcode \(frame.opcode)"
        }
    }

    private mutating func handleData(_ frame: Frame, from side: Side) -> [Action] {
        guard case .open = state else {
            // Data after a close frame is not forwarded (RFC 6455 §5.5.1).
            return []
        }
        var partial = side == .client ? partialFromClient : partialFromServer
        switch frame.opcode {
        case Frame.Opcode.continuation:
            guard partial != nil else {
                return violation(side, code: 1002, message: "continuation frame without a message to continue")
            }
        default:
            guard partial == nil else {
                return violation(side, code: 1002, message: "new data frame while a fragmented message is still open")
            }
            partial = Partial(kind: frame.opcode == Frame.Opcode.text ? .text : .binary, content: ByteBuffer())
        }
        let size = partial!.content.readableBytes + frame.payload.readableBytes
        if size > limits.maxMessageSize {
            return violation(
                side,
                code: 1009,
                message: "message larger than the limit of \(limits.maxMessageSize) bytes"
            )
        }
        var payload = frame.payload
        if partial!.content.readableBytes == 0 {
            partial!.content = payload
        } else {
            partial!.content.writeBuffer(&payload)
        }
        guard frame.fin else {
            setPartial(partial, for: side)
            return []
        }
        setPartial(nil, for: side)
        let complete = partial!
        if complete.kind == .text, !Self.isValidUTF8(complete.content) {
            return violation(side, code: 1007, message: "text message is not valid UTF-8")
        }
        let message = WebSocketMessage(kind: complete.kind, fromClient: side == .client, content: complete.content)
        flow.websocket!.messages.append(message)
        return runHook(.message)
    }

    private mutating func setPartial(_ partial: Partial?, for side: Side) {
        if side == .client { partialFromClient = partial } else { partialFromServer = partial }
    }

    /// After websocket_message: the message as the addons left it goes on, unless dropped.
    private func forwardCurrentMessage() -> [Action] {
        let index = messageCountAtHook - 1
        guard let messages = flow.websocket?.messages, index >= 0, index < messages.count else { return [] }
        let message = messages[index]
        guard !message.dropped else { return [] }
        return [.send(Self.frame(for: message), to: message.fromClient ? .server : .client)]
    }

    /// Messages an addon appended during the hook and marked injected.
    private func injectedMessages() -> [Action] {
        guard case .open = state, let messages = flow.websocket?.messages, messages.count > messageCountAtHook else {
            return []
        }
        return messages[messageCountAtHook...].filter { $0.injected && !$0.dropped }.map {
            .send(Self.frame(for: $0), to: $0.fromClient ? .server : .client)
        }
    }

    private static func frame(for message: WebSocketMessage) -> Frame {
        Frame(
            opcode: message.kind == .text ? Frame.Opcode.text : Frame.Opcode.binary,
            payload: message.content
        )
    }

    // MARK: - Closing

    private mutating func handleClose(_ frame: Frame, from side: Side) -> [Action] {
        let parsed: (code: Int, reason: String)
        switch Self.parseClose(frame.payload) {
        case .success(let value):
            parsed = value
        case .failure(let problem):
            return violation(side, code: problem.code, message: problem.message)
        }
        switch state {
        case .open:
            flow.websocket!.closeCode = parsed.code
            flow.websocket!.closeReason = parsed.reason
            flow.websocket!.closedByClient = side == .client
            flow.websocket!.timestampEnd = now()
            partialFromClient = nil
            partialFromServer = nil
            state = .closing(initiator: side)
            return [.send(Frame(opcode: Frame.Opcode.close, payload: frame.payload), to: side.other)]
        case .closing(let initiator):
            guard side != initiator else { return [] }  // a second close from the initiator changes nothing
            // The echo: it goes back to the initiator, and the connection is over.
            return [.send(Frame(opcode: Frame.Opcode.close, payload: frame.payload), to: initiator)]
                + finish()
        case .startHook, .endHook, .done:
            return []
        }
    }

    struct CloseProblem: Error {
        var code: Int
        var message: String
    }

    /// The code and reason of a close frame's payload (RFC 6455 §5.5.1, §7.4): no payload means
    /// 1005 (no status received).
    static func parseClose(_ payload: ByteBuffer) -> Result<(code: Int, reason: String), CloseProblem> {
        var payload = payload
        if payload.readableBytes == 0 {
            return .success((1005, ""))
        }
        guard let code = payload.readInteger(as: UInt16.self) else {
            return .failure(CloseProblem(code: 1002, message: "close frame payload of 1 byte (a code takes 2)"))
        }
        guard isValidCloseCode(Int(code)) else {
            return .failure(CloseProblem(code: 1002, message: "invalid close code \(code)"))
        }
        guard isValidUTF8(payload) else {
            return .failure(CloseProblem(code: 1007, message: "close reason is not valid UTF-8"))
        }
        return .success((Int(code), String(buffer: payload)))
    }

    /// Codes a peer may send (RFC 6455 §7.4.1, §7.4.2 and the IANA registry): 1004, 1005, 1006 and 1015
    /// are reserved for reporting and never go on the wire.
    public static func isValidCloseCode(_ code: Int) -> Bool {
        switch code {
        case 1000...1003, 1007...1014: true
        case 3000...4999: true
        default: false
        }
    }

    private mutating func handleClosed(_ side: Side) -> [Action] {
        switch state {
        case .startHook, .open:
            // No closing handshake: the connection broke (RFC 6455 §7.1.5).
            flow.websocket!.closeCode = 1006
            flow.websocket!.closeReason = ""
            flow.websocket!.closedByClient = side == .client
            flow.websocket!.timestampEnd = now()
            return finish()
        case .closing:
            return finish()
        case .endHook, .done:
            return []
        }
    }

    private mutating func handleClosingTimeout() -> [Action] {
        guard case .closing = state else { return [] }
        return finish()
    }

    /// Both connections close, then websocket_end runs.
    private mutating func finish() -> [Action] {
        state = .endHook
        partialFromClient = nil
        partialFromServer = nil
        return [.close(.client), .close(.server)] + runHook(.end)
    }

    // MARK: - Violations

    /// `side` broke RFC 6455: it gets a close frame with `code`, the other side a 1001 (the proxy is
    /// going away), both connections close, the flow records the error, and websocket_end runs.
    private mutating func violation(_ side: Side, code: Int, message: String) -> [Action] {
        switch state {
        case .open, .closing, .startHook:
            break
        case .endHook, .done:
            return []
        }
        let text = "WebSocket protocol error from \(side): \(message)"
        flow.error = FlowError(text)
        if flow.websocket!.timestampEnd == nil {
            flow.websocket!.closeCode = code
            flow.websocket!.closeReason = message
            flow.websocket!.closedByClient = side == .client
            flow.websocket!.timestampEnd = now()
        }
        var actions: [Action] = [.log(text)]
        actions.append(.send(.close(code: code, reason: message), to: side))
        if case .open = state {
            actions.append(.send(.close(code: 1001, reason: "protocol error from \(side)"), to: side.other))
        }
        return actions + finish()
    }

    // MARK: - Helpers

    private mutating func runHook(_ hook: WebSocketHook) -> [Action] {
        hookInFlight = true
        messageCountAtHook = flow.websocket?.messages.count ?? 0
        return [.runHook(hook)]
    }

    static func isValidUTF8(_ buffer: ByteBuffer) -> Bool {
        buffer.withUnsafeReadableBytes { String(validating: $0, as: UTF8.self) != nil }
    }
}
