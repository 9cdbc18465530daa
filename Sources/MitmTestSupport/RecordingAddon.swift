import Foundation
import MitmAddons
import MitmCore
import Synchronization

/// An addon that writes down every hook it is called with, in call order, and the flows it saw
/// (go-mitmproxy's `testOrderAddon`): for assertions on hook order and on what a flow looked like
/// at each step. Thread-safe; it changes nothing.
///
/// Connection and TLS hooks run in the background, so their order relative to the HTTP hooks of a
/// flow is not fixed; compare ``httpHooks(for:)`` for one flow when the order matters.
public final class RecordingAddon: Addon, Sendable {
    /// One hook call.
    public struct Event: Sendable, CustomStringConvertible {
        public var hook: HookName
        /// The flow as the hook received it (HTTP and WebSocket hooks only).
        public var flow: HTTPFlow?
        public var time: Date

        public var description: String {
            if let flow { return "\(hook.rawValue)(\(flow.request.method) \(flow.request.path))" }
            return hook.rawValue
        }
    }

    public let name: String
    private let recorded = Mutex<[Event]>([])

    public init(name: String = "RecordingAddon") {
        self.name = name
    }

    // MARK: Reading

    /// Every call so far, in order.
    public var events: [Event] { recorded.withLock { $0 } }

    /// The names of every hook called so far, in order.
    public var hookNames: [HookName] { events.map(\.hook) }

    /// The HTTP hooks called for one flow, in order.
    public func httpHooks(for id: FlowID) -> [HookName] {
        events.filter { $0.flow?.id == id }.map(\.hook)
    }

    /// The flows seen by HTTP hooks, each in the state the latest hook saw, in order of first appearance.
    public var flows: [HTTPFlow] {
        var order: [FlowID] = []
        var latest: [FlowID: HTTPFlow] = [:]
        for event in events {
            guard let flow = event.flow else { continue }
            if latest[flow.id] == nil { order.append(flow.id) }
            latest[flow.id] = flow
        }
        return order.compactMap { latest[$0] }
    }

    /// The flow as `hook` saw it, for each call of `hook`.
    public func flows(at hook: HookName) -> [HTTPFlow] {
        events.filter { $0.hook == hook }.compactMap(\.flow)
    }

    /// How often `hook` was called.
    public func count(of hook: HookName) -> Int {
        events.count { $0.hook == hook }
    }

    /// Waits until `hook` has been called at least `count` times (or `timeout` seconds pass). Returns
    /// whether it was.
    @discardableResult
    public func wait(for hook: HookName, count: Int = 1, timeout: Double = 5) async -> Bool {
        await wait(timeout: timeout) { $0.count { $0.hook == hook } >= count }
    }

    /// Waits until `condition` holds for the recorded events (or `timeout` seconds pass).
    @discardableResult
    public func wait(timeout: Double = 5, until condition: ([Event]) -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if condition(events) { return true }
            if Date() >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    public func reset() {
        recorded.withLock { $0.removeAll() }
    }

    private func record(_ hook: HookName, _ flow: HTTPFlow? = nil) {
        let event = Event(hook: hook, flow: flow, time: Date())
        recorded.withLock { $0.append(event) }
    }

    // MARK: Hooks

    public func clientConnected(_ client: inout ClientConnection, context: AddonContext) async throws {
        record(.clientConnected)
    }
    public func clientDisconnected(_ client: ClientConnection, context: AddonContext) async throws {
        record(.clientDisconnected)
    }
    public func serverConnect(_ data: inout ServerConnectionHookData, context: AddonContext) async throws {
        record(.serverConnect)
    }
    public func serverConnected(_ data: ServerConnectionHookData, context: AddonContext) async throws {
        record(.serverConnected)
    }
    public func serverDisconnected(_ data: ServerConnectionHookData, context: AddonContext) async throws {
        record(.serverDisconnected)
    }
    public func tlsClientHello(_ data: inout TLSClientHelloData, context: AddonContext) async throws {
        record(.tlsClientHello)
    }
    public func tlsStartClient(_ data: TLSHookData, context: AddonContext) async throws { record(.tlsStartClient) }
    public func tlsStartServer(_ data: TLSHookData, context: AddonContext) async throws { record(.tlsStartServer) }
    public func tlsEstablishedClient(_ data: TLSHookData, context: AddonContext) async throws {
        record(.tlsEstablishedClient)
    }
    public func tlsEstablishedServer(_ data: TLSHookData, context: AddonContext) async throws {
        record(.tlsEstablishedServer)
    }
    public func tlsFailedClient(_ data: TLSHookData, context: AddonContext) async throws { record(.tlsFailedClient) }
    public func tlsFailedServer(_ data: TLSHookData, context: AddonContext) async throws { record(.tlsFailedServer) }
    public func requestHeaders(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        record(.requestHeaders, flow)
    }
    public func request(_ flow: inout HTTPFlow, context: AddonContext) async throws { record(.request, flow) }
    public func responseHeaders(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        record(.responseHeaders, flow)
    }
    public func response(_ flow: inout HTTPFlow, context: AddonContext) async throws { record(.response, flow) }
    public func error(_ flow: inout HTTPFlow, context: AddonContext) async throws { record(.error, flow) }
    public func websocketStart(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        record(.websocketStart, flow)
    }
    public func websocketMessage(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        record(.websocketMessage, flow)
    }
    public func websocketEnd(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        record(.websocketEnd, flow)
    }
    public func tcpStart(_ flow: inout TCPFlow, context: AddonContext) async throws { record(.tcpStart) }
    public func tcpMessage(_ flow: inout TCPFlow, context: AddonContext) async throws { record(.tcpMessage) }
    public func tcpEnd(_ flow: inout TCPFlow, context: AddonContext) async throws { record(.tcpEnd) }
    public func tcpError(_ flow: inout TCPFlow, context: AddonContext) async throws { record(.tcpError) }
    public func running(context: AddonContext) async throws { record(.running) }
    public func done(context: AddonContext) async throws { record(.done) }
}
