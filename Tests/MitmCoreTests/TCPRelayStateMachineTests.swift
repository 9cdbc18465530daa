import NIOCore
import Testing

@testable import MitmCore

/// The relay's decisions without sockets: each test feeds events and checks the actions, answering
/// hooks as a driver would.
@Suite("TCPRelayStateMachine")
struct TCPRelayStateMachineTests {
    typealias Machine = TCPRelayStateMachine

    static func makeFlow() -> TCPFlow {
        TCPFlow(
            clientConnection: ClientConnection(
                peername: Address(host: "127.0.0.1", port: 50000),
                sockname: Address(host: "127.0.0.1", port: 8080),
                proxyMode: "regular"
            ),
            serverConnection: ServerConnection(address: Address(host: "example.com", port: 22), usesTLS: false)
        )
    }

    /// A readable summary of an action, for comparing sequences.
    static func describe(_ action: Machine.Action) -> String {
        switch action {
        case .runHook(let hook, _): "hook \(hook.name.rawValue)"
        case .connectServer: "connect"
        case .send(let side, let data): "send \(side) \(String(buffer: data))"
        case .halfClose(let side): "halfClose \(side)"
        case .closeConnections: "close"
        case .finished: "finished"
        case .wait: "wait"
        }
    }

    /// Runs actions until `.wait`, answering every hook at once (optionally editing the flow).
    static func drain(_ machine: inout Machine, edit: (TCPHook, inout TCPFlow) -> Void = { _, _ in }) -> [String] {
        var seen: [String] = []
        while true {
            let action = machine.nextAction()
            seen.append(describe(action))
            switch action {
            case .wait:
                return seen
            case .runHook(let hook, var flow):
                edit(hook, &flow)
                machine.hookCompleted(flow)
            default:
                continue
            }
        }
    }

    @Test func startRunsTheHookThenConnects() {
        var machine = Machine(flow: Self.makeFlow(), serverIsConnected: false)
        machine.dataReceived(from: .client, ByteBuffer(string: "early"))
        machine.start()
        #expect(Self.drain(&machine) == ["hook tcp_start", "connect", "wait"])
        #expect(!machine.wantsReads)
        var server = ServerConnection(address: Address(host: "example.com", port: 22), usesTLS: false)
        server.peername = Address(host: "93.184.215.14", port: 22)
        machine.serverConnected(server)
        // Data that arrived before the server was connected goes out now, after its hook.
        #expect(Self.drain(&machine) == ["hook tcp_message", "send server early", "wait"])
        #expect(machine.wantsReads)
        #expect(machine.currentFlow?.serverConnection.peername?.host == "93.184.215.14")
        #expect(machine.currentFlow?.messages.count == 1)
    }

    @Test func messagesAreHookedInOrderAndEditsAreForwarded() {
        var machine = Machine(flow: Self.makeFlow(), serverIsConnected: true)
        machine.start()
        #expect(Self.drain(&machine) == ["hook tcp_start", "wait"])
        machine.dataReceived(from: .client, ByteBuffer(string: "ping"))
        machine.dataReceived(from: .server, ByteBuffer(string: "pong"))
        let actions = Self.drain(&machine) { hook, flow in
            guard hook == .message, let last = flow.messages.indices.last else { return }
            flow.messages[last].content = ByteBuffer(string: String(buffer: flow.messages[last].content).uppercased())
        }
        #expect(actions == ["hook tcp_message", "send server PING", "hook tcp_message", "send client PONG", "wait"])
        let messages = machine.currentFlow?.messages ?? []
        #expect(messages.map(\.fromClient) == [true, false])
        #expect(messages.map { String(buffer: $0.content) } == ["PING", "PONG"])
    }

    @Test func eventsWaitWhileAHookRuns() {
        var machine = Machine(flow: Self.makeFlow(), serverIsConnected: true)
        machine.start()
        _ = Self.drain(&machine)
        machine.dataReceived(from: .client, ByteBuffer(string: "a"))
        guard case .runHook(.message, let flow) = machine.nextAction() else {
            Issue.record("expected tcp_message")
            return
        }
        machine.dataReceived(from: .client, ByteBuffer(string: "b"))
        machine.inputClosed(.client)
        #expect(Self.describe(machine.nextAction()) == "wait")
        #expect(!machine.wantsReads)
        machine.hookCompleted(flow)
        #expect(Self.drain(&machine) == ["send server a", "hook tcp_message", "send server b", "halfClose server", "wait"])
    }

    @Test func halfCloseThenEnd() {
        var machine = Machine(flow: Self.makeFlow(), serverIsConnected: true)
        machine.start()
        _ = Self.drain(&machine)
        machine.inputClosed(.client)
        #expect(Self.drain(&machine) == ["halfClose server", "wait"])
        machine.inputClosed(.client)
        #expect(Self.drain(&machine) == ["wait"], "a side closes once")
        machine.dataReceived(from: .server, ByteBuffer(string: "bye"))
        machine.inputClosed(.server)
        #expect(
            Self.drain(&machine) == ["hook tcp_message", "send client bye", "close", "hook tcp_end", "finished", "wait"]
        )
        machine.dataReceived(from: .server, ByteBuffer(string: "late"))
        #expect(Self.drain(&machine) == ["wait"])
        #expect(machine.currentFlow?.error == nil)
    }

    @Test func aConnectionGoneEntirelyEndsTheFlow() {
        var machine = Machine(flow: Self.makeFlow(), serverIsConnected: true)
        machine.start()
        _ = Self.drain(&machine)
        machine.dataReceived(from: .client, ByteBuffer(string: "last"))
        machine.connectionClosed(.client)
        #expect(Self.drain(&machine) == ["hook tcp_message", "send server last", "close", "hook tcp_end", "finished", "wait"])
        #expect(machine.currentFlow?.error == nil)
    }

    @Test func aFailedConnectEndsWithTCPError() {
        var machine = Machine(flow: Self.makeFlow(), serverIsConnected: false)
        machine.start()
        _ = Self.drain(&machine)
        machine.serverConnectFailed("Error connecting to example.com:22: Connection refused")
        #expect(Self.drain(&machine) == ["close", "hook tcp_error", "finished", "wait"])
        #expect(machine.currentFlow?.error?.message == "Error connecting to example.com:22: Connection refused")
    }

    @Test func aResetEndsWithTCPErrorAfterEarlierData() {
        var machine = Machine(flow: Self.makeFlow(), serverIsConnected: true)
        machine.start()
        _ = Self.drain(&machine)
        machine.dataReceived(from: .server, ByteBuffer(string: "x"))
        machine.connectionFailed("Server connection error: Connection reset by peer")
        #expect(Self.drain(&machine) == ["hook tcp_message", "send client x", "close", "hook tcp_error", "finished", "wait"])
        #expect(machine.currentFlow?.error?.message == "Server connection error: Connection reset by peer")
    }

    @Test func withoutAddonsForwardedContentIsNotKept() {
        var machine = Machine(flow: Self.makeFlow(), serverIsConnected: true, keepsMessages: false)
        machine.start()
        _ = Self.drain(&machine)
        for chunk in ["a", "b", "c"] {
            machine.dataReceived(from: .client, ByteBuffer(string: chunk))
        }
        #expect(Self.drain(&machine) == ["hook tcp_message", "send server a", "hook tcp_message", "send server b", "hook tcp_message", "send server c", "wait"])
        #expect(machine.currentFlow?.messages.isEmpty == true)
    }
}
