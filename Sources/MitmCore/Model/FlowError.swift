/// Why a flow did not complete (mitmproxy's `flow.Error`). Errors inside the core are data: a flow
/// that failed carries one of these, and the `error` hook is told.
public struct FlowError: Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public var timestamp: Double

    public init(_ message: String, timestamp: Double = now()) {
        self.message = message
        self.timestamp = timestamp
    }

    public var description: String { message }

    /// mitmproxy's message for a client that went away mid-flow.
    public static let killedMessage = "Connection killed."
}
