import Foundation
import NIOCore

/// A chunk of a relayed TCP stream (mitmproxy's `tcp.TCPMessage`). TCP has no messages: a chunk is
/// whatever one read returned, so addons must not rely on where the boundaries fall.
public struct TCPMessage: Sendable, Hashable {
    public var fromClient: Bool
    public var content: ByteBuffer
    public var timestamp: Double

    public init(fromClient: Bool, content: ByteBuffer, timestamp: Double = now()) {
        self.fromClient = fromClient
        self.content = content
        self.timestamp = timestamp
    }
}

/// A TCP connection relayed as data rather than parsed as HTTP (mitmproxy's `tcp.TCPFlow`):
/// connections matching `tcp_hosts`, and non-HTTP traffic when `rawtcp` is on.
public struct TCPFlow: Sendable, Hashable, Identifiable {
    public var id: FlowID
    public var clientConnection: ClientConnection
    public var serverConnection: ServerConnection
    public var messages: [TCPMessage]
    public var error: FlowError?
    public var isReplay: String?
    public var marked: String
    public var comment: String
    public var timestampCreated: Double
    public var metadata: [String: String]

    public init(clientConnection: ClientConnection, serverConnection: ServerConnection, timestampCreated: Double = now()) {
        self.id = FlowID.fast()
        self.clientConnection = clientConnection
        self.serverConnection = serverConnection
        self.messages = []
        self.error = nil
        self.isReplay = nil
        self.marked = ""
        self.comment = ""
        self.timestampCreated = timestampCreated
        self.metadata = [:]
    }
}

/// Any flow: what flow files, filters and saving addons deal in. HTTP flows include WebSocket
/// connections (`HTTPFlow.websocket`), as in mitmproxy.
public enum Flow: Sendable, Hashable, Identifiable {
    case http(HTTPFlow)
    case tcp(TCPFlow)

    /// mitmproxy's `flow.type`: `http` or `tcp`.
    public var type: String {
        switch self {
        case .http: "http"
        case .tcp: "tcp"
        }
    }

    public var id: FlowID {
        switch self {
        case .http(let flow): flow.id
        case .tcp(let flow): flow.id
        }
    }

    public var httpFlow: HTTPFlow? {
        if case .http(let flow) = self { return flow }
        return nil
    }

    public var tcpFlow: TCPFlow? {
        if case .tcp(let flow) = self { return flow }
        return nil
    }

    public var clientConnection: ClientConnection {
        switch self {
        case .http(let flow): flow.clientConnection
        case .tcp(let flow): flow.clientConnection
        }
    }

    public var serverConnection: ServerConnection? {
        switch self {
        case .http(let flow): flow.serverConnection
        case .tcp(let flow): flow.serverConnection
        }
    }

    public var error: FlowError? {
        switch self {
        case .http(let flow): flow.error
        case .tcp(let flow): flow.error
        }
    }

    public var isReplay: String? {
        switch self {
        case .http(let flow): flow.isReplay
        case .tcp(let flow): flow.isReplay
        }
    }

    public var marked: String {
        switch self {
        case .http(let flow): flow.marked
        case .tcp(let flow): flow.marked
        }
    }

    public var comment: String {
        switch self {
        case .http(let flow): flow.comment
        case .tcp(let flow): flow.comment
        }
    }

    public var metadata: [String: String] {
        switch self {
        case .http(let flow): flow.metadata
        case .tcp(let flow): flow.metadata
        }
    }

    /// When the flow was created (mitmproxy's `timestamp_created`).
    public var timestampCreated: Double {
        switch self {
        case .http(let flow): flow.timestampCreated
        case .tcp(let flow): flow.timestampCreated
        }
    }
}
