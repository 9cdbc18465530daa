import Foundation
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL
import NIOTLS
import Synchronization

/// An origin server on `127.0.0.1`, port 0, in the test process: the far end of a proxy test. It
/// speaks plain HTTP/1.1, or TLS (with a ``TestPKI`` certificate for `localhost` and `127.0.0.1`)
/// with HTTP/1.1 only or HTTP/2 chosen by ALPN, and records every request it receives exactly as it
/// arrived, header names in wire order and case, so a test can assert what the proxy forwarded.
///
/// Routes:
///
/// | path | response |
/// | --- | --- |
/// | `/echo` (any method) | 200, JSON ``EchoResponse``: method, target, version, headers, body |
/// | `/bytes/N` | N bytes of ``patternBytes(count:)`` with `Content-Length` |
/// | `/chunked/N` | the same bytes, `Transfer-Encoding: chunked` (HTTP/1.1) in four chunks |
/// | `/status/N` | status N; no body for 1xx, 204 and 304, else `status N` |
/// | `/slow?ms=M` | `slow` after M milliseconds (300 by default) |
/// | `/close-mid-body` | declares `Content-Length: 1000`, sends 10 bytes, closes the connection |
/// | `/headers-case` | headers whose names are in odd case and a fixed order (``headersCaseFields``) |
/// | `/` | `ok` |
/// | anything else | 404 |
///
/// `HEAD` gets the head `GET` would get, without the body. A request with `Expect: 100-continue` gets
/// `100 Continue` first.
public final class LoopbackOrigin: Sendable {
    public enum Kind: Sendable, Hashable {
        /// Plain HTTP/1.1.
        case plain
        /// TLS, ALPN `http/1.1` only (and no ALPN at all is fine too).
        case tlsHTTP1Only
        /// TLS, ALPN `h2` preferred, `http/1.1` accepted.
        case tlsH2

        public var usesTLS: Bool { self != .plain }
        var alpn: [String] {
            switch self {
            case .plain: []
            case .tlsHTTP1Only: ["http/1.1"]
            case .tlsH2: ["h2", "http/1.1"]
            }
        }
    }

    public let kind: Kind
    public let pki: TestPKI
    /// Always `127.0.0.1`.
    public let host = "127.0.0.1"
    public let port: Int
    private let channel: any Channel
    private let state: OriginState

    private init(kind: Kind, pki: TestPKI, channel: any Channel, state: OriginState) {
        self.kind = kind
        self.pki = pki
        self.channel = channel
        self.state = state
        self.port = channel.localAddress?.port ?? 0
    }

    /// Starts an origin of `kind` on `127.0.0.1` and a free port.
    public static func start(_ kind: Kind = .plain, pki: TestPKI = .shared) async throws -> LoopbackOrigin {
        let state = OriginState()
        let sslContext: NIOSSLContext? = kind.usesTLS ? try NIOSSLContext(configuration: pki.serverTLSConfiguration(alpn: kind.alpn)) : nil
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let connectionID = state.connectionOpened()
                    let sync = channel.pipeline.syncOperations
                    if let sslContext {
                        try sync.addHandler(NIOSSLServerHandler(context: sslContext))
                        try sync.addHandler(OriginALPNHandler(state: state, connectionID: connectionID))
                    } else {
                        try OriginPipeline.addHTTP1(to: channel, state: state, connectionID: connectionID, isTLS: false)
                    }
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        return LoopbackOrigin(kind: kind, pki: pki, channel: channel, state: state)
    }

    /// `http` or `https`.
    public var scheme: String { kind.usesTLS ? "https" : "http" }

    /// `host:port` with the given host name (`127.0.0.1` or `localhost`; both reach this origin).
    public func authority(host: String = "127.0.0.1") -> String { "\(host):\(port)" }

    /// A URL for `path` on this origin, e.g. `url("/echo")`; pass `host: "localhost"` for a name that
    /// matches the certificate's DNS SAN.
    public func url(_ path: String, host: String = "127.0.0.1") -> String {
        "\(scheme)://\(host):\(port)\(path)"
    }

    /// Every complete request received so far, in arrival order.
    public var requests: [RecordedRequest] { state.requests.withLock { $0 } }

    /// TCP connections accepted so far.
    public var connectionCount: Int { state.connectionCount }

    /// Forgets the recorded requests.
    public func clearRecords() {
        state.requests.withLock { $0.removeAll() }
    }

    /// Waits until at least `count` requests have been recorded (or `timeout` seconds pass) and
    /// returns what was recorded.
    @discardableResult
    public func waitForRequests(_ count: Int, timeout: Double = 5) async -> [RecordedRequest] {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let requests = self.requests
            if requests.count >= count { return requests }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return requests
    }

    /// Stops listening and closes every connection.
    public func shutdown() async {
        try? await channel.close()
        state.closeAll()
    }

    // MARK: - Test data

    /// The body of `/bytes/N` and `/chunked/N`: `count` deterministic, non-periodic-looking bytes
    /// (a 64 KiB pseudo-random block, rotated by a different amount for each 64 KiB), so a dropped,
    /// duplicated or reordered piece changes the hash.
    public static func patternBytes(count: Int) -> [UInt8] {
        var result = [UInt8]()
        result.reserveCapacity(count)
        var offset = 0
        while offset < count {
            let chunk = patternChunk(index: offset / patternBlock.count)
            let take = min(chunk.count, count - offset)
            result.append(contentsOf: chunk[..<take])
            offset += take
        }
        return result
    }

    static func patternChunk(index: Int) -> ArraySlice<UInt8> {
        let block = patternBlock
        let rotation = (index &* 7919) % block.count
        return ArraySlice(block[rotation...] + block[..<rotation])
    }

    static let patternBlock: [UInt8] = {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        return (0..<65536).map { _ in
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return UInt8(truncatingIfNeeded: state >> 24)
        }
    }()

    /// The response header fields of `/headers-case`, in the order they are sent (HTTP/1.1; HTTP/2
    /// lower-cases names on the wire).
    public static let headersCaseFields: [(name: String, value: String)] = [
        ("X-Zebra", "first"),
        ("x-MiXeD-CaSe", "yes"),
        ("X-UPPER-CASE", "UP"),
        ("x-lower", "down"),
        ("Content-Type", "text/plain"),
        ("X-Zebra", "second"),
        ("content-LENGTH", "2"),
    ]
}

/// Runs `body` with a started origin, shutting it down afterwards whatever happens.
public func withLoopbackOrigin<T>(
    _ kind: LoopbackOrigin.Kind = .plain,
    pki: TestPKI = .shared,
    _ body: (LoopbackOrigin) async throws -> T
) async throws -> T {
    let origin = try await LoopbackOrigin.start(kind, pki: pki)
    do {
        let result = try await body(origin)
        await origin.shutdown()
        return result
    } catch {
        await origin.shutdown()
        throw error
    }
}

// MARK: - Records

/// One request as ``LoopbackOrigin`` received it.
public struct RecordedRequest: Sendable, CustomStringConvertible {
    public var method: String
    /// The request target exactly as received (`/echo?x=1`; HTTP/2: the `:path`).
    public var uri: String
    /// `HTTP/1.1`, `HTTP/1.0` or `HTTP/2.0`.
    public var httpVersion: String
    /// Header fields in wire order, names in wire case. For HTTP/2, the `host` field carries `:authority`.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// Which accepted connection (1, 2, …) it came on; two requests with the same id shared a connection.
    public var connectionID: Int
    public var isTLS: Bool

    /// The first value of `name`, compared case-insensitively.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    /// Names of the header fields, in order.
    public var headerNames: [String] { headers.map(\.name) }

    public var bodyString: String { String(decoding: body, as: UTF8.self) }

    public var description: String {
        "\(method) \(uri) \(httpVersion) [conn \(connectionID)\(isTLS ? ", TLS" : "")] "
            + headers.map { "\($0.name): \($0.value)" }.joined(separator: " | ") + " body \(body.count) bytes"
    }
}

/// The body of an `/echo` response.
public struct EchoResponse: Codable, Sendable, Hashable {
    public var method: String
    public var uri: String
    public var httpVersion: String
    /// `[name, value]` pairs in wire order.
    public var headers: [[String]]
    /// The request body, decoded as UTF-8 (lossy).
    public var body: String
    public var bodyLength: Int

    public func header(_ name: String) -> String? {
        headers.first { $0.first?.lowercased() == name.lowercased() }?.last
    }
}

// MARK: - Implementation

/// The state every connection of one origin shares. Lock-protected (Mutex) and atomic.
final class OriginState: Sendable {
    let requests = Mutex<[RecordedRequest]>([])
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
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(
            withPipeliningAssistance: true,
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
final class OriginRequestHandler: ChannelInboundHandler {
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
        case .end:
            guard let head else { return }
            self.head = nil
            let request = RecordedRequest(
                method: head.method.rawValue,
                uri: head.uri,
                httpVersion: isHTTP2 ? "HTTP/2.0" : "HTTP/\(head.version.major).\(head.version.minor)",
                headers: head.headers.map { ($0.name, $0.value) },
                body: body,
                connectionID: connectionID,
                isTLS: isTLS
            )
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
