import MitmCore
import NIOCore

/// Drives one WebSocket connection's `WebSocketStreamStateMachine` between the client's and the
/// server's endpoint handlers: feeds it frames and connection ends, and carries out its actions
/// (hooks through `ProxyServices`, frames, closes, log lines). Decisions live in the machine.
///
/// Confined to the client connection's event loop: both channels, their handlers and every hook
/// completion run there (`runWebSocketHook` completes on it).
final class WebSocketRelay {
    typealias Side = WebSocketStreamStateMachine.Side

    /// How long to wait for the other side's answer to a close frame before closing both connections.
    static let closingHandshakeTimeout: TimeAmount = .seconds(5)

    private var machine: WebSocketStreamStateMachine
    private let services: ProxyServices
    private let eventLoop: any EventLoop
    private let client: WebSocketEndpointHandler
    private let server: WebSocketEndpointHandler
    private let clientPeer: String
    /// The largest frame the decoders accept (the message limit).
    let maxFrameSize: Int
    private var closingTimer: Scheduled<Void>?
    /// Whether this relay counts its flow in `services.openFlows` (until websocket_end has run).
    private var countsOpenFlow = false

    init(
        flow: HTTPFlow,
        limits: WebSocketStreamStateMachine.Limits,
        maxFrameSize: Int,
        services: ProxyServices,
        eventLoop: any EventLoop,
        client: WebSocketEndpointHandler,
        server: WebSocketEndpointHandler
    ) {
        self.machine = WebSocketStreamStateMachine(flow: flow, limits: limits)
        self.services = services
        self.eventLoop = eventLoop
        self.client = client
        self.server = server
        self.maxFrameSize = maxFrameSize
        self.clientPeer = "\(flow.clientConnection.peername)"
        client.relay = self
        server.relay = self
    }

    /// The connection is WebSocket from now on: websocket_start runs. The flow counts as open until
    /// websocket_end has run, so a shutdown's grace period lets it finish.
    func start() {
        countsOpenFlow = true
        services.openFlows.add(1, ordering: .relaxed)
        run(machine.start())
    }

    // MARK: - Events from the endpoints

    func frameReceived(_ frame: WebSocketStreamStateMachine.Frame, from side: Side) {
        run(machine.frameReceived(frame, from: side))
    }

    func connectionClosed(_ side: Side) {
        run(machine.connectionClosed(side))
    }

    func codecFailed(_ side: Side, code: Int, message: String) {
        run(machine.codecFailed(side, code: code, message: message))
    }

    func writabilityChanged() {
        updateReadPauses()
    }

    // MARK: - Actions

    private func endpoint(_ side: Side) -> WebSocketEndpointHandler {
        side == .client ? client : server
    }

    private func run(_ actions: [WebSocketStreamStateMachine.Action]) {
        for action in actions {
            switch action {
            case .runHook(let hook):
                // Reads stop while the hook runs; frames already decoded wait in the machine.
                updateReadPauses()
                services.runWebSocketHook(hook, on: machine.flow, eventLoop: eventLoop) { [self] edited in
                    let next = machine.hookCompleted(edited)
                    run(next)
                }
            case .send(let frame, let side):
                endpoint(side).send(frame)
            case .close(let side):
                endpoint(side).closeAfterWrites()
            case .log(let text):
                services.logger.info("\(text)", metadata: ["client": "\(clientPeer)"])
            }
        }
        afterActions()
    }

    private func afterActions() {
        if machine.isDone {
            closingTimer?.cancel()
            closingTimer = nil
            if countsOpenFlow {
                countsOpenFlow = false
                services.openFlows.subtract(1, ordering: .relaxed)
            }
            return
        }
        if machine.isClosing, closingTimer == nil {
            closingTimer = eventLoop.assumeIsolated().scheduleTask(in: Self.closingHandshakeTimeout) { [self] in
                run(machine.closingTimedOut())
            }
        }
        updateReadPauses()
    }

    /// A side is read only while no hook runs and the other side can take what it sends (as NIO's
    /// GlueHandler does across a pair of channels).
    private func updateReadPauses() {
        let hook = machine.isHookInFlight
        client.setReadsPaused(hook || !server.isWritable)
        server.setReadsPaused(hook || !client.isWritable)
    }
}
