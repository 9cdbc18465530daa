import MitmAddons
import MitmCore
import NIOCore

extension ProxyServices {
    /// Runs a TCP hook and calls `completion` with the edited flow on `eventLoop`, like `runHook`:
    /// inline when there are no addons (a relayed chunk then costs no task and no hop), otherwise
    /// after the hook chain, started as an immediate task.
    func runTCPHook(
        _ hook: TCPHook,
        on flow: TCPFlow,
        eventLoop: any EventLoop,
        completion: @escaping (TCPFlow) -> Void
    ) {
        let addons = self.addons
        if addons.addons.isEmpty {
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
