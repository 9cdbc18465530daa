import Foundation
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL
import NIOTLS
import Synchronization

/// The state every connection of one origin shares, each part behind its own `Mutex`.
final class OriginState: Sendable {
    let requests = Mutex<[RecordedRequest]>([])
    /// Payloads of the WebSocket data frames received on `/ws`, in arrival order.
    let webSocketMessages = Mutex<[[UInt8]]>([])
    private let connections = Mutex<(count: Int, open: [Int: any Channel])>((0, [:]))

    func connectionOpened() -> Int {
        connections.withLock {
            $0.count += 1
            return $0.count
        }
    }

    func track(_ channel: any Channel, id: Int) {
        connections.withLock { $0.open[id] = channel }
        channel.closeFuture.whenComplete { _ in
            self.connections.withLock { _ = $0.open.removeValue(forKey: id) }
        }
    }

    var connectionCount: Int { connections.withLock { $0.count } }

    func closeAll() {
        let open = connections.withLock { $0.open.values }
        for channel in open {
            channel.close(promise: nil)
        }
    }

    func record(_ request: RecordedRequest) {
        requests.withLock { $0.append(request) }
    }
}

enum OriginPipeline {
    static func addHTTP1(to channel: any Channel, state: OriginState, connectionID: Int, isTLS: Bool) throws {
        state.track(channel, id: connectionID)
        var encoder = HTTPResponseEncoder.Configuration()
        encoder.automaticallySetFramingHeaders = false
        let upgrader = OriginWebSocket.upgrader(state: state, connectionID: connectionID, isTLS: isTLS)
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(
            withPipeliningAssistance: true,
            withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in }),
            withErrorHandling: true,
            withEncoderConfiguration: encoder
        )
        try channel.pipeline.syncOperations.addHandler(
            OriginRequestHandler(state: state, connectionID: connectionID, isTLS: isTLS, isHTTP2: false)
        )
    }

    static func addHTTP2(to channel: any Channel, state: OriginState, connectionID: Int) throws {
        state.track(channel, id: connectionID)
        _ = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
            mode: .server,
            connectionConfiguration: .init(),
            streamConfiguration: .init(),
            inboundStreamInitializer: { stream in
                stream.eventLoop.makeCompletedFuture {
                    try stream.pipeline.syncOperations.addHandlers([
                        HTTP2FramePayloadToHTTP1ServerCodec(),
                        OriginRequestHandler(state: state, connectionID: connectionID, isTLS: true, isHTTP2: true),
                    ])
                }
            }
        )
    }
}

/// After the TLS handshake: HTTP/2 or HTTP/1 by the negotiated protocol.
final class OriginALPNHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    private let state: OriginState
    private let connectionID: Int

    init(state: OriginState, connectionID: Int) {
        self.state = state
        self.connectionID = connectionID
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let event = event as? TLSUserEvent, case .handshakeCompleted(let alpn) = event else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        do {
            if alpn == "h2" {
                try OriginPipeline.addHTTP2(to: context.channel, state: state, connectionID: connectionID)
            } else {
                try OriginPipeline.addHTTP1(to: context.channel, state: state, connectionID: connectionID, isTLS: true)
            }
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        } catch {
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A client that rejects our test certificate: nothing to serve.
        context.close(promise: nil)
    }
}

/// Serves one HTTP/1 connection, or one HTTP/2 stream (behind NIO's HTTP/2 ⇄ HTTP/1 codec).
final class OriginRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let state: OriginState
    private let connectionID: Int
    private let isTLS: Bool
    private let isHTTP2: Bool
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []

    init(state: OriginState, connectionID: Int, isTLS: Bool, isHTTP2: Bool) {
        self.state = state
        self.connectionID = connectionID
        self.isTLS = isTLS
        self.isHTTP2 = isHTTP2
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = []
            if !isHTTP2, head.headers["expect"].contains(where: { $0.lowercased() == "100-continue" }) {
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
            }
        case .body(var buffer):
            body += buffer.readBytes(length: buffer.readableBytes) ?? []
        case .end(let trailers):
            guard let head else { return }
            self.head = nil
            var request = RecordedRequest(
                method: head.method.rawValue,
                uri: head.uri,
                httpVersion: isHTTP2 ? "HTTP/2.0" : "HTTP/\(head.version.major).\(head.version.minor)",
                headers: head.headers.map { ($0.name, $0.value) },
                body: body,
                connectionID: connectionID,
                isTLS: isTLS
            )
            request.trailers = trailers?.map { ($0.name, $0.value) } ?? []
            body = []
            state.record(request)
            respond(to: request, keepAlive: isHTTP2 || head.isKeepAlive, version: head.version, context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    // MARK: - Routes

    private func respond(to request: RecordedRequest, keepAlive: Bool, version: HTTPVersion, context: ChannelHandlerContext) {
        let (path, query) = Self.split(request.uri)
        let isHead = request.method == "HEAD"
        let parts = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        let send = { (status: Int, headers: [(String, String)], body: [UInt8]) in
            self.send(status: status, headers: headers, body: body, isHead: isHead, keepAlive: keepAlive, version: version, context: context)
        }
        switch parts.first {
        case nil:
            send(200, [("Content-Type", "text/plain")], Array("ok".utf8))
        case "echo":
            let echo = EchoResponse(
                method: request.method,
                uri: request.uri,
                httpVersion: request.httpVersion,
                headers: request.headers.map { [$0.name, $0.value] },
                body: request.bodyString,
                bodyLength: request.body.count
            )
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let json = (try? encoder.encode(echo)).map(Array.init) ?? []
            send(200, [("Content-Type", "application/json")], json)
        case "set-cookie":
            // `/set-cookie?name=value`: sets that cookie for the whole site.
            let cookies = query.sorted { $0.key < $1.key }.map { ("Set-Cookie", "\($0.key)=\($0.value); Path=/") }
            send(200, [("Content-Type", "text/plain")] + cookies, Array("cookies set".utf8))
        case "bytes" where parts.count == 2 && Int(parts[1]) != nil:
            sendPattern(count: Int(parts[1])!, chunked: false, isHead: isHead, keepAlive: keepAlive, version: version, context: context)
        case "chunked" where parts.count == 2 && Int(parts[1]) != nil:
            sendPattern(count: Int(parts[1])!, chunked: true, isHead: isHead, keepAlive: keepAlive, version: version, context: context)
        case "status" where parts.count == 2 && Int(parts[1]) != nil:
            let status = Int(parts[1])!
            if (100..<200).contains(status) || status == 204 || status == 304 {
                var headers: [(String, String)] = [("X-Status", String(status))]
                if status == 304 { headers.append(("ETag", "\"test-etag\"")) }
                sendHead(status: status, headers: headers, context: context)
                finish(keepAlive: keepAlive, context: context)
            } else {
                send(status, [("Content-Type", "text/plain")], Array("status \(status)".utf8))
            }
        case "slow":
            let delay = query["ms"].flatMap(Int.init) ?? 300
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: .milliseconds(Int64(delay))) {
                let (handler, context) = loopBound.value
                handler.send(status: 200, headers: [("Content-Type", "text/plain")], body: Array("slow".utf8),
                             isHead: isHead, keepAlive: keepAlive, version: version, context: context)
            }
        case "close-mid-body":
            sendHead(status: 200, headers: [("Content-Type", "application/octet-stream"), ("Content-Length", "1000")], context: context)
            if !isHead {
                context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: [UInt8](repeating: 0x41, count: 10))))), promise: nil)
            }
            context.flush()
            // Give the bytes a moment to leave, then drop the connection (HTTP/2: reset the stream).
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: .milliseconds(50)) {
                loopBound.value.close(promise: nil)
            }
        case "trailers":
            // A body followed by trailer fields (chunked on HTTP/1.1; a trailing HEADERS frame on
            // HTTP/2, as gRPC sends its status).
            var headers: [(String, String)] = [("Content-Type", "text/plain"), ("Trailer", "x-checksum, grpc-status")]
            if !isHTTP2 { headers.append(("Transfer-Encoding", "chunked")) }
            sendHead(status: 200, headers: headers, context: context)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "body before trailers")))), promise: nil)
            var trailers = HTTPHeaders()
            trailers.add(name: "x-checksum", value: "1234")
            trailers.add(name: "grpc-status", value: "0")
            context.writeAndFlush(wrapOutboundOut(.end(trailers)), promise: nil)
        case "headers-case":
            sendHead(status: 200, headers: LoopbackOrigin.headersCaseFields.map { ($0.name, $0.value) }, context: context)
            if !isHead {
                context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "ok")))), promise: nil)
            }
            finish(keepAlive: keepAlive, context: context)
        default:
            send(404, [("Content-Type", "text/plain")], Array("no route for \(path)".utf8))
        }
    }

    private func sendHead(status: Int, headers: [(String, String)], context: ChannelHandlerContext) {
        var fields = HTTPHeaders()
        for (name, value) in headers {
            fields.add(name: isHTTP2 ? name.lowercased() : name, value: value)
        }
        let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: fields)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
    }

    private func send(
        status: Int,
        headers: [(String, String)],
        body: [UInt8],
        isHead: Bool,
        keepAlive: Bool,
        version: HTTPVersion,
        context: ChannelHandlerContext
    ) {
        var headers = headers
        headers.append(("Content-Length", String(body.count)))
        if !keepAlive && !isHTTP2 { headers.append(("Connection", "close")) }
        sendHead(status: status, headers: headers, context: context)
        if !isHead && !body.isEmpty {
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
        }
        finish(keepAlive: keepAlive, context: context)
    }

    private func sendPattern(count: Int, chunked: Bool, isHead: Bool, keepAlive: Bool, version: HTTPVersion, context: ChannelHandlerContext) {
        var headers: [(String, String)] = [("Content-Type", "application/octet-stream")]
        let useChunked = chunked && version == .http1_1 && !isHTTP2
        if useChunked {
            headers.append(("Transfer-Encoding", "chunked"))
        } else if !chunked {
            headers.append(("Content-Length", String(count)))
        }
        if !keepAlive && !isHTTP2 { headers.append(("Connection", "close")) }
        sendHead(status: 200, headers: headers, context: context)
        if !isHead && count > 0 {
            if chunked {
                // Four chunks (of at least one byte), so the chunk framing is exercised.
                let bytes = LoopbackOrigin.patternBytes(count: count)
                let size = max(1, (count + 3) / 4)
                var offset = 0
                while offset < count {
                    let end = min(count, offset + size)
                    context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: bytes[offset..<end])))), promise: nil)
                    offset = end
                }
            } else {
                let block = LoopbackOrigin.patternBlock.count
                var offset = 0
                while offset < count {
                    let chunk = LoopbackOrigin.patternChunk(index: offset / block)
                    let take = min(chunk.count, count - offset)
                    context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: chunk.prefix(take))))), promise: nil)
                    offset += take
                }
            }
        }
        if chunked && !useChunked && !isHTTP2 {
            // HTTP/1.0 without chunked coding: the body ends with the connection.
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in loopBound.value.close(promise: nil) }
            return
        }
        finish(keepAlive: keepAlive, context: context)
    }

    private func finish(keepAlive: Bool, context: ChannelHandlerContext) {
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            done.whenComplete { _ in loopBound.value.close(promise: nil) }
        }
    }

    static func split(_ uri: String) -> (path: String, query: [String: String]) {
        guard let mark = uri.firstIndex(of: "?") else { return (uri, [:]) }
        var query: [String: String] = [:]
        for pair in uri[uri.index(after: mark)...].split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
            query[kv[0]] = kv.count > 1 ? kv[1] : ""
        }
        return (String(uri[..<mark]), query)
    }
}
