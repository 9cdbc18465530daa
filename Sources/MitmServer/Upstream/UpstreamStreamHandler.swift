import Foundation
import MitmCore
import NIOCore
import NIOHTTP1
import NIOPosix

/// Receives what the server sends for one exchange.
protocol UpstreamExchangeDelegate: AnyObject {
    func upstreamResponseHead(_ head: HTTPResponseHead)
    func upstreamResponseBody(_ buffer: ByteBuffer)
    func upstreamResponseEnd(_ trailers: HTTPHeaders?)
    /// The server failed or closed before the response was complete.
    func upstreamFailed(_ message: String)
    /// The server side can (or can no longer) take more request body without buffering.
    func upstreamWritabilityChanged(isWritable: Bool)
}

/// The last handler of a server connection's pipeline (HTTP/1) or of one HTTP/2 stream channel:
/// hands the response parts to the exchange's delegate, and withholds reads while the client side
/// cannot take more (backpressure across the pair, as NIO's GlueHandler does).
///
/// Confined to its channel's event loop, like every handler; `@unchecked Sendable` only so it can
/// travel inside futures completed on that same loop.
final class UpstreamStreamHandler: ChannelDuplexHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    weak var delegate: (any UpstreamExchangeDelegate)?
    private var context: ChannelHandlerContext?
    private var readGate = ReadGate()
    /// Whether a response is under way (so a close means a failure).
    private(set) var isAwaitingResponse = false
    private(set) var isClosed = false
    /// Set when the server said it will close the connection after this response (or switched protocols).
    private(set) var serverWillClose = false

    var channel: (any Channel)? { context?.channel }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    // MARK: - Outbound

    /// Starts an exchange: the request head goes out now, the body follows through `send`.
    func begin(_ head: HTTPRequestHead, delegate: any UpstreamExchangeDelegate) {
        self.delegate = delegate
        isAwaitingResponse = true
        serverWillClose = false
        send(.head(head), flush: false)
    }

    func send(_ part: HTTPClientRequestPart, flush: Bool) {
        guard let context else { return }
        context.write(wrapOutboundOut(part), promise: nil)
        if flush { context.flush() }
    }

    func flush() {
        context?.flush()
    }

    var isWritable: Bool { context?.channel.isWritable ?? false }

    /// Stops (or resumes) reading from the server while the client cannot take more.
    func setReadsPaused(_ paused: Bool) {
        if readGate.setPaused(paused) { context?.read() }
    }

    func read(context: ChannelHandlerContext) {
        if readGate.admitRead() { context.read() }
    }

    // MARK: - Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            if head.headers.hasToken("close", in: "connection")
                || head.version == .http1_0 && !head.headers.hasToken("keep-alive", in: "connection")
            {
                serverWillClose = true
            }
            if head.status == .switchingProtocols {
                // After a 101 the connection speaks another protocol: it never carries HTTP again,
                // even when an addon turns the 101 into something else and no switch happens.
                serverWillClose = true
            }
            delegate?.upstreamResponseHead(head)
        case .body(let buffer):
            delegate?.upstreamResponseBody(buffer)
        case .end(let trailers):
            isAwaitingResponse = false
            let delegate = self.delegate
            self.delegate = nil
            delegate?.upstreamResponseEnd(trailers)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        delegate?.upstreamWritabilityChanged(isWritable: context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        isClosed = true
        failIfAwaiting("Server disconnected.")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failIfAwaiting(describe(error))
        context.close(promise: nil)
    }

    private func failIfAwaiting(_ message: String) {
        guard isAwaitingResponse || delegate != nil else { return }
        isAwaitingResponse = false
        let delegate = self.delegate
        self.delegate = nil
        delegate?.upstreamFailed(message)
    }
}

/// A readable one-line description of a network, TLS or protocol error.
func describe(_ error: any Error) -> String {
    if let error = error as? NIOConnectionError {
        if let failure = error.connectionErrors.first {
            return describe(failure.error)
        }
        if error.dnsAError != nil || error.dnsAAAAError != nil {
            return "could not resolve host \(error.host)"
        }
        return "could not connect to \(error.host):\(error.port)"
    }
    if let error = error as? IOError {
        return String(cString: strerror(error.errnoCode))
    }
    if let error = error as? ChannelError {
        switch error {
        case .connectTimeout(let amount): return "connection timed out after \(amount.nanoseconds / 1_000_000_000) s"
        case .eof: return "connection closed"
        default: return "\(error)"
        }
    }
    if let error = error as? HTTPParserError {
        return "HTTP protocol error: \(error)"
    }
    return String(describing: error)
}

extension HTTPResponse {
    /// The response a server's head starts, as the flow records it (an HTTP/2 response is
    /// `HTTP/2.0`, as in mitmproxy), stamped with the time it arrived.
    init(receivedHead head: HTTPResponseHead, overHTTP2: Bool) {
        self.init(
            httpVersion: overHTTP2 ? "HTTP/2.0" : head.version.mitmproxyString,
            statusCode: Int(head.status.code),
            reason: head.status.reasonPhrase,
            headers: Headers(head.headers)
        )
        timestampStart = now()
    }
}
