import Logging
import MitmAddons
import MitmCore
import NIOCore
import NIOHTTP1
import Synchronization

/// mitmproxy's client replay (`-C FILE`, `client_replay`): sends recorded requests to their servers
/// again, through the proxy's addon chain as if a client had sent them.
///
/// Each replayed flow is the recorded one with `isReplay = "request"`, no response and no error,
/// live: it runs `requestheaders` and `request`, goes to the server (honouring upstream mode,
/// `ssl_insecure`, `http2` and the other connection options, as live traffic does), then runs
/// `responseheaders` and `response`, or `error` when the server cannot be reached or fails; so the
/// dumper shows it and `-w` saves it. An addon may answer it in `request` (server replay does), and
/// then no server is contacted. The flow keeps its id, as in mitmproxy.
///
/// Flows that cannot be replayed are left out with a warning: those without a request body
/// recorded (a streamed request), WebSocket flows, and live flows.
///
/// ```swift
/// // Replay through a running proxy (`mitmdump -C FILE`):
/// let replay = ClientReplay(server: proxy, flows: try FlowReader.readHTTPFlows(paths: [path]))
/// Task { await replay.run() }
/// // Or without a listener (`mitmdump -n -C FILE`): make the ProxyServer, don't start() it,
/// // `await replay.run()`, then `await proxy.shutdown()`.
/// ```
public final class ClientReplay: Sendable {
    private let services: ProxyServices
    private let group: any EventLoopGroup
    /// The flows to replay, prepared, in order.
    private let flows: [(flow: HTTPFlow, body: ByteBuffer?)]
    /// How many replays may be under way at once; `nil` means no limit.
    private let limit: Int?
    private let remaining: Atomic<Int>

    /// Prepares `flows` for replay on `server`'s addons, options and event loops. `concurrency` is
    /// mitmproxy's `client_replay_concurrency`: how many requests are in flight at once, `-1` for
    /// no limit; 1 (the default) replays them one after the other, in order. Values below 1 other
    /// than -1 mean 1.
    public convenience init(server: ProxyServer, flows: [HTTPFlow], concurrency: Int = 1) {
        self.init(services: server.services, group: server.group, flows: flows, concurrency: concurrency)
    }

    init(services: ProxyServices, group: any EventLoopGroup, flows: [HTTPFlow], concurrency: Int) {
        self.services = services
        self.group = group
        self.limit = concurrency == -1 ? nil : max(1, concurrency)
        var prepared: [(HTTPFlow, ByteBuffer?)] = []
        for flow in flows {
            if let reason = Self.cannotReplay(flow) {
                services.logger.warning("\(reason)", metadata: ["url": "\(flow.request.url)"])
                continue
            }
            prepared.append(Self.prepare(flow))
        }
        self.flows = prepared
        self.remaining = Atomic(prepared.count)
    }

    /// Flows not yet replayed to the end (mitmproxy's `replay.client.count`): mitmdump without
    /// `keepserving` exits once this and the server replay's count are zero.
    public var count: Int { remaining.load(ordering: .relaxed) }

    /// Replays every flow and returns once all are done, with the replayed flows in the order they
    /// were given (each with its response or its error). Failures are flow errors, never thrown.
    /// Call it once.
    @discardableResult
    public func run() async -> [HTTPFlow] {
        let flows = self.flows
        let limit = self.limit ?? flows.count
        var results = [HTTPFlow?](repeating: nil, count: flows.count)
        await withTaskGroup(of: (Int, HTTPFlow).self) { group in
            var next = 0
            while next < min(limit, flows.count) {
                let index = next
                next += 1
                group.addTask { (index, await self.replay(flows[index].flow, body: flows[index].body)) }
            }
            while let (index, flow) = await group.next() {
                results[index] = flow
                remaining.subtract(1, ordering: .relaxed)
                if next < flows.count {
                    let index = next
                    next += 1
                    group.addTask { (index, await self.replay(flows[index].flow, body: flows[index].body)) }
                }
            }
        }
        return results.compactMap { $0 }
    }

    /// Why `flow` cannot be replayed (mitmproxy's messages), or `nil`.
    static func cannotReplay(_ flow: HTTPFlow) -> String? {
        if flow.isLive { return "Can't replay live flow." }
        if flow.request.rawContent == nil { return "Can't replay flow with missing content." }
        if flow.websocket != nil { return "Can't replay WebSocket flows." }
        return nil
    }

    /// The flow as replay starts it, and the request body it will send.
    static func prepare(_ recorded: HTTPFlow) -> (HTTPFlow, ByteBuffer?) {
        var flow = recorded
        let body = flow.request.rawContent
        flow.isReplay = "request"
        flow.isLive = true
        flow.response = nil
        flow.error = nil
        flow.serverConnection = nil
        flow.request.rawContent = nil
        flow.request.stream = false
        flow.request.timestampStart = now()
        flow.request.timestampEnd = nil
        return (flow, body)
    }

    private func replay(_ flow: HTTPFlow, body: ByteBuffer?) async -> HTTPFlow {
        let eventLoop = group.next()
        let services = self.services
        return await withCheckedContinuation { continuation in
            eventLoop.execute {
                ReplayExchange(flow: flow, services: services, eventLoop: eventLoop).start(body: body) { flow in
                    continuation.resume(returning: flow)
                }
            }
        }
    }
}

/// One replayed exchange: drives the flow's `HTTPStreamStateMachine` as `HTTPProxyHandler` does,
/// with the recorded request standing in for the client and nobody to answer. Server connections
/// come from a `ClientConnectionContext` of its own (the recorded client), closed at the end; its
/// mode is the proxy's first mode when that is upstream mode (so replays go through the upstream
/// proxy, as in mitmproxy), regular mode otherwise.
///
/// Confined to its event loop. It keeps itself alive from `start` to the end (the server handler
/// only holds its delegate weakly).
final class ReplayExchange: UpstreamExchangeDelegate {
    private let connection: ClientConnectionContext
    private var stream: HTTPStreamStateMachine
    private var upstream: (connection: UpstreamConnection, handler: UpstreamStreamHandler)?
    private var pendingParts: [HTTPClientRequestPart] = []
    private var isConnecting = false
    private var completion: ((HTTPFlow) -> Void)?
    private var keepAlive: ReplayExchange?

    private var services: ProxyServices { connection.services }

    init(flow: HTTPFlow, services: ProxyServices, eventLoop: any EventLoop) {
        let mode: ProxyMode
        if let first = services.options.modes.first?.mode, case .upstream = first {
            mode = first
        } else {
            mode = .regular
        }
        self.connection = ClientConnectionContext(services: services, eventLoop: eventLoop, mode: mode, client: flow.clientConnection)
        let limits = HTTPStreamStateMachine.Limits(
            bodySizeLimit: services.options.bodySizeLimit,
            streamLargeBodies: services.options.streamLargeBodies
        )
        self.stream = HTTPStreamStateMachine(flow: flow, limits: limits)
    }

    /// Starts the exchange; `completion` gets the flow once its last hook has run.
    func start(body: ByteBuffer?, completion: @escaping (HTTPFlow) -> Void) {
        self.completion = completion
        keepAlive = self
        services.openFlows.add(1, ordering: .relaxed)
        let first = stream.start()
        // The whole request is at hand: its body and end arrive while the requestheaders hook runs,
        // as those of a fast client do.
        let trailers = stream.flow.request.trailers
        if let body, body.readableBytes > 0 {
            run(stream.requestBodyReceived(body))
        }
        run(stream.requestEndReceived(trailers: trailers))
        run(first)
    }

    private func run(_ action: HTTPStreamStateMachine.Action) {
        guard completion != nil else { return }
        switch action {
        case .wait, .sendContinue, .sendResponseBody:
            if stream.isDone { finish() }
        case .runHook(let hook):
            services.runHook(hook, on: stream.flow, eventLoop: connection.eventLoop) { [self] edited in
                guard completion != nil else { return }
                run(stream.hookCompleted(edited))
            }
        case .sendRequest(let request, let body, let end):
            sendRequest(request, body: body, end: end)
        case .sendRequestBody(let buffer):
            sendUpstream(.body(.byteBuffer(buffer)))
        case .sendRequestEnd(let trailers):
            sendUpstream(.end(trailers?.storage))
        case .sendResponse(_, _, let end):
            if end { responseEnded() }
        case .sendResponseEnd:
            responseEnded()
        case .sendErrorResponse, .closeClient:
            finish()
        }
    }

    private func responseEnded() {
        let next = stream.responseEndSent()
        if case .wait = next {
            finish()
        } else {
            run(next)
        }
    }

    private func finish() {
        guard let completion else { return }
        self.completion = nil
        if let upstream {
            upstream.handler.delegate = nil
            self.upstream = nil
        }
        connection.close()
        services.openFlows.subtract(1, ordering: .relaxed)
        keepAlive = nil
        completion(stream.flow)
    }

    // MARK: - Towards the server

    private func sendRequest(_ request: HTTPRequest, body: ByteBuffer?, end: Bool) {
        let key = connection.serverKey(for: request)
        let bodyLength = end ? (body?.readableBytes ?? 0) : nil
        var parts: [HTTPClientRequestPart] = []
        if let body, body.readableBytes > 0 { parts.append(.body(.byteBuffer(body))) }
        if end { parts.append(.end(request.trailers?.storage)) }
        pendingParts = parts
        isConnecting = true
        connection.acquireStream(for: key, scheme: request.scheme).assumeIsolated().whenComplete { [self] result in
            isConnecting = false
            let parts = pendingParts
            pendingParts = []
            switch result {
            case .success(let (server, handler)):
                guard completion != nil else {
                    connection.release(server, reusable: false)
                    return
                }
                startExchange(server: server, handler: handler, request: request, bodyLength: bodyLength, parts: parts)
            case .failure(let error):
                let message = (error as? ServerConnector.Failure)?.description ?? describe(error)
                services.logger.info("\(message)", metadata: ["replay": "\(request.url)"])
                run(stream.serverFailed(message))
            }
        }
    }

    private func startExchange(
        server: UpstreamConnection,
        handler: UpstreamStreamHandler,
        request: HTTPRequest,
        bodyLength: Int?,
        parts: [HTTPClientRequestPart]
    ) {
        upstream = (server, handler)
        stream.attachServerConnection(server.server)
        let head = HTTPProxyHandler.serverRequestHead(request, bodyLength: bodyLength, on: server, options: services.options)
        handler.begin(head, delegate: self)
        for part in parts {
            handler.send(part, flush: false)
        }
        handler.flush()
    }

    private func sendUpstream(_ part: HTTPClientRequestPart) {
        if isConnecting {
            pendingParts.append(part)
            return
        }
        upstream?.handler.send(part, flush: true)
    }

    // MARK: - UpstreamExchangeDelegate

    func upstreamResponseHead(_ head: HTTPResponseHead) {
        let response = HTTPResponse(receivedHead: head, overHTTP2: upstream?.connection.isHTTP2 == true)
        run(stream.responseHeadReceived(response))
    }

    func upstreamResponseBody(_ buffer: ByteBuffer) {
        run(stream.responseBodyReceived(buffer))
    }

    func upstreamResponseEnd(_ trailers: HTTPHeaders?) {
        run(stream.responseEndReceived(trailers: trailers.map(Headers.init)))
    }

    func upstreamFailed(_ message: String) {
        upstream = nil
        run(stream.serverFailed(message))
    }

    func upstreamWritabilityChanged(isWritable: Bool) {}
}
