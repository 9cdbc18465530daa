import MitmCore
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOHTTP2
import Testing

@testable import MitmServer

/// The pieces of RFC 8441 on a client stream, without a network: the body ⇄ buffer adapter, the
/// `:protocol` recorder, the HTTP/1.1 form of an extended CONNECT, and the handshake key.
@Suite("HTTP/2 WebSocket stream")
struct HTTP2WebSocketStreamTests {
    @Test("The adapter hands on early bytes, turns body parts into buffers and buffers into body parts, and ends with .end")
    func adapter() throws {
        let channel = EmbeddedChannel()
        let adapter = HTTP2WebSocketStreamAdapter(pending: [ByteBuffer(string: "early")], clientEnded: false)
        try channel.pipeline.syncOperations.addHandler(adapter)
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        adapter.deliverPending(context: try channel.pipeline.syncOperations.context(handler: adapter))
        #expect(try channel.readInbound(as: ByteBuffer.self) == ByteBuffer(string: "early"))

        try channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(string: "frame bytes")))
        #expect(try channel.readInbound(as: ByteBuffer.self) == ByteBuffer(string: "frame bytes"))

        try channel.writeOutbound(ByteBuffer(string: "to client"))
        guard case .body(.byteBuffer(let sent)) = try channel.readOutbound(as: HTTPServerResponsePart.self) else {
            Issue.record("expected a body part")
            return
        }
        #expect(sent == ByteBuffer(string: "to client"))

        channel.close(promise: nil)
        guard case .end(nil) = try channel.readOutbound(as: HTTPServerResponsePart.self) else {
            Issue.record("a close should end the stream with .end (END_STREAM)")
            return
        }
        #expect(channel.isActive, "the stream stays open for the client's END_STREAM")
        channel.embeddedEventLoop.advanceTime(by: HTTP2WebSocketStreamAdapter.endGracePeriod)
        #expect(!channel.isActive, "closed after the grace period")
        _ = try? channel.finish()
    }

    @Test("The client's END_STREAM closes the stream channel")
    func clientEnd() throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(HTTP2WebSocketStreamAdapter(pending: [], clientEnded: false))
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        #expect(!channel.isActive)
    }

    @Test("The recorder keeps :protocol of the first HEADERS")
    func recorder() throws {
        let recorder = ExtendedConnectRecorder()
        let channel = EmbeddedChannel(handler: recorder)
        let headers = HTTP2Frame.FramePayload.Headers(headers: [
            ":method": "CONNECT", ":protocol": "websocket", ":scheme": "https", ":path": "/ws", ":authority": "a",
        ])
        try channel.writeInbound(HTTP2Frame.FramePayload.headers(headers))
        #expect(recorder.protocolName == "websocket")
        _ = try channel.readInbound(as: HTTP2Frame.FramePayload.self)
        _ = try? channel.finish()
    }

    @Test("An extended CONNECT goes to the server as an HTTP/1.1 upgrade with our key")
    func upgradeRequest() {
        var request = HTTPRequest(
            method: "CONNECT", scheme: "https", host: "example.com", port: 443, path: "/chat",
            httpVersion: "HTTP/2.0", headers: ["sec-websocket-version": "13", "sec-websocket-protocol": "chat"]
        )
        request.authority = "example.com"
        let key = WebSocketHandshake.makeKey()
        let upgrade = HTTPProxyHandler.webSocketUpgrade(forExtendedConnect: request, key: key)
        let head = HTTPProxyHandler.serverRequestHead(upgrade, bodyLength: 0, toHTTP2: false)
        #expect(head.method == .GET)
        #expect(head.uri == "/chat")
        #expect(head.version == .http1_1)
        #expect(head.headers["upgrade"] == ["websocket"])
        #expect(head.headers["connection"] == ["Upgrade"])
        #expect(head.headers["sec-websocket-key"] == [key])
        #expect(head.headers["sec-websocket-protocol"] == ["chat"])
        #expect(head.headers["host"] == ["example.com"])
    }

    @Test("Sec-WebSocket-Accept as in RFC 6455 §1.3; keys are 16 random bytes")
    func handshake() {
        #expect(WebSocketHandshake.accept(forKey: "dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        let key = WebSocketHandshake.makeKey()
        #expect(key.count == 24)
        #expect(key != WebSocketHandshake.makeKey())
    }
}
