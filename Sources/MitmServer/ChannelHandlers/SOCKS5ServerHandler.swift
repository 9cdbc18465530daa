import MitmCore
import NIOCore
import NIOPosix

/// The first handler of a SOCKS5 listener's client: runs `SOCKS5ServerHandshake`, opens the
/// connection the client asked for, and then hands the client over to the same protocol detection
/// as after a CONNECT (TLS interception, HTTP, or a pass-through).
///
/// The server connection is opened before the handshake is answered (mitmproxy's `eager`
/// connection strategy), so a target that cannot be reached gets SOCKS5's own answer ("connection
/// refused", "host unreachable") rather than a success followed by a dead tunnel. The connection
/// is then kept for the first server exchange (`ClientConnectionContext.preconnect`).
final class SOCKS5ServerHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let connection: ClientConnectionContext
    private var handshake: SOCKS5ServerHandshake
    /// Reads stay off while credentials are checked or the target is being connected: the
    /// machine would otherwise buffer whatever the client pipelines, without bound.
    private var readGate = ReadGate()

    init(connection: ClientConnectionContext) {
        self.connection = connection
        self.handshake = SOCKS5ServerHandshake(
            configuration: .init(requireAuthentication: connection.services.authenticator != nil)
        )
    }

    private var services: ProxyServices { connection.services }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        perform(handshake.receive(unwrapInboundIn(data)), context: context)
    }

    private func perform(_ actions: [SOCKS5ServerHandshake.Action], context: ChannelHandlerContext) {
        for action in actions {
            switch action {
            case .send(let bytes):
                context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: nil)
            case .verifyCredentials(let username, let password):
                let ok = services.authenticator?.verify(username: username, password: password) ?? true
                if !ok {
                    services.logger.info(
                        "SOCKS5 authentication failed for user '\(username)'",
                        metadata: ["client": "\(connection.client.peername)"]
                    )
                }
                connection.isAuthenticated = ok
                perform(handshake.credentialsChecked(ok: ok), context: context)
            case .connect(let target):
                connect(to: Address(host: target.host, port: Int(target.port)), context: context)
            case .established(let leftover):
                established(leftover: leftover, context: context)
            case .fail(let error):
                services.logger.info("SOCKS5 error: \(error)", metadata: ["client": "\(connection.client.peername)"])
                context.close(promise: nil)
            case .close:
                context.close(promise: nil)
            }
        }
    }

    private func connect(to target: Address, context: ChannelHandlerContext) {
        connection.tunnelTarget = target
        guard services.options.connectionStrategy == .eager else {
            perform(handshake.connectSucceeded(), context: context)
            return
        }
        _ = readGate.setPaused(true)
        let loopContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        connection.preconnect(to: target).assumeIsolated().whenComplete { [self] result in
            let context = loopContext.value
            // Reading resumes before the handshake's answer, which may hand the client over to
            // the next handler and take this one out of the pipeline.
            if readGate.setPaused(false) { context.read() }
            switch result {
            case .success:
                perform(handshake.connectSucceeded(), context: context)
            case .failure(let error):
                let message = "Error connecting to \(target): \(describe(error))"
                services.logger.info("\(message)", metadata: ["client": "\(connection.client.peername)"])
                connection.recordFailedConnection(to: target, message: message)
                perform(handshake.connectFailed(Self.failure(for: error)), context: context)
            }
        }
    }

    /// The SOCKS5 reply for a failed connect.
    static func failure(for error: any Error) -> SOCKS5ServerHandshake.ConnectFailure {
        if let error = error as? IOError {
            switch error.errnoCode {
            case ECONNREFUSED: return .connectionRefused
            case ENETUNREACH: return .networkUnreachable
            case EHOSTUNREACH: return .hostUnreachable
            case ETIMEDOUT: return .timedOut
            default: return .other
            }
        }
        if let error = error as? ChannelError, case .connectTimeout = error { return .timedOut }
        if let error = error as? NIOConnectionError {
            // Every address failed; the first error says the most (a refused port, or a name that
            // did not resolve).
            if let first = error.connectionErrors.first?.error { return failure(for: first) }
            return .hostUnreachable
        }
        return .other
    }

    private func established(leftover: ByteBuffer, context: ChannelHandlerContext) {
        do {
            let sync = context.pipeline.syncOperations
            try sync.addHandler(PipelineSetup.makePeekHandler(connection: connection), position: .after(self))
            if leftover.readableBytes > 0 {
                context.fireChannelRead(wrapInboundOut(leftover))
            }
            sync.removeHandler(context: context, promise: nil)
        } catch {
            context.close(promise: nil)
        }
    }

    // MARK: - Reads

    func read(context: ChannelHandlerContext) {
        if readGate.admitRead() { context.read() }
    }
}
