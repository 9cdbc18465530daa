import Foundation
import MitmAddons
import MitmCore
import Synchronization

/// Records the TCP hooks in call order with the flow each saw, and can rewrite messages on the way
/// (`rewrite` gets each new message's content and returns what to forward). Thread-safe.
public final class TCPRecordingAddon: Addon, Sendable {
    public struct Event: Sendable {
        public var hook: HookName
        public var flow: TCPFlow
    }

    public let name = "TCPRecordingAddon"
    private let recorded = Mutex<[Event]>([])
    private let rewrite: (@Sendable (TCPMessage) -> String?)?

    /// `rewrite`: return new content for a message (as text), or `nil` to leave it.
    public init(rewrite: (@Sendable (TCPMessage) -> String?)? = nil) {
        self.rewrite = rewrite
    }

    public var events: [Event] { recorded.withLock { $0 } }
    public var hookNames: [HookName] { events.map(\.hook) }

    /// The flow as the last hook saw it.
    public var lastFlow: TCPFlow? { events.last?.flow }

    /// Waits until `hook` has been called (or `timeout` seconds pass); returns whether it was.
    @discardableResult
    public func wait(for hook: HookName, timeout: Double = 15) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if events.contains(where: { $0.hook == hook }) { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return false
    }

    private func record(_ hook: HookName, _ flow: TCPFlow) {
        recorded.withLock { $0.append(Event(hook: hook, flow: flow)) }
    }

    public func tcpStart(_ flow: inout TCPFlow, context: AddonContext) async throws { record(.tcpStart, flow) }

    public func tcpMessage(_ flow: inout TCPFlow, context: AddonContext) async throws {
        if let rewrite, let last = flow.messages.indices.last, let replacement = rewrite(flow.messages[last]) {
            flow.messages[last].content = .init(string: replacement)
        }
        record(.tcpMessage, flow)
    }

    public func tcpEnd(_ flow: inout TCPFlow, context: AddonContext) async throws { record(.tcpEnd, flow) }
    public func tcpError(_ flow: inout TCPFlow, context: AddonContext) async throws { record(.tcpError, flow) }
}
