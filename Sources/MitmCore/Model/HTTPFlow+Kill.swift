extension HTTPFlow {
    /// Kills the flow (mitmproxy's `flow.kill()`): what is under way is not forwarded, and the
    /// client connection is closed without an answer (on HTTP/2, the stream is reset).
    ///
    /// Call it from a hook. The flow records `FlowError.killedMessage` as its error and stops being
    /// live; once the hook chain has run, the proxy runs the `error` hook (unless it was the
    /// `response` hook that killed it, as in mitmproxy) and closes the client. Addons such as
    /// server replay's `server_replay_extra=kill` or a block list's 444 use this.
    public mutating func kill() {
        error = FlowError(FlowError.killedMessage)
        isLive = false
    }

    /// Whether an addon killed the flow with `kill()`.
    public var isKilled: Bool {
        error?.message == FlowError.killedMessage
    }
}
