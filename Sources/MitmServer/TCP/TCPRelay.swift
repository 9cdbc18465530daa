import MitmAddons
import MitmCore
import NIOCore

/// Carries out a `TCPRelayStateMachine` for one TCP flow: opens the server connection, runs the
/// hooks, writes, half-closes and closes, and keeps backpressure across the pair: a side is read
/// only while the machine is idle (no hook running, nothing queued) and the side its bytes go to
/// is writable.
///
/// Confined to the client connection's event loop, like the two `TCPRelaySideHandler`s that feed
/// it; the server connection is opened on the same loop.
final class TCPRelay {
    typealias Side = TCPRelayStateMachine.Side

    private var machine: TCPRelayStateMachine
    private let connection: ClientConnectionContext
    private let target: TCPServerConnector.Target
    /// A server connection opened before the flow began (`EarlyServerConnection`), if any.
    private let preconnected: EventLoopFuture<(any Channel, ServerConnection)>?
    private let eventLoop: any EventLoop
    private var services: ProxyServices { connection.services }

    private var clientContext: ChannelHandlerContext?
    private var serverContext: ChannelHandlerContext?
    private var pendingRead: (client: Bool, server: Bool) = (false, false)
    private var needsFlush: (client: Bool, server: Bool) = (false, false)
    /// Set between a side's `channelRead`s and its `channelReadComplete`: writes are flushed once
    /// at the end of the burst instead of once per chunk.
    private var inReadBurst = false
    private var isDriving = false
    private var isCounted = false

    /// `flow` is the new flow; `target` the server to open for it, unless `preconnected` is given.
    init(
        flow: TCPFlow,
        target: TCPServerConnector.Target,
        connection: ClientConnectionContext,
        preconnected: EventLoopFuture<(any Channel, ServerConnection)>? = nil
    ) {
        self.connection = connection
        self.target = target
        self.preconnected = preconnected
        self.eventLoop = connection.eventLoop
        // Without addons nobody can see a message, so forwarded content is not kept.
        let keepsMessages = !connection.services.addons.addons.isEmpty
        self.machine = TCPRelayStateMachine(flow: flow, serverIsConnected: false, keepsMessages: keepsMessages)
    }

    // MARK: - From the side handlers

    func attach(_ side: Side, context: ChannelHandlerContext) {
        switch side {
        case .client: clientContext = context
        case .server: serverContext = context
        }
    }

    /// The side's handler left the pipeline (its channel closed): drop the context, which also
    /// breaks the relay ⇄ handler reference cycle.
    func detach(_ side: Side) {
        switch side {
        case .client: clientContext = nil
        case .server: serverContext = nil
        }
    }

    func start() {
        isCounted = true
        services.openFlows.add(1, ordering: .relaxed)
        machine.start()
        drive()
    }

    func received(_ data: ByteBuffer, from side: Side) {
        inReadBurst = true
        machine.dataReceived(from: side, data)
        drive()
    }

    func readComplete(_ side: Side) {
        inReadBurst = false
        flushPending()
    }

    func inputClosed(_ side: Side) {
        machine.inputClosed(side)
        drive()
    }

    func connectionClosed(_ side: Side) {
        machine.connectionClosed(side)
        drive()
    }

    func failed(_ side: Side, error: any Error) {
        let who = side == .client ? "Client" : "Server"
        machine.connectionFailed("\(who) connection error: \(describe(error))")
        drive()
    }

    func writabilityChanged() {
        resumeReads()
    }

    /// Whether `side` may be read now; if not, the read is remembered and issued later.
    func mayRead(_ side: Side) -> Bool {
        guard machine.wantsReads, let destination = context(side.other), destination.channel.isWritable else {
            switch side {
            case .client: pendingRead.client = true
            case .server: pendingRead.server = true
            }
            return false
        }
        return true
    }

    // MARK: - Driving the machine

    private func drive() {
        guard !isDriving else { return }
        isDriving = true
        defer { isDriving = false }
        while true {
            switch machine.nextAction() {
            case .wait:
                if !inReadBurst { flushPending() }
                resumeReads()
                return
            case .runHook(let hook, let flow):
                var completedInline = false
                services.runTCPHook(hook, on: flow, eventLoop: eventLoop) { [self] flow in
                    machine.hookCompleted(flow)
                    if isDriving {
                        completedInline = true
                    } else {
                        drive()
                    }
                }
                if !completedInline {
                    // The hook runs in a task; its completion drives the machine again.
                    if !inReadBurst { flushPending() }
                    return
                }
            case .connectServer:
                connectServer()
            case .send(let side, let data):
                guard let context = context(side) else { continue }
                context.write(NIOAny(data), promise: nil)
                markNeedsFlush(side)
            case .halfClose(let side):
                flushPending()
                guard let context = context(side) else { continue }
                let promise = eventLoop.makePromise(of: Void.self)
                promise.futureResult.assumeIsolated().whenFailure { _ in
                    // Channels that cannot half-close (TLS without support for it) close fully.
                    context.close(promise: nil)
                }
                context.close(mode: .output, promise: promise)
            case .closeConnections:
                flushPending()
                clientContext?.close(promise: nil)
                serverContext?.close(promise: nil)
            case .finished:
                if isCounted {
                    isCounted = false
                    services.openFlows.subtract(1, ordering: .relaxed)
                }
            }
        }
    }

    private func connectServer() {
        let connecting =
            preconnected
            ?? TCPServerConnector.connect(target, connection: connection)
        connecting.assumeIsolated().whenComplete { [self] result in
            switch result {
            case .success(let (channel, server)):
                guard !machine.isFinishing else {
                    channel.close(promise: nil)
                    return
                }
                do {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(TCPRelaySideHandler(relay: self, side: .server))
                    machine.serverConnected(server)
                    // What the server sent before the relay took over (a greeting, a FIN) follows.
                    if let held = try? sync.handler(type: ProtocolPeekHandler.self) {
                        sync.removeHandler(held, promise: nil)
                    }
                    if !channel.isActive {
                        machine.connectionClosed(.server)
                    }
                } catch {
                    channel.close(promise: nil)
                    machine.serverConnectFailed("Error connecting to \(target.address): \(describe(error))")
                }
            case .failure(let error):
                let message = (error as? TCPServerConnector.Failure)?.description ?? describe(error)
                services.logger.info("\(message)", metadata: ["client": "\(connection.client.peername)"])
                machine.serverConnectFailed(message)
            }
            drive()
        }
    }

    private func context(_ side: Side) -> ChannelHandlerContext? {
        side == .client ? clientContext : serverContext
    }

    private func markNeedsFlush(_ side: Side) {
        switch side {
        case .client: needsFlush.client = true
        case .server: needsFlush.server = true
        }
    }

    private func flushPending() {
        if needsFlush.client {
            needsFlush.client = false
            clientContext?.flush()
        }
        if needsFlush.server {
            needsFlush.server = false
            serverContext?.flush()
        }
    }

    /// Issues the reads that `mayRead` held back, where they may go ahead now.
    private func resumeReads() {
        if pendingRead.client, machine.wantsReads, serverContext?.channel.isWritable == true {
            pendingRead.client = false
            clientContext?.read()
        }
        if pendingRead.server, machine.wantsReads, clientContext?.channel.isWritable == true {
            pendingRead.server = false
            serverContext?.read()
        }
    }
}
