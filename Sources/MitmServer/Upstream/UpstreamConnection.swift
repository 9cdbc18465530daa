import MitmCore
import NIOCore
import NIOHTTP1
import NIOHTTP2

/// Which server a connection goes to: flows whose keys match may share it.
struct ServerKey: Hashable {
    var address: Address
    var usesTLS: Bool
    var sni: String?
    /// The upstream proxy the connection goes through (upstream mode).
    var via: ProxyMode.UpstreamProxy? = nil
}

/// One connection to a server, HTTP/1 or HTTP/2. Confined to its event loop (the client
/// connection's), which is what `@unchecked Sendable` relies on: it only crosses futures completed there.
final class UpstreamConnection: @unchecked Sendable {
    enum Kind {
        /// One exchange at a time over the connection's only handler.
        case http1(UpstreamStreamHandler)
        /// Any number of exchanges, each on its own stream channel.
        case http2(NIOHTTP2Handler.StreamMultiplexer)
    }

    let key: ServerKey
    let channel: any Channel
    let kind: Kind
    var server: ServerConnection
    /// Requests go to an HTTP upstream proxy, so their target is the absolute URL.
    var usesAbsoluteForm = false

    init(key: ServerKey, channel: any Channel, kind: Kind, server: ServerConnection) {
        self.key = key
        self.channel = channel
        self.kind = kind
        self.server = server
    }

    var isHTTP2: Bool {
        if case .http2 = kind { return true }
        return false
    }

    var isUsable: Bool {
        guard channel.isActive else { return false }
        switch kind {
        case .http1(let handler): return !handler.isClosed && !handler.serverWillClose
        case .http2: return true
        }
    }

    /// Opens a stream for one exchange: on HTTP/1 the connection's own handler, on HTTP/2 a new
    /// stream channel with the HTTP/1 ⇄ HTTP/2 codec in front of a fresh handler.
    func openStream(scheme: String) -> EventLoopFuture<UpstreamStreamHandler> {
        switch kind {
        case .http1(let handler):
            return channel.eventLoop.makeSucceededFuture(handler)
        case .http2(let multiplexer):
            let promise = channel.eventLoop.makePromise(of: (any Channel).self)
            multiplexer.createStreamChannel(promise: promise) { stream in
                do {
                    try stream.pipeline.syncOperations.addHandlers([
                        HTTP2FramePayloadToHTTP1ClientCodec(httpProtocol: scheme == "https" ? .https : .http),
                        UpstreamStreamHandler(),
                    ])
                    return stream.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return stream.eventLoop.makeFailedFuture(error)
                }
            }
            return promise.futureResult.flatMapThrowing { stream in
                try stream.pipeline.syncOperations.handler(type: UpstreamStreamHandler.self)
            }
        }
    }
}
