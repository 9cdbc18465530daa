import Foundation
import MitmCore
import NIOCore

/// Opens a tunnel through a SOCKS5 proxy: the client half of `SOCKS5ClientHandshake`, as the first
/// handler of a fresh connection to the proxy. Completes `promise` once the proxy connected us to
/// the target, then leaves the pipeline (passing on any bytes the server already sent).
final class SOCKS5TunnelHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var handshake: SOCKS5ClientHandshake
    private var promise: EventLoopPromise<Void>?
    private let proxy: Address

    init(target: Address, proxy: Address, credentials: (username: String, password: String)?, promise: EventLoopPromise<Void>) {
        self.handshake = SOCKS5ClientHandshake(
            host: target.host,
            port: UInt16(clamping: target.port),
            username: credentials?.username,
            password: credentials?.password
        )
        self.proxy = proxy
        self.promise = promise
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { perform(handshake.start(), context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        perform(handshake.start(), context: context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        perform(handshake.receive(unwrapInboundIn(data)), context: context)
    }

    private func perform(_ actions: [SOCKS5ClientHandshake.Action], context: ChannelHandlerContext) {
        for action in actions {
            switch action {
            case .send(let bytes):
                context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: nil)
            case .connected(let leftover):
                promise?.succeed()
                promise = nil
                if leftover.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(leftover)) }
                context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            case .fail(let error):
                fail(ServerConnector.Failure(description: "SOCKS5 proxy \(proxy): \(error)"), context: context)
            }
        }
    }

    private func fail(_ error: any Error, context: ChannelHandlerContext) {
        promise?.fail(error)
        promise = nil
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise?.fail(ServerConnector.Failure(description: "SOCKS5 proxy \(proxy) closed the connection during the handshake"))
        promise = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(error, context: context)
    }
}

/// Opens a tunnel through an HTTP proxy with `CONNECT host:port`: writes the request, reads the
/// response head, and succeeds on a 2xx. Bounded: a head larger than 16 KiB is an error.
final class HTTPConnectTunnelHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let target: Address
    private let proxy: Address
    private let authorization: String?
    private var promise: EventLoopPromise<Void>?
    private var received: ByteBuffer?
    private var sent = false

    init(target: Address, proxy: Address, authorization: String?, promise: EventLoopPromise<Void>) {
        self.target = target
        self.proxy = proxy
        self.authorization = authorization
        self.promise = promise
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { sendRequest(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        sendRequest(context: context)
        context.fireChannelActive()
    }

    private func sendRequest(context: ChannelHandlerContext) {
        guard !sent else { return }
        sent = true
        let authority = target.description
        var head = "CONNECT \(authority) HTTP/1.1\r\nHost: \(authority)\r\n"
        if let authorization { head += "Proxy-Authorization: \(authorization)\r\n" }
        head += "\r\n"
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: head)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var chunk = unwrapInboundIn(data)
        if received == nil { received = chunk } else { received!.writeBuffer(&chunk) }
        guard let buffer = received else { return }
        let bytes = buffer.readableBytesView
        guard let end = bytes.firstRange(of: [13, 10, 13, 10]) else {
            if bytes.count > 16 * 1024 {
                fail("the proxy's answer to CONNECT is larger than 16 KiB", context: context)
            }
            return
        }
        let headLength = end.upperBound - bytes.startIndex
        let head = String(decoding: bytes.prefix(headLength), as: UTF8.self)
        let statusLine = head.prefix { $0 != "\r" }
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            fail("invalid answer to CONNECT: '\(statusLine)'", context: context)
            return
        }
        guard (200..<300).contains(status) else {
            fail("the proxy refused CONNECT \(target): \(statusLine.dropFirst(parts[0].count + 1))", context: context)
            return
        }
        promise?.succeed()
        promise = nil
        var leftover = buffer
        leftover.moveReaderIndex(forwardBy: headLength)
        received = nil
        if leftover.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(leftover)) }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    private func fail(_ message: String, context: ChannelHandlerContext) {
        promise?.fail(ServerConnector.Failure(description: "Upstream proxy \(proxy): \(message)"))
        promise = nil
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise?.fail(ServerConnector.Failure(description: "Upstream proxy \(proxy) closed the connection before answering CONNECT"))
        promise = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise?.fail(error)
        promise = nil
        context.close(promise: nil)
    }
}

extension ProxyOptions {
    /// `upstream_auth` as a Proxy-Authorization value (`Basic …`), and as SOCKS5 credentials.
    var upstreamCredentials: (username: String, password: String)? {
        guard let upstreamAuth, let colon = upstreamAuth.firstIndex(of: ":") else { return nil }
        return (String(upstreamAuth[..<colon]), String(upstreamAuth[upstreamAuth.index(after: colon)...]))
    }

    var upstreamProxyAuthorization: String? {
        upstreamCredentials.map { ProxyAuthHeaders.basicValue(username: $0.username, password: $0.password) }
    }
}
