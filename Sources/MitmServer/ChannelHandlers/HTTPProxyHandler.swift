import Foundation
import MitmCore
import NIOCore
import NIOHTTP1

/// The client side of HTTP: the last handler of a client's HTTP/1 pipeline, or of one HTTP/2 stream
/// channel (behind NIO's HTTP/2 ⇄ HTTP/1 codec). It turns what the client sends into flows, runs
/// each flow's `HTTPStreamStateMachine`, and carries out the machine's actions: hooks, the server
/// exchange, and the response. Decisions live in the state machine; this class only does I/O.
final class HTTPProxyHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = Never
    typealias OutboundOut = HTTPServerResponsePart

    private let connection: ClientConnectionContext
    private let isHTTP2: Bool
    private let headTimer: RequestHeadTimer?
    private var context: ChannelHandlerContext?

    /// The exchange in progress.
    private var stream: HTTPStreamStateMachine?
    private var requestHead: HTTPRequestHead?
    private var upstream: (connection: UpstreamConnection, handler: UpstreamStreamHandler)?
    /// Request parts produced while the server connection is being opened.
    private var pendingUpstreamParts: [HTTPClientRequestPart] = []
    private var isConnecting = false
    /// Request parts of a pipelined next request, replayed when the current exchange is done.
    private var queuedParts: [HTTPServerRequestPart] = []
    /// Whether the client connection must close once the current response is out.
    private var closeAfterResponse = false
    /// A CONNECT request that is waiting for its end before the tunnel opens.
    private var pendingConnect: HTTPRequest?
    /// An accepted `Upgrade: h2c` offer, as the stream-1 HEADERS frame, waiting for the request's end.
    private var pendingH2CUpgrade: [UInt8]?
    /// Set once the client connection is gone.
    private var isClosed = false
    /// Whether this handler counts a flow in `services.openFlows`.
    private var countsOpenFlow = false

    private var readGate = ReadGate()

    /// On an HTTP/2 stream: what the request's HEADERS had as `:protocol` (RFC 8441).
    private let extendedConnect: ExtendedConnectRecorder?
    /// Whether this stream's request is an RFC 8441 WebSocket (extended CONNECT, `:protocol websocket`).
    private var isExtendedWebSocket = false
    /// The `Sec-WebSocket-Key` of the HTTP/1.1 upgrade we made of the extended CONNECT.
    private var sentWebSocketKey: String?
    /// DATA the client sent on an extended CONNECT stream before it was answered (WebSocket bytes).
    private var earlyStreamBytes: [ByteBuffer] = []
    /// Whether the client ended its side of an extended CONNECT stream before it was answered.
    private var clientEndedStream = false

    init(
        connection: ClientConnectionContext,
        isHTTP2: Bool,
        headTimer: RequestHeadTimer?,
        extendedConnect: ExtendedConnectRecorder? = nil
    ) {
        self.connection = connection
        self.isHTTP2 = isHTTP2
        self.headTimer = headTimer
        self.extendedConnect = extendedConnect
    }

    private var services: ProxyServices { connection.services }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        flowEnded()
    }

    private func flowStarted() {
        guard !countsOpenFlow else { return }
        countsOpenFlow = true
        services.openFlows.add(1, ordering: .relaxed)
    }

    private func flowEnded() {
        guard countsOpenFlow else { return }
        countsOpenFlow = false
        services.openFlows.subtract(1, ordering: .relaxed)
    }

    // MARK: - Inbound from the client

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if isExtendedWebSocket {
            // The request ended with its HEADERS; what follows on the stream is the WebSocket's,
            // kept for the frame decoder until the switch (a client should wait for the 200, but
            // RFC 8441 does not forbid sending early).
            switch part {
            case .head: break
            case .body(let buffer): earlyStreamBytes.append(buffer)
            case .end: clientEndedStream = true
            }
            return
        }
        if stream != nil || pendingConnect != nil {
            if case .head = part, !(stream?.isDone ?? false) || pendingConnect != nil {
                queuedParts.append(part)
                return
            }
            if !queuedParts.isEmpty {
                queuedParts.append(part)
                return
            }
        }
        handle(part)
    }

    private func handle(_ part: HTTPServerRequestPart) {
        switch part {
        case .head(let head):
            headTimer?.headReceived()
            begin(head)
            if isExtendedWebSocket, stream != nil {
                // An extended CONNECT has no request body: its END_STREAM never comes, the stream's
                // DATA are the WebSocket's. The request is complete with its HEADERS.
                run(stream!.requestEndReceived(trailers: nil))
            }
        case .body(let buffer):
            guard pendingConnect == nil, stream != nil else { return }
            run(stream!.requestBodyReceived(buffer))
        case .end(let trailers):
            if let frame = pendingH2CUpgrade {
                pendingH2CUpgrade = nil
                upgradeToH2C(headersFrame: frame)
                return
            }
            if let connect = pendingConnect {
                connectThenOpenTunnel(connect)
                return
            }
            guard stream != nil else { return }
            run(stream!.requestEndReceived(trailers: trailers.map(Headers.init)))
        }
    }

    private func begin(_ head: HTTPRequestHead) {
        requestHead = head
        flowStarted()
        if !isHTTP2 && !head.isKeepAlive {
            closeAfterResponse = true
        }
        if !isHTTP2 && head.headers.contains(name: "upgrade") && head.headers.hasToken("upgrade", in: "connection") {
            // NIO's decoder parses nothing after an upgrade request: unless the upgrade happens, the
            // connection cannot carry another request.
            closeAfterResponse = true
        }
        var parsedHead = head
        var extendedProtocol: String?
        if isHTTP2, head.method == .CONNECT, let name = extendedConnect?.protocolName {
            guard name.lowercased() == "websocket" else {
                failBeforeFlow(head, message: "Extended CONNECT for protocol '\(name)' is not supported (only websocket).", status: 501)
                return
            }
            // RFC 8441 §4: `:path` and `:scheme` are those of an ordinary request, so the target is
            // parsed as one; the flow's request stays CONNECT.
            extendedProtocol = name
            parsedHead.method = .GET
        }
        var request: HTTPRequest
        do {
            request = try connection.makeRequest(parsedHead, isHTTP2: isHTTP2)
            if extendedProtocol != nil { request.method = "CONNECT" }
        } catch {
            services.logger.info("\(error.message)", metadata: ["client": "\(connection.client.peername)"])
            var flow = HTTPFlow(request: placeholderRequest(head), clientConnection: connection.client, isLive: true)
            flow.request.timestampEnd = now()
            closeAfterResponse = true
            stream = HTTPStreamStateMachine(flow: flow, limits: limits)
            run(stream!.fail(error.message, status: 400))
            return
        }
        var flow = HTTPFlow(request: request, clientConnection: connection.client, isLive: true)
        if let extendedProtocol {
            flow.metadata[HTTPFlow.extendedConnectProtocolKey] = extendedProtocol
        }
        if let authenticator = services.authenticator, !connection.isAuthenticated {
            // mitmproxy's proxyauth: a client connection that presented valid credentials once is
            // trusted for its lifetime; the credentials never reach the server.
            let scheme = ProxyAuthHeaders.Scheme.forMode(actsAsProxy: connection.mode.acceptsCONNECT)
            if let value = request.headers[scheme.requestHeader],
                let credentials = ProxyAuthHeaders.parseBasic(value),
                authenticator.verify(username: credentials.username, password: credentials.password)
            {
                connection.isAuthenticated = true
                flow.request.headers.remove(scheme.requestHeader)
                flow.metadata["proxyauth"] = credentials.username
            } else {
                // Answered like an addon's response, so the flow is shown and saved as mitmproxy does.
                flow.response = HTTPResponse.makeAuthenticationRequired(scheme)
                stream = HTTPStreamStateMachine(flow: flow, limits: limits)
                run(stream!.start())
                return
            }
        }
        if !isHTTP2, services.options.http2, connection.originalServerAddress != nil, H2CUpgrade.canAccept(head),
            let frame = H2CUpgrade.headersFrame(for: head)
        {
            // Origin-form requests only (reverse mode, tunnels, transparent): the request is
            // served again on stream 1 once the connection speaks HTTP/2.
            pendingH2CUpgrade = frame
            return
        }
        if request.method == "CONNECT", connection.mode.acceptsCONNECT, connection.tunnelTarget == nil, !isHTTP2 {
            pendingConnect = flow.request
            return
        }
        isExtendedWebSocket = flow.isExtendedWebSocketConnect
        stream = HTTPStreamStateMachine(flow: flow, limits: limits)
        run(stream!.start())
    }

    /// A request we cannot make a flow of as it stands: recorded as a failed flow and answered `status`.
    private func failBeforeFlow(_ head: HTTPRequestHead, message: String, status: Int) {
        services.logger.info("\(message)", metadata: ["client": "\(connection.client.peername)"])
        var flow = HTTPFlow(request: placeholderRequest(head), clientConnection: connection.client, isLive: true)
        flow.request.timestampEnd = now()
        closeAfterResponse = true
        stream = HTTPStreamStateMachine(flow: flow, limits: limits)
        run(stream!.fail(message, status: status))
    }

    private var limits: HTTPStreamStateMachine.Limits {
        .init(bodySizeLimit: services.options.bodySizeLimit, streamLargeBodies: services.options.streamLargeBodies)
    }

    private func placeholderRequest(_ head: HTTPRequestHead) -> HTTPRequest {
        let host = connection.originalServerAddress ?? connection.client.sockname
        return HTTPRequest(
            method: head.method.rawValue,
            scheme: connection.client.tls != nil ? "https" : "http",
            host: host.host,
            port: host.port,
            path: head.uri,
            httpVersion: head.version.mitmproxyString,
            headers: Headers(head.headers)
        )
    }

    // MARK: - Actions

    private func run(_ action: HTTPStreamStateMachine.Action) {
        guard let context else {
            if case .runHook(let hook) = action, let flow = stream?.flow {
                // The client is gone, but addons still hear how the flow ended.
                services.runHook(hook, on: flow, eventLoop: connection.eventLoop) { _ in }
            }
            return
        }
        switch action {
        case .wait:
            break
        case .runHook(let hook):
            let flow = stream!.flow
            services.runHook(hook, on: flow, eventLoop: context.eventLoop) { [self] edited in
                guard self.stream != nil else { return }
                let next = self.stream!.hookCompleted(edited)
                if case .wait = next, self.stream!.isDone, let context = self.context {
                    // The response hook of a streamed response ends the exchange.
                    self.finishExchange(context: context)
                } else {
                    self.run(next)
                }
            }
        case .sendContinue:
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: clientVersion, status: .continue))), promise: nil)
        case .sendRequest(let request, let body, let end):
            sendRequest(request, body: body, end: end)
        case .sendRequestBody(let buffer):
            sendUpstream(.body(.byteBuffer(buffer)), flush: true)
        case .sendRequestEnd(let trailers):
            sendUpstream(.end(trailers?.storage), flush: true)
        case .sendResponse(let response, let body, let end):
            sendResponse(response, body: body, end: end, context: context)
        case .sendResponseBody(let buffer):
            context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            if !context.channel.isWritable {
                upstream?.handler.setReadsPaused(true)
            }
        case .sendResponseEnd(let trailers):
            context.write(wrapOutboundOut(.end(trailers?.storage)), promise: nil)
            responseEndWritten(context: context)
        case .sendErrorResponse(let status, let message):
            sendErrorResponse(status: status, message: message, context: context)
        case .closeClient:
            dropUpstream()
            stream = nil
            flowEnded()
            context.close(promise: nil)
        }
    }

    private var clientVersion: HTTPVersion {
        if isHTTP2 { return .http1_1 }
        return requestHead?.version ?? .http1_1
    }

    // MARK: - Towards the server

    private func sendRequest(_ request: HTTPRequest, body: ByteBuffer?, end: Bool) {
        var request = request
        let isWebSocket = (request.isWebSocketUpgrade && !isHTTP2) || isExtendedWebSocket
        if isExtendedWebSocket {
            let key = WebSocketHandshake.makeKey()
            sentWebSocketKey = key
            request = Self.webSocketUpgrade(forExtendedConnect: request, key: key)
        }
        if isWebSocket {
            // We relay WebSocket frames as they are and do not implement permessage-deflate (RFC 7692),
            // which mitmproxy does: offering no extension keeps the server from compressing.
            request.headers.remove("sec-websocket-extensions")
        }
        let key = connection.serverKey(for: request)
        let bodyLength = end ? (body?.readableBytes ?? 0) : nil
        var parts: [HTTPClientRequestPart] = []
        if let body, body.readableBytes > 0 { parts.append(.body(.byteBuffer(body))) }
        if end { parts.append(.end(request.trailers?.storage)) }
        // Keep-alive fast path: an idle HTTP/1 connection to the same server takes the request now.
        if let (server, handler) = connection.idleHTTP1Stream(for: key) {
            startExchange(server: server, handler: handler, request: request, bodyLength: bodyLength, parts: parts)
            return
        }
        pendingUpstreamParts = parts
        isConnecting = true
        // A WebSocket upgrade needs HTTP/1.1 towards the server (there is no 101 on HTTP/2).
        let acquiring = isWebSocket ? connection.acquireHTTP1Stream(for: key) : connection.acquireStream(for: key, scheme: request.scheme)
        // Futures of this connection complete on its event loop, where this handler lives.
        acquiring.assumeIsolated().whenComplete { [self] result in
            isConnecting = false
            let parts = pendingUpstreamParts
            pendingUpstreamParts = []
            switch result {
            case .success(let (server, handler)):
                guard stream != nil, !isClosed else {
                    connection.release(server, reusable: false)
                    return
                }
                startExchange(server: server, handler: handler, request: request, bodyLength: bodyLength, parts: parts)
            case .failure(let error):
                let message = (error as? ServerConnector.Failure)?.description ?? describe(error)
                services.logger.info("\(message)", metadata: ["client": "\(connection.client.peername)"])
                guard stream != nil else { return }
                run(stream!.serverFailed(message))
            }
        }
    }

    /// Sends the request head, and whatever body the client has sent so far, on a server stream.
    private func startExchange(
        server: UpstreamConnection,
        handler: UpstreamStreamHandler,
        request: HTTPRequest,
        bodyLength: Int?,
        parts: [HTTPClientRequestPart]
    ) {
        upstream = (server, handler)
        stream!.attachServerConnection(server.server)
        let head = Self.serverRequestHead(request, bodyLength: bodyLength, on: server, options: services.options)
        handler.begin(head, delegate: self)
        for part in parts {
            handler.send(part, flush: false)
        }
        handler.flush()
    }

    private func sendUpstream(_ part: HTTPClientRequestPart, flush: Bool) {
        if isConnecting {
            pendingUpstreamParts.append(part)
            return
        }
        guard let upstream else { return }
        upstream.handler.send(part, flush: flush)
        if !upstream.handler.isWritable {
            setReadsPaused(true)
        }
    }

    /// The HTTP/1.1 upgrade (RFC 6455 §4.1) we send the server for an RFC 8441 extended CONNECT:
    /// servers speak WebSocket over HTTP/1.1 far more often than over HTTP/2, and the upgrade path
    /// towards servers is HTTP/1.1 only. The client's other headers (`Sec-WebSocket-Protocol`,
    /// `Origin`, cookies…) go along; the key is ours, since an RFC 8441 request carries none.
    static func webSocketUpgrade(forExtendedConnect request: HTTPRequest, key: String) -> HTTPRequest {
        var upgrade = request
        upgrade.method = "GET"
        upgrade.headers["upgrade"] = "websocket"
        upgrade.headers["connection"] = "Upgrade"
        upgrade.headers["sec-websocket-version"] = "13"
        upgrade.headers["sec-websocket-key"] = key
        return upgrade
    }

    /// The request head as the server should see it: origin-form target, the server's HTTP
    /// version, and framing headers that match the body we send.
    /// The request head for `server`: ``serverRequestHead(_:bodyLength:toHTTP2:)``, and for an HTTP
    /// upstream proxy, which takes the whole URL, the absolute form with our credentials for it.
    static func serverRequestHead(
        _ request: HTTPRequest, bodyLength: Int?, on server: UpstreamConnection, options: ProxyOptions
    ) -> HTTPRequestHead {
        var head = serverRequestHead(request, bodyLength: bodyLength, toHTTP2: server.isHTTP2)
        if server.usesAbsoluteForm {
            head.uri = request.url
            if let authorization = options.upstreamProxyAuthorization {
                head.headers.replaceOrAdd(name: "proxy-authorization", value: authorization)
            }
        }
        return head
    }

    static func serverRequestHead(_ request: HTTPRequest, bodyLength: Int?, toHTTP2: Bool) -> HTTPRequestHead {
        var headers = request.headers.storage
        let version: HTTPVersion = request.httpVersion == "HTTP/1.0" && !toHTTP2 ? .http1_0 : .http1_1
        declineH2CUpgrade(&headers)
        if toHTTP2 {
            if !headers.contains(name: "host") {
                headers.add(name: "host", value: request.hostHeaderValue)
            }
        } else if request.httpVersion == "HTTP/2.0", !headers.contains(name: "host") {
            headers.add(name: "host", value: request.hostHeaderValue)
        }
        if !toHTTP2 {
            fixFraming(&headers, bodyLength: bodyLength, chunkedAllowed: version == .http1_1)
        }
        let uri = request.method == "CONNECT" ? request.authority : request.path
        return HTTPRequestHead(version: version, method: HTTPMethod(rawValue: request.method), uri: uri, headers: headers)
    }

    /// An `Upgrade: h2c` offer we did not take up (an explicit proxy's absolute-form request, or a
    /// request with a body) is not passed on: the exchange stays HTTP/1.1 (RFC 7540 §3.2 lets a
    /// server ignore the offer), and the server must not switch protocols under a proxy that still
    /// parses HTTP/1. Where we take it up, see `upgradeToH2C`.
    static func declineH2CUpgrade(_ headers: inout HTTPHeaders) {
        guard headers.hasToken("h2c", in: "upgrade") else { return }
        let others = headers["upgrade"].flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { $0.lowercased() != "h2c" }
        headers.remove(name: "upgrade")
        headers.remove(name: "http2-settings")
        if !others.isEmpty { headers.add(name: "upgrade", value: others.joined(separator: ", ")) }
        let connection = headers["connection"].flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { token in
                let lower = token.lowercased()
                return lower != "http2-settings" && (lower != "upgrade" || !others.isEmpty)
            }
        headers.remove(name: "connection")
        if !connection.isEmpty { headers.add(name: "connection", value: connection.joined(separator: ", ")) }
    }

    /// Makes Content-Length / Transfer-Encoding agree with the body we are about to send: the exact
    /// length when the whole body is known, chunked (or, failing that, close-delimited) when it streams.
    /// Returns false when the message must be delimited by closing the connection.
    @discardableResult
    static func fixFraming(_ headers: inout HTTPHeaders, bodyLength: Int?, chunkedAllowed: Bool) -> Bool {
        let isChunked = headers.hasToken("chunked", in: "transfer-encoding")
        if let bodyLength {
            if isChunked { return true }
            if let declared = headers.first(name: "content-length") {
                if Int(declared) != bodyLength {
                    headers.replaceOrAdd(name: "content-length", value: String(bodyLength))
                }
            } else if bodyLength > 0 {
                headers.add(name: "content-length", value: String(bodyLength))
            }
            return true
        }
        if isChunked || headers.contains(name: "content-length") { return true }
        if chunkedAllowed {
            headers.add(name: "transfer-encoding", value: "chunked")
            return true
        }
        return false
    }

    // MARK: - Towards the client

    private func sendResponse(_ response: HTTPResponse, body: ByteBuffer?, end: Bool, context: ChannelHandlerContext) {
        if isExtendedWebSocket, let flow = stream?.flow, PipelineSetup.isWebSocketUpgrade(flow), let upstream {
            acceptExtendedConnect(response, flow: flow, upstream: upstream, context: context)
            return
        }
        let method = stream?.flow.request.method ?? "GET"
        var headers = response.headers.storage
        let noBody = HTTPResponse.hasNoBody(statusCode: response.statusCode, requestMethod: method)
        if !isHTTP2 {
            if !noBody {
                let delimited = Self.fixFraming(
                    &headers,
                    bodyLength: end ? (body?.readableBytes ?? 0) : nil,
                    chunkedAllowed: clientVersion == .http1_1
                )
                if !delimited { closeAfterResponse = true }
            }
            if headers.hasToken("close", in: "connection") {
                closeAfterResponse = true
            }
            if closeAfterResponse && clientVersion == .http1_1 && !headers.contains(name: "connection") {
                headers.add(name: "connection", value: "close")
            }
        }
        let head = HTTPResponseHead(
            version: clientVersion,
            // The server's own reason phrase, as mitmproxy forwards it (the `statusCode:reasonPhrase:`
            // initializer would replace it with the standard one for known codes); HTTP/2 has none.
            status: .custom(
                code: UInt(response.statusCode),
                reasonPhrase: response.reason.isEmpty
                    ? HTTPResponseStatus(statusCode: response.statusCode).reasonPhrase : response.reason
            ),
            headers: headers
        )
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if let body, body.readableBytes > 0, !noBody {
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        if end {
            context.write(wrapOutboundOut(.end(response.trailers?.storage)), promise: nil)
            responseEndWritten(context: context)
        } else {
            context.flush()
        }
    }

    /// The server took the upgrade: the client's stream gets `:status 200` without END_STREAM
    /// (RFC 8441 §5) and both sides switch to WebSocket framing. The flow keeps the server's 101 as
    /// its response (it is what the server answered, and what marks a WebSocket flow); the 200 is
    /// only its HTTP/2 form. Headers that describe the HTTP/1.1 upgrade itself stay behind.
    private func acceptExtendedConnect(
        _ response: HTTPResponse,
        flow: HTTPFlow,
        upstream: (connection: UpstreamConnection, handler: UpstreamStreamHandler),
        context: ChannelHandlerContext
    ) {
        var headers = response.headers.storage
        for name in ["connection", "upgrade", "sec-websocket-accept", "content-length", "transfer-encoding", "keep-alive"] {
            headers.remove(name: name)
        }
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        upstream.handler.delegate = nil
        self.upstream = nil
        stream = nil
        requestHead = nil
        let pending = earlyStreamBytes
        earlyStreamBytes = []
        PipelineSetup.switchHTTP2StreamToWebSocket(
            stream: context.channel,
            server: upstream.connection,
            flow: flow,
            connection: connection,
            pendingClientBytes: pending,
            clientEnded: clientEndedStream
        )
    }

    private func responseEndWritten(context: ChannelHandlerContext) {
        context.flush()
        if !isHTTP2, let upstream, !upstream.connection.isHTTP2, let flow = stream?.flow, PipelineSetup.isWebSocketUpgrade(flow) {
            // The 101 is out: both connections speak WebSocket from here on, and the flow goes on in
            // the relay. This handler leaves the pipeline.
            upstream.handler.delegate = nil
            self.upstream = nil
            stream = nil
            requestHead = nil
            PipelineSetup.switchToWebSocket(
                client: context.channel,
                server: upstream.connection,
                flow: flow,
                connection: connection
            )
            return
        }
        // The server exchange is over once the response is; a clean HTTP/1 connection is reused.
        if let upstream {
            let clean = !upstream.handler.isAwaitingResponse
            connection.release(upstream.connection, reusable: clean)
            if upstream.connection.isHTTP2 {
                upstream.handler.channel?.close(promise: nil)
            }
            self.upstream = nil
        }
        guard stream != nil else { return }
        let next = stream!.responseEndSent()
        if case .wait = next {
            finishExchange(context: context)
        } else {
            run(next)
        }
    }

    private func sendErrorResponse(status: Int, message: String, context: ChannelHandlerContext) {
        dropUpstream()
        if stream?.hasStartedResponse == true || isClosed {
            finishExchange(context: context)
            return
        }
        let response = HTTPResponse.makeError(status, message: message)
        if !isHTTP2 { closeAfterResponse = true }
        var headers = response.headers.storage
        if !isHTTP2 { headers.replaceOrAdd(name: "connection", value: "close") }
        let head = HTTPResponseHead(
            version: clientVersion,
            status: HTTPResponseStatus(statusCode: status, reasonPhrase: response.reason),
            headers: headers
        )
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if let body = response.rawContent {
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        finishExchange(context: context)
    }

    /// The exchange is over: close the connection if it must, else take the next request.
    private func finishExchange(context: ChannelHandlerContext) {
        stream = nil
        flowEnded()
        requestHead = nil
        if isExtendedWebSocket {
            // Refused (the server did not switch): the answer is out, and the client's side of the
            // stream, which it never ends on its own, is reset.
            context.close(promise: nil)
            return
        }
        if closeAfterResponse && !isHTTP2 {
            context.close(promise: nil)
            return
        }
        headTimer?.exchangeFinished()
        // Replay pipelined requests one exchange at a time: a second head waits again while the
        // first replayed exchange is in progress.
        var queued = queuedParts[...]
        queuedParts = []
        while let part = queued.first {
            if case .head = part, stream != nil || pendingConnect != nil {
                break
            }
            queued = queued.dropFirst()
            handle(part)
        }
        queuedParts = Array(queued) + queuedParts
    }

    private func dropUpstream() {
        if let upstream {
            upstream.handler.delegate = nil
            connection.release(upstream.connection, reusable: false)
            if upstream.connection.isHTTP2 {
                upstream.handler.channel?.close(promise: nil)
            }
            self.upstream = nil
        }
    }

    /// Answers outside any flow (a timed-out head) and closes.
    func writeBareResponse(status: Int, message: String) {
        guard let context, stream == nil else { return }
        services.logger.info("\(message)", metadata: ["client": "\(connection.client.peername)"])
        let response = HTTPResponse.makeError(status, message: message)
        var headers = response.headers.storage
        headers.replaceOrAdd(name: "connection", value: "close")
        let head = HTTPResponseHead(
            version: .http1_1,
            status: HTTPResponseStatus(statusCode: status, reasonPhrase: response.reason),
            headers: headers
        )
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if let body = response.rawContent {
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    // MARK: - h2c

    /// Answers `Upgrade: h2c` with 101 and hands the connection to HTTP/2; the flow moves to stream 1.
    private func upgradeToH2C(headersFrame: [UInt8]) {
        guard let context else { return }
        var headers = HTTPHeaders()
        headers.add(name: "connection", value: "Upgrade")
        headers.add(name: "upgrade", value: "h2c")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .switchingProtocols, headers: headers))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        closeAfterResponse = false
        requestHead = nil
        flowEnded()
        do {
            try PipelineSetup.switchToH2C(channel: context.channel, connection: connection, headersFrame: headersFrame)
        } catch {
            services.logger.error("could not switch to h2c: \(error)", metadata: ["client": "\(connection.client.peername)"])
            context.close(promise: nil)
        }
    }

    // MARK: - CONNECT

    /// mitmproxy's `eager` connection strategy: the server is connected before the CONNECT is
    /// answered, so a target that cannot be reached gets a 502 to the CONNECT itself (with a flow
    /// recording the error) rather than a 200 and a dead tunnel. The connection is kept for the
    /// tunnel's first use. In upstream mode the upstream proxy answers for the server instead;
    /// `connection_strategy=lazy` answers at once, and so does a CONNECT to the onboarding host,
    /// which the onboarding addon answers and which need not exist.
    private func connectThenOpenTunnel(_ request: HTTPRequest) {
        guard connection.upstreamProxy == nil, services.options.connectionStrategy == .eager,
            !services.options.isOnboardingTarget(host: request.host, port: request.port)
        else {
            pendingConnect = nil
            openTunnel(request)
            return
        }
        let target = Address(host: request.host, port: request.port)
        connection.preconnect(to: target).assumeIsolated().whenComplete { [self] result in
            pendingConnect = nil
            guard !isClosed else { return }
            switch result {
            case .success:
                openTunnel(request)
            case .failure(let error):
                let message = "Error connecting to \(target): \(describe(error))"
                services.logger.info("\(message)", metadata: ["client": "\(connection.client.peername)"])
                var flow = HTTPFlow(request: request, clientConnection: connection.client, isLive: true)
                flow.request.timestampEnd = now()
                stream = HTTPStreamStateMachine(flow: flow, limits: limits)
                run(stream!.fail(message, status: 502))
            }
        }
    }

    private func openTunnel(_ request: HTTPRequest) {
        guard let context else { return }
        let target = Address(host: request.host, port: request.port)
        let head = HTTPResponseHead(
            version: clientVersion,
            // `.custom`: `HTTPResponseStatus(statusCode:reasonPhrase:)` ignores the phrase for known codes.
            status: .custom(code: 200, reasonPhrase: "Connection established")
        )
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        connection.tunnelTarget = target
        headTimer?.exchangeFinished()
        do {
            try PipelineSetup.switchToTunnel(pipeline: context.pipeline, connection: connection)
        } catch {
            services.logger.error(
                "could not open tunnel to \(target): \(error)",
                metadata: ["client": "\(connection.client.peername)"]
            )
            context.close(promise: nil)
        }
    }

    // MARK: - Backpressure

    func read(context: ChannelHandlerContext) {
        if readGate.admitRead() { context.read() }
    }

    private func setReadsPaused(_ paused: Bool) {
        if readGate.setPaused(paused) { context?.read() }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        upstream?.handler.setReadsPaused(!context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    // MARK: - Closing and errors

    func channelInactive(context: ChannelHandlerContext) {
        isClosed = true
        if stream != nil {
            run(stream!.clientClosed())
        }
        dropUpstream()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Bytes that arrive after a parse error (the rest of an oversized head) must not close the connection before the 4xx is out.
        if case ByteToMessageDecoderError.dataReceivedInErrorState = error, stream != nil { return }
        if let parserError = error as? HTTPParserError, !isHTTP2 {
            // A malformed request: answer it with a readable reason, record it as a failed flow.
            let (status, reason) = Self.describeParserError(parserError, limit: services.options.headerSizeLimit)
            services.logger.info(
                "HTTP protocol error in client request: \(reason)",
                metadata: ["client": "\(connection.client.peername)"]
            )
            if stream == nil {
                let head = requestHead ?? HTTPRequestHead(version: .http1_1, method: .init(rawValue: ""), uri: "")
                var flow = HTTPFlow(request: placeholderRequest(head), clientConnection: connection.client, isLive: true)
                flow.request.timestampEnd = now()
                closeAfterResponse = true
                stream = HTTPStreamStateMachine(flow: flow, limits: limits)
                run(stream!.fail(reason, status: status))
            } else {
                closeAfterResponse = true
                run(stream!.fail(reason, status: status))
            }
            return
        }
        context.close(promise: nil)
    }

    static func describeParserError(_ error: HTTPParserError, limit: Int) -> (Int, String) {
        switch error {
        case .headerOverflow:
            return (431, "Request header too large: the request head exceeds the limit of \(limit) bytes (header_size_limit).")
        case .invalidMethod:
            return (400, "Bad request: invalid HTTP method.")
        case .invalidURL:
            return (400, "Bad request: invalid request target.")
        case .invalidHeaderToken:
            return (400, "Bad request: invalid character in a header name.")
        case .invalidVersion:
            return (400, "Bad request: invalid HTTP version.")
        case .invalidContentLength, .unexpectedContentLength:
            return (400, "Bad request: invalid Content-Length.")
        case .invalidChunkSize:
            return (400, "Bad request: invalid chunk size in chunked body.")
        default:
            return (400, "Bad request: malformed HTTP request (\(error)).")
        }
    }
}

// MARK: - Server responses

extension HTTPProxyHandler: UpstreamExchangeDelegate {
    func upstreamResponseHead(_ head: HTTPResponseHead) {
        guard stream != nil else { return }
        if isExtendedWebSocket, head.status == .switchingProtocols, let key = sentWebSocketKey,
            head.headers.first(name: "sec-websocket-accept") != WebSocketHandshake.accept(forKey: key)
        {
            // RFC 6455 §4.1: a client must fail the connection; we are the client of this upgrade.
            dropUpstream()
            run(stream!.serverFailed("WebSocket handshake failed: the server's Sec-WebSocket-Accept does not match the key we sent"))
            return
        }
        if isExtendedWebSocket, (200..<300).contains(Int(head.status.code)) {
            // On HTTP/2 a 2xx is what accepts an extended CONNECT (RFC 8441 §5): forwarding a
            // server's plain 200 would tell the client a WebSocket is open when the server never
            // switched. Other answers (403, 404, …) are forwarded as they are.
            dropUpstream()
            run(stream!.serverFailed("The server did not switch to WebSocket: it answered the upgrade with \(head.status.code) instead of 101"))
            return
        }
        let response = HTTPResponse(receivedHead: head, overHTTP2: upstream?.connection.isHTTP2 == true)
        run(stream!.responseHeadReceived(response))
    }

    func upstreamResponseBody(_ buffer: ByteBuffer) {
        guard stream != nil else { return }
        run(stream!.responseBodyReceived(buffer))
    }

    func upstreamResponseEnd(_ trailers: HTTPHeaders?) {
        guard stream != nil else { return }
        run(stream!.responseEndReceived(trailers: trailers.map(Headers.init)))
    }

    func upstreamFailed(_ message: String) {
        upstream = nil
        guard stream != nil else { return }
        run(stream!.serverFailed(message))
    }

    func upstreamWritabilityChanged(isWritable: Bool) {
        setReadsPaused(!isWritable)
    }
}

extension HTTPResponse {
    /// 407 (or 401 in reverse mode) with the Basic challenge, as mitmproxy's proxyauth answers.
    static func makeAuthenticationRequired(_ scheme: ProxyAuthHeaders.Scheme) -> HTTPResponse {
        var response = makeError(scheme.status, message: "Proxy Authentication Required")
        response.headers[scheme.challengeHeader] = ProxyAuthHeaders.challenge
        return response
    }

    /// The response the proxy itself sends when a flow fails: a small HTML page with the reason.
    static func makeError(_ status: Int, message: String) -> HTTPResponse {
        let reason = HTTPResponseStatus(statusCode: status).reasonPhrase
        let escaped = message
            .replacingOccurrences(of: "&", with: "&amp;")
            .replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
        let body = """
            <!DOCTYPE html>
            <html>
            <head><title>\(status) \(reason)</title></head>
            <body>
            <h1>\(status) \(reason)</h1>
            <p>\(escaped)</p>
            </body>
            </html>

            """
        return HTTPResponse.make(status, body: body, headers: ["content-type": "text/html; charset=utf-8"])
    }
}
