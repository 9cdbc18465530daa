import NIOCore

/// One WebSocket message (mitmproxy's `websocket.WebSocketMessage`): fragmented frames are
/// reassembled, so a message is what the application sent, not what the wire carried.
public struct WebSocketMessage: Sendable, Hashable {
    /// The RFC 6455 opcode of the message's first frame. Only data messages are kept on flows.
    public enum Kind: Int, Sendable, Hashable {
        case text = 1
        case binary = 2

        /// `text` or `binary`, as mitmproxy's `Opcode.name.lower()`.
        public var name: String {
            switch self {
            case .text: "text"
            case .binary: "binary"
            }
        }
    }

    public var kind: Kind
    public var fromClient: Bool
    /// The payload, unmasked. Text messages hold UTF-8.
    public var content: ByteBuffer
    /// When the message was received or created.
    public var timestamp: Double
    /// Set by an addon (or a filter) to not forward the message.
    public var dropped: Bool
    /// Set on messages an addon created rather than a peer sent.
    public var injected: Bool

    public init(
        kind: Kind,
        fromClient: Bool,
        content: ByteBuffer,
        timestamp: Double = now(),
        dropped: Bool = false,
        injected: Bool = false
    ) {
        self.kind = kind
        self.fromClient = fromClient
        self.content = content
        self.timestamp = timestamp
        self.dropped = dropped
        self.injected = injected
    }

    public init(kind: Kind, fromClient: Bool, text: String, timestamp: Double = now()) {
        self.init(kind: kind, fromClient: fromClient, content: ByteBuffer(string: text), timestamp: timestamp)
    }

    public var isText: Bool { kind == .text }

    /// The content as text (invalid UTF-8 replaced); setting it replaces the content.
    public var text: String {
        get { String(buffer: content) }
        set { content = ByteBuffer(string: newValue) }
    }
}

/// Everything about one WebSocket connection that grew out of an HTTP flow (mitmproxy's
/// `websocket.WebSocketData`, kept on `HTTPFlow.websocket`).
public struct WebSocketData: Sendable, Hashable {
    public var messages: [WebSocketMessage]
    /// `true` if the client closed the connection, `false` if the server did, `nil` while open.
    public var closedByClient: Bool?
    /// The close code of the closing handshake (RFC 6455 §7.1.5); 1006 when the connection broke
    /// without one.
    public var closeCode: Int?
    public var closeReason: String?
    public var timestampEnd: Double?

    public init(
        messages: [WebSocketMessage] = [],
        closedByClient: Bool? = nil,
        closeCode: Int? = nil,
        closeReason: String? = nil,
        timestampEnd: Double? = nil
    ) {
        self.messages = messages
        self.closedByClient = closedByClient
        self.closeCode = closeCode
        self.closeReason = closeReason
        self.timestampEnd = timestampEnd
    }

    /// The RFC 6455 name of a close code, as mitmproxy's dumper names it (wsproto's `CloseReason`).
    public static func closeReasonName(_ code: Int) -> String? {
        switch code {
        case 1000: "NORMAL_CLOSURE"
        case 1001: "GOING_AWAY"
        case 1002: "PROTOCOL_ERROR"
        case 1003: "UNSUPPORTED_DATA"
        case 1005: "NO_STATUS_RCVD"
        case 1006: "ABNORMAL_CLOSURE"
        case 1007: "INVALID_FRAME_PAYLOAD_DATA"
        case 1008: "POLICY_VIOLATION"
        case 1009: "MESSAGE_TOO_BIG"
        case 1010: "MANDATORY_EXT"
        case 1011: "INTERNAL_ERROR"
        case 1012: "SERVICE_RESTART"
        case 1013: "TRY_AGAIN_LATER"
        case 1015: "TLS_HANDSHAKE_FAILED"
        default: nil
        }
    }
}
