/// The events addons can react to, named as mitmproxy names them (`hooks.py`), so mitmproxy's addon
/// documentation maps one to one onto the Swift `Addon` protocol.
public enum HookName: String, Sendable, Hashable, CaseIterable {
    case clientConnected = "client_connected"
    case clientDisconnected = "client_disconnected"
    case serverConnect = "server_connect"
    case serverConnected = "server_connected"
    case serverDisconnected = "server_disconnected"
    case tlsClientHello = "tls_clienthello"
    case tlsStartClient = "tls_start_client"
    case tlsStartServer = "tls_start_server"
    case tlsEstablishedClient = "tls_established_client"
    case tlsEstablishedServer = "tls_established_server"
    case tlsFailedClient = "tls_failed_client"
    case tlsFailedServer = "tls_failed_server"
    case requestHeaders = "requestheaders"
    case request = "request"
    case responseHeaders = "responseheaders"
    case response = "response"
    case error = "error"
    case websocketStart = "websocket_start"
    case websocketMessage = "websocket_message"
    case websocketEnd = "websocket_end"
    case tcpStart = "tcp_start"
    case tcpMessage = "tcp_message"
    case tcpEnd = "tcp_end"
    case tcpError = "tcp_error"
    case running = "running"
    case done = "done"
}

/// The hooks that run on an HTTP flow, in the order the flow meets them.
public enum HTTPHook: Sendable, Hashable, CaseIterable {
    case requestHeaders
    case request
    case responseHeaders
    case response
    case error

    public var name: HookName {
        switch self {
        case .requestHeaders: .requestHeaders
        case .request: .request
        case .responseHeaders: .responseHeaders
        case .response: .response
        case .error: .error
        }
    }
}

/// The hooks that run on a WebSocket connection (an `HTTPFlow` whose `websocket` is set).
public enum WebSocketHook: Sendable, Hashable, CaseIterable {
    /// The upgrade succeeded; messages follow.
    case start
    /// A message arrived: it is the last of `flow.websocket.messages`.
    case message
    /// The connection closed; `closeCode` says how.
    case end

    public var name: HookName {
        switch self {
        case .start: .websocketStart
        case .message: .websocketMessage
        case .end: .websocketEnd
        }
    }
}

/// The hooks that run on a `TCPFlow`.
public enum TCPHook: Sendable, Hashable, CaseIterable {
    case start
    /// Data arrived: it is the last of `flow.messages`.
    case message
    case end
    /// The connection failed; `flow.error` says why. Runs instead of `end`.
    case error

    public var name: HookName {
        switch self {
        case .start: .tcpStart
        case .message: .tcpMessage
        case .end: .tcpEnd
        case .error: .tcpError
        }
    }
}
