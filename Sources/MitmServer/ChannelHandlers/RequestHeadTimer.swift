import NIOCore

/// Closes a client that starts a request but does not finish its head in time (slowloris), and one
/// that stays silent longer than the idle timeout. Sits in front of the HTTP/1 decoder, where it sees
/// the bytes arrive; the `HTTPProxyHandler` tells it when a head is complete and when an exchange
/// is over.
///
/// Rather than scheduling a timer per read or per request, it notes timestamps and checks them from
/// one periodic task, so the hot path costs a clock read.
final class RequestHeadTimer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let headTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    private let tick: TimeAmount
    private var context: ChannelHandlerContext?
    private var waitingForHead = true
    private var headStarted: NIODeadline?
    private var lastActivity = NIODeadline.now()
    private var check: Scheduled<Void>?
    /// Called when the head timeout fires, before the connection is closed (to answer 408).
    var onHeadTimeout: (() -> Void)?

    init(headTimeout: Double, idleTimeout: Double) {
        self.headTimeout = .nanoseconds(Int64(headTimeout * 1e9))
        self.idleTimeout = .nanoseconds(Int64(idleTimeout * 1e9))
        self.tick = .nanoseconds(Int64(min(1.0, headTimeout / 4, idleTimeout / 4) * 1e9))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        lastActivity = context.eventLoop.now
        scheduleCheck()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        check?.cancel()
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        lastActivity = context.eventLoop.now
        if waitingForHead && headStarted == nil {
            headStarted = lastActivity
        }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        check?.cancel()
        context.fireChannelInactive()
    }

    /// A complete request head arrived.
    func headReceived() {
        waitingForHead = false
        headStarted = nil
    }

    /// The exchange is over; the next bytes start a new head.
    func exchangeFinished() {
        waitingForHead = true
        lastActivity = context?.eventLoop.now ?? .now()
    }

    private func scheduleCheck() {
        guard let context else { return }
        check = context.eventLoop.assumeIsolated().scheduleTask(in: tick) { [weak self] in
            self?.runCheck()
        }
    }

    private func runCheck() {
        guard let context else { return }
        // The loop's clock, not the wall clock, so that tests can drive it (`advanceTime`).
        let now = context.eventLoop.now
        if waitingForHead, let headStarted, now - headStarted >= headTimeout {
            onHeadTimeout?()
            context.close(promise: nil)
            return
        }
        if now - lastActivity >= idleTimeout {
            context.close(promise: nil)
            return
        }
        scheduleCheck()
    }
}
