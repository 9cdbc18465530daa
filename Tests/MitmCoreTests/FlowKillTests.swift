import MitmCore
import NIOCore
import Testing

/// `HTTPFlow.kill()` as the state machine carries it out (mitmproxy's `check_killed`): after a
/// request-side hook the error hook runs and the client is closed unanswered; after the response
/// hook the client is closed without an error hook.
@Suite("Killing a flow")
struct FlowKillTests {
    static func machine() -> HTTPStreamStateMachine {
        let request = HTTPRequest(
            method: "GET", scheme: "http", host: "example.com", port: 80, path: "/", headers: ["Host": "example.com"]
        )
        let client = ClientConnection(
            peername: Address(host: "127.0.0.1", port: 1), sockname: Address(host: "127.0.0.1", port: 8080), proxyMode: "regular"
        )
        return HTTPStreamStateMachine(flow: HTTPFlow(request: request, clientConnection: client, isLive: true), limits: .init())
    }

    static func killed(_ flow: HTTPFlow) -> HTTPFlow {
        var flow = flow
        flow.kill()
        return flow
    }

    @Test("killed in the request hook: the error hook runs, then the client is closed with no answer")
    func killInRequestHook() {
        var machine = Self.machine()
        #expect(machine.start() == .runHook(.requestHeaders))
        #expect(machine.requestEndReceived(trailers: nil) == .wait)
        #expect(machine.hookCompleted(machine.flow) == .runHook(.request))
        #expect(machine.hookCompleted(Self.killed(machine.flow)) == .runHook(.error))
        #expect(machine.flow.error?.message == FlowError.killedMessage)
        #expect(!machine.flow.isLive)
        #expect(machine.hookCompleted(machine.flow) == .closeClient)
        #expect(machine.isDone)
    }

    @Test("killed in the requestheaders hook: nothing goes to the server")
    func killInRequestHeadersHook() {
        var machine = Self.machine()
        #expect(machine.start() == .runHook(.requestHeaders))
        #expect(machine.hookCompleted(Self.killed(machine.flow)) == .runHook(.error))
        #expect(machine.requestEndReceived(trailers: nil) == .wait)
        #expect(machine.hookCompleted(machine.flow) == .closeClient)
    }

    @Test("killed in the response hook: the client is closed, with no error hook")
    func killInResponseHook() {
        var machine = Self.machine()
        _ = machine.start()
        _ = machine.requestEndReceived(trailers: nil)
        _ = machine.hookCompleted(machine.flow)
        guard case .sendRequest = machine.hookCompleted(machine.flow) else {
            Issue.record("the request should go to the server")
            return
        }
        #expect(machine.responseHeadReceived(HTTPResponse(statusCode: 200, headers: ["Content-Length": "0"])) == .runHook(.responseHeaders))
        #expect(machine.hookCompleted(machine.flow) == .wait)
        #expect(machine.responseEndReceived(trailers: nil) == .runHook(.response))
        #expect(machine.hookCompleted(Self.killed(machine.flow)) == .closeClient)
        #expect(machine.isDone)
        #expect(machine.flow.isKilled)
    }
}
