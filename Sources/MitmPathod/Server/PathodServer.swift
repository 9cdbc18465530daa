import Foundation
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL
import NIOTLS

/// How a ``PathodServer`` listens and what it may serve.
public struct PathodConfiguration: Sendable {
    public var host = "127.0.0.1"
    /// 0 picks a free port (see ``PathodServer/start()``).
    public var port = 9999
    /// The path prefix after which the rest of the path is a response spec.
    public var craftAnchor = "/p/"
    /// `-a regex=spec`: requests whose path matches a pattern (from its start) get that spec.
    public var anchors: [(pattern: String, spec: String)] = []
    /// `-d`: where `<path` values are read from; nil refuses file values.
    public var staticDirectory: String?
    /// The most bytes a response may take, injections included; larger ones get an 800 error.
    public var sizeLimit: UInt64?
    /// Refuse every spec from a URL (anchors still work).
    public var noCraft = false
    /// Refuse specs that pause.
    public var noHang = false
    /// Answer CONNECT with TLS (pathod's default); false serves the tunnel in plain text (`-C`).
    public var connectTLS = true
    /// Speak TLS on every connection from the first byte (`-s`). Such connections offer HTTP/2
    /// by ALPN (as pathod did), unless `http2` is false.
    public var ssl = false
    /// Offer HTTP/2 on `-s` connections.
    public var http2 = true
    /// The certificate for TLS; nil makes a self-signed one at start, for ``commonName``.
    public var certificate: PathodCertificate?
    /// Certificates for particular server names (`--cert domain=path`), chosen by SNI: the exact
    /// name first, then the most specific wildcard; ``certificate`` for the rest.
    public var domainCertificates: [PathodDomainCertificate] = []
    /// The common name of the self-signed certificate made at start (`--cn`).
    public var commonName = "pathod.net"
    /// Freeze each spec before serving it, so the log shows exactly what was sent.
    public var explain = false
    /// Close a connection idle for this long; nil waits for ever.
    public var timeout: Double?

    public init() {}
}

/// A pathological HTTP daemon: answers each request with the response its spec describes, down to
/// pauses, injected bytes and disconnects, and logs what it served.
///
/// Requests under ``PathodConfiguration/craftAnchor`` carry the spec in the path (`/p/200:b@100`);
/// anchors map paths to specs; a bad spec is answered with the non-standard code 800. Proxy
/// requests (absolute URLs) are served by their path, and CONNECT opens a tunnel (TLS by default)
/// in which the same applies. A valid websocket handshake switches the connection to frames.
public final class PathodServer: Sendable {
    public let configuration: PathodConfiguration
    private let anchors: Anchors
    private let tlsContext: NIOSSLContext
    /// For CONNECT tunnels: a context presenting each `--cert domain=` certificate by default, by pattern.
    private let tunnelContexts: [String: NIOSSLContext]
    private let sslContext: NIOSSLContext
    /// The certificate TLS connections get; trust it to talk to pathod over TLS.
    public let certificate: PathodCertificate
    private let logStore: PathodLogStore
    private let state = ServerState()

    /// Checks the configuration (anchors must parse) and prepares TLS; does not listen yet.
    /// - Parameter logSink: called with each log entry as it is made, on the connection's thread.
    public init(configuration: PathodConfiguration, logSink: (@Sendable (PathodLogEntry) -> Void)? = nil) throws {
        self.configuration = configuration
        var anchors: [(Regex<AnyRegexOutput>, String, ServerMessage)] = []
        for (pattern, spec) in configuration.anchors {
            let regex: Regex<AnyRegexOutput>
            do {
                regex = try Regex(pattern)
            } catch {
                throw PathodConfigurationError("invalid anchor pattern '\(pattern)': \(error)")
            }
            do {
                anchors.append((regex, pattern, try SpecParser.parseServerMessage(spec)))
            } catch {
                throw PathodConfigurationError("invalid spec for anchor '\(pattern)': \(error)\n\(error.marked)")
            }
        }
        self.anchors = Anchors(anchors.map { (regex: $0.0, message: $0.2) })
        self.certificate = try configuration.certificate ?? PathodCertificate.selfSigned(commonName: configuration.commonName)
        self.tlsContext = try certificate.serverContext(domainCertificates: configuration.domainCertificates)
        var tunnelContexts: [String: NIOSSLContext] = [:]
        for entry in configuration.domainCertificates where tunnelContexts[entry.pattern.lowercased()] == nil {
            tunnelContexts[entry.pattern.lowercased()] = try entry.certificate.serverContext(
                domainCertificates: configuration.domainCertificates
            )
        }
        self.tunnelContexts = tunnelContexts
        self.sslContext = try certificate.serverContext(
            protocols: configuration.http2 ? ["h2", "http/1.1"] : ["http/1.1"],
            domainCertificates: configuration.domainCertificates
        )
        self.logStore = PathodLogStore(sink: logSink)
    }

    /// What has been served, oldest first (the newest 500 entries).
    public var log: [PathodLogEntry] { logStore.all }

    public func clearLog() { logStore.clear() }

    /// Binds and starts accepting; returns the bound port.
    @discardableResult
    public func start() async throws -> Int {
        let tls = configuration.ssl ? sslContext : nil
        let serverChannel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: false)
            .bind(host: configuration.host, port: configuration.port) { channel -> EventLoopFuture<EventLoopFuture<Negotiated>> in
                guard let tls else {
                    return channel.eventLoop.makeCompletedFuture {
                        channel.eventLoop.makeSucceededFuture(.http1_1(try HTTP1Connection(wrappingChannelSynchronously: channel)))
                    }
                }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(self.sniRecorder(for: channel))
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
                }.flatMap {
                    channel.configureHTTP2AsyncSecureUpgrade(
                        http1ConnectionInitializer: { channel in
                            channel.eventLoop.makeCompletedFuture { try HTTP1Connection(wrappingChannelSynchronously: channel) }
                        },
                        http2ConnectionInitializer: { channel in
                            channel.configureAsyncHTTP2Pipeline(mode: .server) { stream in
                                stream.eventLoop.makeCompletedFuture {
                                    try stream.pipeline.syncOperations.addHandler(HTTP2FramePayloadToHTTP1ServerCodec())
                                    return try HTTP2Stream(wrappingChannelSynchronously: stream)
                                }
                            }
                        }
                    )
                }
            }
        let port = serverChannel.channel.localAddress?.port ?? configuration.port
        let task = Task<Void, Never>(executorPreference: PathodExecutor.shared) {
            try? await serverChannel.executeThenClose { inbound in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await negotiation in inbound {
                        group.addTask {
                            switch try? await negotiation.get() {
                            case .http1_1(let connection): await self.serve(connection)
                            case .http2(let multiplexer): await self.serveHTTP2(multiplexer)
                            case nil: break
                            }
                        }
                    }
                }
            }
        }
        state.started(serverChannel: serverChannel.channel, task: task, port: port)
        return port
    }

    /// The bound port, once started.
    public var port: Int? { state.port }

    /// Waits until the server stops (after ``shutdown()``).
    public func wait() async {
        await state.task?.value
    }

    /// Stops listening and closes every open connection.
    public func shutdown() async {
        guard let (channel, task) = state.stop() else { return }
        try? await channel.close()
        for connection in state.openConnections() { connection.close(promise: nil) }
        task.cancel()
        await task.value
    }

    // MARK: - Connections

    /// Peeks the ClientHello of a connection about to speak TLS and records its server name.
    private func sniRecorder(for channel: any Channel) -> ByteToMessageHandler<SNIHandler> {
        let state = self.state
        let key = ObjectIdentifier(channel)
        channel.closeFuture.whenComplete { _ in state.forgetSNI(for: key) }
        return ByteToMessageHandler(SNIHandler { result in
            if case .hostname(let name) = result { state.recordSNI(name, for: key) }
            return channel.eventLoop.makeSucceededVoidFuture()
        })
    }

    typealias HTTP1Connection = NIOAsyncChannel<ByteBuffer, ByteBuffer>
    typealias HTTP2Stream = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>
    typealias Negotiated = NIONegotiatedHTTPVersion<HTTP1Connection, NIOHTTP2Handler.AsyncStreamMultiplexer<HTTP2Stream>>

    private func serve(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>) async {
        let channel = connection.channel
        state.opened(channel)
        defer { state.closed(channel) }
        let remote = channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" }
        var idle: Task<Void, Never>?
        do {
            try await connection.executeThenClose { inbound, outbound in
                let reader = WireReader(inbound)
                var tls = configuration.ssl
                while true {
                    idle = armTimeout(channel)
                    guard let headBytes = try await reader.readHead() else { return }
                    idle?.cancel()
                    let head: HTTPHead
                    do {
                        head = try HTTPHead(parsing: headBytes)
                    } catch {
                        logStore.add { PathodLogEntry(id: $0, type: "error", message: "invalid request: \(error)") }
                        return
                    }
                    if head.isChunked {
                        _ = try await reader.readChunked(keep: 0)
                    } else if let length = head.contentLength {
                        _ = try await reader.read(count: length, keep: 0)
                    }
                    if head.first.uppercased() == "CONNECT" {
                        try await openTunnel(channel, to: head.second, tls: configuration.connectTLS)
                        tls = tls || configuration.connectTLS
                        continue
                    }
                    let info = PathodLogEntry.Request(
                        method: head.first, path: head.second, httpVersion: head.third,
                        headers: head.headers.map { [$0.name, $0.value] }, remoteAddress: remote, tls: tls,
                        sni: state.sni(for: ObjectIdentifier(channel))
                    )
                    let outcome = try await answer(head, info: info, outbound: outbound, channel: channel)
                    switch outcome {
                    case .keepAlive: continue
                    case .close: return
                    case .websocket: try await websocket(reader: reader, outbound: outbound, channel: channel)
                        return
                    }
                }
            }
        } catch {
            // The client went away, or spoke something we could not read: the connection is over.
        }
        idle?.cancel()
        if state.timedOut(channel) {
            logStore.add { PathodLogEntry(id: $0, type: "timeout", message: "no request within \(configuration.timeout ?? 0) s") }
        }
    }

    private func armTimeout(_ channel: any Channel) -> Task<Void, Never>? {
        guard let timeout = configuration.timeout else { return nil }
        return Task {
            guard (try? await Task.sleep(for: .seconds(timeout))) != nil else { return }
            state.markTimedOut(channel)
            channel.close(promise: nil)
        }
    }

    /// Answers a CONNECT with 200 and, with `tls`, puts TLS in front of the connection before the
    /// client can send its ClientHello: both happen in one event-loop turn. The certificate is the
    /// one for the CONNECT host (as pathod chose it), unless the client's SNI names another.
    private func openTunnel(_ channel: any Channel, to target: String, tls: Bool) async throws {
        let host = Self.host(ofAuthority: target)
        let context = PathodDomainCertificate.matchingPattern(host, in: configuration.domainCertificates)
            .flatMap { tunnelContexts[$0] } ?? tlsContext
        try await channel.eventLoop.submit {
            channel.writeAndFlush(ByteBuffer(string: "HTTP/1.1 200 Connection established\r\n\r\n"), promise: nil)
            if tls {
                try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context), position: .first)
                try channel.pipeline.syncOperations.addHandler(self.sniRecorder(for: channel), position: .first)
            }
        }.get()
    }

    private enum Outcome { case keepAlive, close, websocket }

    /// `example.com` from `example.com:443`, `::1` from `[::1]:443`.
    static func host(ofAuthority authority: String) -> String {
        if authority.hasPrefix("["), let close = authority.firstIndex(of: "]") {
            return String(authority[authority.index(after: authority.startIndex)..<close])
        }
        guard let colon = authority.lastIndex(of: ":") else { return authority }
        return String(authority[..<colon])
    }

    /// The path part of a request target; absolute URLs (proxy requests) lose scheme and authority.
    static func path(ofTarget target: String) -> String {
        guard let schemeEnd = target.range(of: "://"), !target.hasPrefix("/") else { return target }
        let rest = target[schemeEnd.upperBound...]
        guard let slash = rest.firstIndex(of: "/") else { return "/" }
        return String(rest[slash...])
    }

    private func answer(
        _ head: HTTPHead, info: PathodLogEntry.Request, outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>,
        channel: any Channel
    ) async throws -> Outcome {
        let path = Self.path(ofTarget: head.second)
        let websocketKey = head.header("sec-websocket-key")
        let isHandshake = head.header("upgrade")?.lowercased() == "websocket" && websocketKey != nil
            && (head.header("connection")?.lowercased().contains("upgrade") ?? false)
        var message: ServerMessage? = isHandshake ? .response(ResponseSpec(isWebSocket: true, code: nil)) : nil
        var failure: (reason: String, body: String)?

        if let anchored = anchors.message(for: path) {
            message = anchored
        } else if path.hasPrefix(configuration.craftAnchor) {
            let spec = String(path.dropFirst(configuration.craftAnchor.count)).removingPercentEncoding
                ?? String(path.dropFirst(configuration.craftAnchor.count))
            if configuration.noCraft {
                failure = ("Crafting disabled.", "Crafting disabled.")
            } else if !spec.isEmpty {
                do {
                    message = try SpecParser.parseServerMessage(spec)
                } catch {
                    failure = ("Parse Error", "Error parsing response spec: \(error)\n\(error.marked)\n")
                }
            }
        } else if let api = apiResponse(path) {
            try await outbound.write(ByteBuffer(bytes: api))
            return .keepAlive
        }
        if message == nil && failure == nil { failure = ("Not found", "No valid craft request found") }

        var settings = RenderSettings(staticDirectory: configuration.staticDirectory)
        settings.websocketKey = websocketKey
        if let message, failure == nil {
            do {
                let resolved = try Resolver.resolve(message, settings: settings, freezing: configuration.explain)
                let rendered = try Self.render(resolved, settings: settings)
                if let limit = configuration.sizeLimit, rendered.maximumLength > limit {
                    failure = ("Response too large.", "Response too large.")
                } else if configuration.noHang, rendered.actions.contains(where: { if case .pause = $0.action { true } else { false } }) {
                    failure = ("Pauses have been disabled.", "Pauses have been disabled.")
                } else {
                    let result = try await send(rendered, outbound: outbound, channel: channel)
                    logStore.add { id in
                        PathodLogEntry(id: id, type: "crafted", request: info, response: Self.describe(resolved, result: result))
                    }
                    if result.disconnected { return .close }
                    if isHandshake, case .response(let r) = resolved, r.isWebSocket || r.code == 101 { return .websocket }
                    return .keepAlive
                }
            } catch let error as RenderError {
                failure = (
                    error.isFileAccess ? "File access denied." : "Render Error",
                    "Error rendering response spec: \(error)"
                )
            }
        }
        let (reason, body) = failure ?? ("Error", "unknown error")
        let errorResponse = Self.errorResponse(reason: reason, body: body)
        let rendered = try Self.render(.response(errorResponse), settings: settings)
        let result = try await send(rendered, outbound: outbound, channel: channel)
        logStore.add { id in
            var entry = PathodLogEntry(id: id, type: "error", request: info, response: Self.describe(.response(errorResponse), result: result))
            entry.message = body
            return entry
        }
        return .keepAlive
    }

    /// pathod's internal error response: code 800, the reason, and the message as a text body.
    static func errorResponse(reason: String, body: String) -> ResponseSpec {
        let bodyBytes = Array(("pathod error: " + body).utf8)
        return ResponseSpec(code: 800, features: [
            .header(.literal(Array("Content-Type".utf8)), .literal(Array("text/plain".utf8))),
            .reason(.literal(Array(reason.utf8))),
            .body(.literal(bodyBytes)),
            .header(.literal(Array("Content-Length".utf8)), .literal(Array(String(bodyBytes.count).utf8))),
        ])
    }

    static func render(_ message: ServerMessage, settings: RenderSettings) throws -> RenderedMessage {
        switch message {
        case .response(let r): return try Renderer.layout(.response(r), settings: settings)
        case .frame(let f): return try Renderer.layout(.frame(f), settings: settings)
        }
    }

    struct SendResult {
        var disconnected: Bool
        var bytes: UInt64
        var duration: Double
    }

    /// Streams a rendered message: writes each block (waiting while the peer is slow), sleeps
    /// through pauses, and stops at a disconnect or when the peer goes away.
    func send(_ rendered: RenderedMessage, outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>, channel: any Channel) async throws
        -> SendResult
    {
        let started = Date()
        var stream = rendered.makeStream()
        var written: UInt64 = 0
        do {
            while let event = try stream.next() {
                switch event {
                case .data(let bytes):
                    try await outbound.write(ByteBuffer(bytes: bytes))
                    written += UInt64(bytes.count)
                    // A fast reader never makes the write wait: let other connections run between blocks.
                    await Task.yield()
                case .pause(.seconds(let seconds)):
                    try await Task.sleep(for: .seconds(Double(seconds)))
                case .pause(.forever):
                    while channel.isActive { try await Task.sleep(for: .milliseconds(200)) }
                    return SendResult(disconnected: true, bytes: written, duration: Date().timeIntervalSince(started))
                case .disconnect:
                    return SendResult(disconnected: true, bytes: written, duration: Date().timeIntervalSince(started))
                }
            }
        } catch is CancellationError {
            throw CancellationError()
        } catch let error as RenderError {
            throw error
        } catch {
            return SendResult(disconnected: true, bytes: written, duration: Date().timeIntervalSince(started))
        }
        return SendResult(disconnected: false, bytes: written, duration: Date().timeIntervalSince(started))
    }

    static func describe(_ message: ServerMessage, result: SendResult) -> PathodLogEntry.Response {
        var code: UInt64?
        var reason: String?
        var body: String?
        switch message {
        case .response(let r):
            code = r.code ?? 101
            reason = StatusReasons.reason(for: code!)
            for feature in r.features {
                if case .reason(let v) = feature { reason = v.literalBytes.map { String(decoding: $0, as: UTF8.self) } ?? v.spec }
                if case .body(let v) = feature { body = v.literalBytes.map { escapedForDisplay($0) } ?? v.spec }
            }
        case .frame(let f):
            for feature in f.features {
                if case .body(let v) = feature { body = v.literalBytes.map { escapedForDisplay($0) } ?? v.spec }
            }
        }
        return PathodLogEntry.Response(
            spec: message.spec, statusCode: code, reason: reason, body: body, disconnect: result.disconnected,
            bytesWritten: result.bytes, duration: result.duration
        )
    }

    /// `/api/log`, `/api/clear_log` and `/api/info`, as pathod's web app offered them.
    private func apiResponse(_ path: String) -> [UInt8]? {
        let body: [UInt8]
        switch path {
        case "/api/log":
            struct Log: Encodable { var log: [PathodLogEntry] }
            body = Array((try? JSONEncoder().encode(Log(log: log.reversed()))) ?? Data("{}".utf8))
        case "/api/clear_log":
            clearLog()
            body = Array("OK".utf8)
        case "/api/info":
            body = Array("{\"version\": \"swift-pathod\"}".utf8)
        default:
            return nil
        }
        let type = path == "/api/clear_log" ? "text/plain" : "application/json"
        return Array("HTTP/1.1 200 OK\r\nContent-Type: \(type)\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body
    }

    // MARK: - HTTP/2

    /// An HTTP/2 connection (negotiated by ALPN on `-s` connections): each stream gets the spec its
    /// path names. HTTP/2 carries no reason phrase and frames its own bytes, so reasons, raw flags
    /// and the HTTP/1-only actions (d, i, p) are not applied; status, headers and body are.
    private func serveHTTP2(_ multiplexer: NIOHTTP2Handler.AsyncStreamMultiplexer<HTTP2Stream>) async {
        try? await withThrowingDiscardingTaskGroup { group in
            for try await stream in multiplexer.inbound {
                group.addTask { try? await self.serveHTTP2Stream(stream) }
            }
        }
    }

    private func serveHTTP2Stream(_ stream: HTTP2Stream) async throws {
        let parent = stream.channel.parent
        let remote = parent?.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" }
        let sni = parent.flatMap { state.sni(for: ObjectIdentifier($0)) }
        try await stream.executeThenClose { inbound, outbound in
            var requestHead: HTTPRequestHead?
            for try await part in inbound {
                if case .head(let head) = part { requestHead = head }
                if case .end = part { break }
            }
            guard let requestHead else { return }
            let info = PathodLogEntry.Request(
                method: requestHead.method.rawValue, path: requestHead.uri, httpVersion: "HTTP/2",
                headers: requestHead.headers.map { [$0.name, $0.value] }, remoteAddress: remote, tls: true, sni: sni
            )
            let path = requestHead.uri
            var message: ResponseSpec?
            var failure: (reason: String, body: String)?
            if let anchored = anchors.message(for: path) {
                if case .response(let r) = anchored { message = r } else { failure = ("Spec Error", "HTTP/2 serves responses, not frames") }
            } else if path.hasPrefix(configuration.craftAnchor), !configuration.noCraft {
                let spec = String(path.dropFirst(configuration.craftAnchor.count))
                let decoded = spec.removingPercentEncoding ?? spec
                do throws(SpecParseError) {
                    switch try SpecParser.parseServerMessage(decoded) {
                    case .response(let r): message = r
                    case .frame: failure = ("Spec Error", "HTTP/2 serves responses, not frames")
                    }
                } catch {
                    failure = ("Parse Error", "Error parsing response spec: \(error)\n\(error.marked)\n")
                }
            } else {
                failure = ("Not found", "No valid craft request found")
            }
            let settings = RenderSettings(staticDirectory: configuration.staticDirectory)
            var resolved = Self.errorResponse(reason: failure?.reason ?? "", body: failure?.body ?? "")
            if let message, failure == nil {
                do {
                    resolved = try Resolver.resolve(message, settings: settings, freezing: configuration.explain)
                    if let limit = configuration.sizeLimit, try Renderer.layout(.response(resolved), settings: settings).maximumLength > limit {
                        failure = ("Response too large.", "Response too large.")
                    }
                } catch {
                    failure = ("Render Error", "Error rendering response spec: \(error)")
                }
                if let failure { resolved = Self.errorResponse(reason: failure.reason, body: failure.body) }
            }
            let started = Date()
            var headers = HTTPHeaders()
            var body: (any ByteSource)?
            for feature in resolved.features {
                if let header = Header(feature) {
                    let name = String(decoding: try header.name.source(settings: settings).readAll(), as: UTF8.self).lowercased()
                    let value = String(decoding: try header.valueSource(settings: settings).readAll(), as: UTF8.self)
                    // Connection-specific fields are not allowed in HTTP/2 (RFC 9113 §8.2.2).
                    if ["connection", "transfer-encoding", "keep-alive", "upgrade", "proxy-connection"].contains(name) { continue }
                    headers.add(name: name, value: value)
                }
                if case .body(let value) = feature { body = try value.source(settings: settings) }
            }
            let code = Int(min(resolved.code ?? 200, 999))
            try await outbound.write(.head(HTTPResponseHead(version: .http2, status: .init(statusCode: code), headers: headers)))
            var written: UInt64 = 0
            if let body {
                while written < body.length {
                    let block = try body.read(offset: written, count: Renderer.blockSize)
                    if block.isEmpty { break }
                    try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: block))))
                    written += UInt64(block.count)
                }
            }
            try await outbound.write(.end(nil))
            let result = SendResult(disconnected: false, bytes: written, duration: Date().timeIntervalSince(started))
            logStore.add { id in
                var entry = PathodLogEntry(
                    id: id, type: failure == nil ? "crafted" : "error", request: info,
                    response: Self.describe(.response(resolved), result: result)
                )
                entry.message = failure?.body
                return entry
            }
        }
    }

    // MARK: - Websockets

    /// After a websocket handshake: log each frame received; a payload starting `pathod!` holds
    /// frame specs, which are served back. A close frame is answered with a close, and ends it.
    private func websocket(reader: WireReader, outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>, channel: any Channel) async throws {
        let settings = RenderSettings(staticDirectory: configuration.staticDirectory)
        while let frame = try await reader.readFrame(keep: 1 << 20) {
            logStore.add { id in
                PathodLogEntry(
                    id: id, type: "frame",
                    frame: .init(opcode: frame.opcode, fin: frame.fin, masked: frame.masked, length: frame.length,
                                 payload: escapedForDisplay(frame.payload))
                )
            }
            if frame.opcode == 8 {
                let close = try Renderer.layout(.frame(FrameSpec(features: [.opcode(.named("close"))])), settings: settings)
                _ = try await send(close, outbound: outbound, channel: channel)
                return
            }
            guard frame.payload.starts(with: Renderer.nestedFrameLeader) else { continue }
            let text = String(decoding: frame.payload.dropFirst(Renderer.nestedFrameLeader.count), as: UTF8.self)
            let specs: [FrameSpec]
            do {
                specs = try SpecParser.parseFrames(text)
            } catch {
                logStore.add { PathodLogEntry(id: $0, type: "error", message: "Parse error in nested frame: \(error)") }
                continue
            }
            for spec in specs {
                var once = spec
                once.features.removeAll { if case .times = $0 { true } else { false } }
                for _ in 0..<(spec.times ?? 1) {
                    let resolved = try Resolver.resolve(once, settings: settings)
                    let result = try await send(try Renderer.layout(.frame(resolved), settings: settings), outbound: outbound, channel: channel)
                    logStore.add { id in
                        PathodLogEntry(id: id, type: "crafted", response: Self.describe(.frame(resolved), result: result))
                    }
                    if result.disconnected { return }
                }
            }
        }
    }
}

extension RenderError {
    var isFileAccess: Bool { if case .fileAccessDenied = self { true } else { false } }
}

/// The anchors' patterns and specs. `Regex` is not `Sendable`, so matching takes a lock.
private final class Anchors: @unchecked Sendable {
    private let lock = NSLock()
    private let list: [(regex: Regex<AnyRegexOutput>, message: ServerMessage)]

    init(_ list: [(regex: Regex<AnyRegexOutput>, message: ServerMessage)]) { self.list = list }

    /// The spec of the first anchor matching the path from its start.
    func message(for path: String) -> ServerMessage? {
        lock.withLock { list.first { (try? $0.regex.prefixMatch(in: path)) != nil }?.message }
    }
}

/// The mutable state of a server: its listener and open connections. Guarded by a lock because
/// connection tasks run on any thread.
private final class ServerState: @unchecked Sendable {
    private let lock = NSLock()
    private var serverChannel: (any Channel)?
    private var acceptTask: Task<Void, Never>?
    private var boundPort: Int?
    private var connections: [ObjectIdentifier: any Channel] = [:]
    private var timedOutConnections: Set<ObjectIdentifier> = []
    private var serverNames: [ObjectIdentifier: String] = [:]

    func started(serverChannel: any Channel, task: Task<Void, Never>, port: Int) {
        lock.withLock {
            self.serverChannel = serverChannel
            self.acceptTask = task
            self.boundPort = port
        }
    }

    var port: Int? { lock.withLock { boundPort } }
    var task: Task<Void, Never>? { lock.withLock { acceptTask } }

    func stop() -> (any Channel, Task<Void, Never>)? {
        lock.withLock {
            guard let channel = serverChannel, let task = acceptTask else { return nil }
            serverChannel = nil
            return (channel, task)
        }
    }

    func opened(_ channel: any Channel) { lock.withLock { connections[ObjectIdentifier(channel)] = channel } }
    func closed(_ channel: any Channel) {
        lock.withLock {
            connections[ObjectIdentifier(channel)] = nil
            timedOutConnections.remove(ObjectIdentifier(channel))
            serverNames[ObjectIdentifier(channel)] = nil
        }
    }
    func recordSNI(_ name: String, for key: ObjectIdentifier) { lock.withLock { serverNames[key] = name } }
    func sni(for key: ObjectIdentifier) -> String? { lock.withLock { serverNames[key] } }
    func forgetSNI(for key: ObjectIdentifier) { _ = lock.withLock { serverNames.removeValue(forKey: key) } }
    func openConnections() -> [any Channel] { lock.withLock { Array(connections.values) } }
    func markTimedOut(_ channel: any Channel) { _ = lock.withLock { timedOutConnections.insert(ObjectIdentifier(channel)) } }
    func timedOut(_ channel: any Channel) -> Bool { lock.withLock { timedOutConnections.contains(ObjectIdentifier(channel)) } }
}
