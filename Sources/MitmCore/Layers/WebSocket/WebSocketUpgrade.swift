import Crypto
import Foundation

extension HTTPRequest {
    /// Whether the request asks to switch to WebSocket (RFC 6455 §4.1), as mitmproxy tests it:
    /// `Upgrade: websocket`, whatever the case.
    public var isWebSocketUpgrade: Bool {
        headers["upgrade"]?.lowercased() == "websocket"
    }
}

extension HTTPFlow {
    /// The `metadata` key under which an HTTP/2 extended CONNECT (RFC 8441) keeps its `:protocol`.
    /// mitmproxy has no field for the pseudo-header (it refuses extended CONNECT), and a regular
    /// header would be sent on; the flow's request stays `CONNECT` with the client's `:path`.
    public static let extendedConnectProtocolKey = "extended_connect_protocol"

    /// Whether the flow is an RFC 8441 WebSocket: an HTTP/2 `CONNECT` with `:protocol websocket`.
    public var isExtendedWebSocketConnect: Bool {
        request.method == "CONNECT" && request.isHTTP2
            && metadata[Self.extendedConnectProtocolKey]?.lowercased() == "websocket"
    }

    /// Whether the server accepted a WebSocket upgrade: `101` with `Upgrade: websocket` answering a
    /// request that asked for it, either an HTTP/1.1 upgrade or an RFC 8441 extended CONNECT (which
    /// we forward to the server as an HTTP/1.1 upgrade, so its answer is a 101 as well).
    public var isAcceptedWebSocketUpgrade: Bool {
        guard let response, request.isWebSocketUpgrade || isExtendedWebSocketConnect else { return false }
        return response.statusCode == 101 && response.headers["upgrade"]?.lowercased() == "websocket"
    }
}

/// The opening handshake's key and answer (RFC 6455 §4.1–4.2), for the upgrades we make up
/// ourselves: an RFC 8441 request carries no `Sec-WebSocket-Key`, its HTTP/1.1 form towards the
/// server must.
public enum WebSocketHandshake {
    /// The GUID that RFC 6455 §1.3 appends to the key.
    static let guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    /// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64.
    public static func makeKey() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<16).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return Data(bytes).base64EncodedString()
    }

    /// The `Sec-WebSocket-Accept` a server must answer `key` with.
    public static func accept(forKey key: String) -> String {
        let digest = Insecure.SHA1.hash(data: Array((key + guid).utf8))
        return Data(digest).base64EncodedString()
    }
}
