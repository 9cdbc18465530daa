extension HTTPRequest {
    /// Whether the request asks to switch to WebSocket (RFC 6455 §4.1), as mitmproxy tests it:
    /// `Upgrade: websocket`, whatever the case.
    public var isWebSocketUpgrade: Bool {
        headers["upgrade"]?.lowercased() == "websocket"
    }
}

extension HTTPFlow {
    /// Whether the server accepted a WebSocket upgrade: `101` with `Upgrade: websocket` answering a
    /// request that asked for it.
    public var isAcceptedWebSocketUpgrade: Bool {
        guard let response, request.isWebSocketUpgrade else { return false }
        return response.statusCode == 101 && response.headers["upgrade"]?.lowercased() == "websocket"
    }
}
