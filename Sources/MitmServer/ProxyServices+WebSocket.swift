import MitmCore
import NIOCore

extension ProxyServices {
    /// Runs a WebSocket hook and calls `completion` with the edited flow on `eventLoop`: inline when
    /// there are no addons, otherwise after the hook chain (never inside it), as `runHook` does for
    /// HTTP hooks.
    func runWebSocketHook(
        _ hook: WebSocketHook,
        on flow: HTTPFlow,
        eventLoop: any EventLoop,
        completion: @escaping (HTTPFlow) -> Void
    ) {
        let addons = self.addons
        if addons.addons.isEmpty {
            // Nothing to run: answer at once. The relay's state machine has already moved on (it
            // waits for this answer), so re-entering it here is safe.
            completion(flow)
            return
        }
        let completion = NIOLoopBound(completion, eventLoop: eventLoop)
        Task.immediate {
            var flow = flow
            await addons.run(hook, on: &flow)
            let result = flow
            eventLoop.execute { completion.value(result) }
        }
    }
}
