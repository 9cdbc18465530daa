import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import Synchronization

/// A loopback TCP server for relaying tests, on `127.0.0.1` and a free port, plain or TLS (with the
/// test PKI's leaf, so a client that sees it knows it reached the origin itself).
public final class TCPOrigin: Sendable {
    public enum Behaviour: Sendable, Hashable {
        /// Sends back what it reads; closes its side once the client has closed its own.
        case echo
        /// Sends `greeting` on connect (a server that speaks first, like SMTP), then echoes.
        case greeting(String)
        /// Resets the connection (RST) after the first read.
        case resetAfterFirstRead
    }

    public let port: Int
    public let usesTLS: Bool
    private let channel: any Channel
    private let received = Mutex<[UInt8]>([])
    private let handshakes = Atomic<Int>(0)

    private init(port: Int, usesTLS: Bool, channel: any Channel) {
        self.port = port
        self.usesTLS = usesTLS
        self.channel = channel
    }

    /// How many TLS handshakes completed (TLS origins): the number of TLS connections used.
    public var tlsHandshakes: Int { handshakes.load(ordering: .relaxed) }

    /// Everything any client sent, in arrival order.
    public var receivedBytes: [UInt8] { received.withLock { $0 } }

    public var address: String { "127.0.0.1:\(port)" }

    public static func start(_ behaviour: Behaviour = .echo, tls: Bool = false, pki: TestPKI = .shared) async throws -> TCPOrigin {
        let sslContext = tls ? try NIOSSLContext(configuration: pki.serverTLSConfiguration(alpn: [])) : nil
        let box = OriginBox()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let sslContext {
                        try sync.addHandler(NIOSSLServerHandler(context: sslContext))
                    }
                    try sync.addHandler(
                        TCPOriginHandler(
                            behaviour: behaviour,
                            record: { bytes in box.origin?.record(bytes) },
                            handshake: { box.origin?.handshakes.add(1, ordering: .relaxed) }
                        )
                    )
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        let origin = TCPOrigin(port: channel.localAddress?.port ?? 0, usesTLS: tls, channel: channel)
        box.origin = origin
        return origin
    }

    fileprivate func record(_ bytes: [UInt8]) {
        received.withLock { $0 += bytes }
    }

    public func shutdown() async {
        try? await channel.close()
    }
}

/// Lets child handlers reach the origin made after the bind. Written once, before any client can
/// connect (the port is not known until then), and only read afterwards; hence `@unchecked Sendable`.
private final class OriginBox: @unchecked Sendable {
    weak var origin: TCPOrigin?
}

private final class TCPOriginHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let behaviour: TCPOrigin.Behaviour
    private let record: ([UInt8]) -> Void
    private let handshake: () -> Void

    init(behaviour: TCPOrigin.Behaviour, record: @escaping ([UInt8]) -> Void, handshake: @escaping () -> Void) {
        self.behaviour = behaviour
        self.record = record
        self.handshake = handshake
    }

    func channelActive(context: ChannelHandlerContext) {
        if case .greeting(let text) = behaviour {
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: text)), promise: nil)
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        record(Array(buffer.readableBytesView))
        switch behaviour {
        case .echo, .greeting:
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        case .resetAfterFirstRead:
            // SO_LINGER with a zero timeout turns close into a reset.
            let channel = context.channel
            if let provider = channel as? any SocketOptionProvider {
                provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in channel.close(promise: nil) }
            } else {
                channel.close(promise: nil)
            }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            handshake()
        }
        if let event = event as? ChannelEvent, case .inputClosed = event {
            // The client is done: so are we, once our echo is out.
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
