import MitmCore
import Testing

/// `HTTPFlow.kill()` (mitmproxy's `flow.kill()`) as the state machine sees it: after the hook that
/// killed the flow, the error hook runs, then the client connection is closed without an answer.
@Suite("HTTPFlow.kill")
struct HTTPFlowKillTests {
    static func flow() -> HTTPFlow {
        let request = HTTPRequest(method: "GET", scheme: "http", host: "example.com", port: 80, path: "/", headers: ["Host": "example.com"])
        let client = ClientConnection(peername: Address(host: "127.0.0.1", port: 1), sockname: Address(host: "127.0.0.1", port: 8080), proxyMode: "regular")
        return HTTPFlow(request: request, clientConnection: client, isLive: true)
    }

    @Test("kill() sets the killed error and ends the flow's liveness")
    func killMarksTheFlow() {
        var flow = Self.flow()
        #expect(!flow.isKilled)
        flow.kill()
        #expect(flow.isKilled)
        #expect(flow.error?.message == "Connection killed.")
        #expect(!flow.isLive)
    }

    @Test("killed in the request hook: error hook, then closeClient; the server is never asked")
    func killedInRequestHook() {
        var machine = HTTPStreamStateMachine(flow: Self.flow(), limits: .init())
        #expect(machine.start() == .runHook(.requestHeaders))
        let unchanged = machine.flow
        #expect(machine.hookCompleted(unchanged) == .wait)
        #expect(machine.requestEndReceived(trailers: nil) == .runHook(.request))
        var edited = machine.flow
        edited.kill()
        #expect(machine.hookCompleted(edited) == .runHook(.error))
        let afterErrorHook = machine.flow
        #expect(machine.hookCompleted(afterErrorHook) == .closeClient)
        #expect(machine.isDone)
        #expect(machine.flow.isKilled)
    }

    @Test("killed in the requestheaders hook: the same, without waiting for the body")
    func killedInRequestHeadersHook() {
        var machine = HTTPStreamStateMachine(flow: Self.flow(), limits: .init())
        #expect(machine.start() == .runHook(.requestHeaders))
        var edited = machine.flow
        edited.kill()
        #expect(machine.hookCompleted(edited) == .runHook(.error))
        let afterErrorHook = machine.flow
        #expect(machine.hookCompleted(afterErrorHook) == .closeClient)
    }
}
