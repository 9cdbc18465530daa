import Logging
import MitmAddons
import MitmCertificates
import MitmCore
import NIOCore
import NIOEmbedded
import Testing

@testable import MitmServer

/// The relay between two `EmbeddedChannel`s on one loop (the server one handed in as already
/// connected): bytes cross in order, flushed once per read burst, a FIN becomes a half-close, and a
/// side is not read while the other cannot take more.
@Suite struct TCPRelayTests {
    /// Counts `read()` calls that reach the front of a pipeline.
    final class ReadCounter: ChannelOutboundHandler {
        typealias OutboundIn = NIOAny
        var reads = 0
        func read(context: ChannelHandlerContext) {
            reads += 1
            context.read()
        }
    }

    /// Records `close(mode: .output)` and succeeds it (an `EmbeddedChannel` cannot half-close).
    final class HalfCloseRecorder: ChannelOutboundHandler {
        typealias OutboundIn = NIOAny
        var halfCloses = 0
        func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
            guard mode == .output else {
                context.close(mode: mode, promise: promise)
                return
            }
            halfCloses += 1
            promise?.succeed()
        }
    }

    struct Pair {
        let client: EmbeddedChannel
        let server: EmbeddedChannel
        let clientReads: ReadCounter
        let serverHalfCloses: HalfCloseRecorder
        let services: ProxyServices
    }

    /// A client channel whose placeholder handler is replaced by a relay to `server`, no addons.
    func makePair() throws -> Pair {
        let loop = EmbeddedEventLoop()
        let client = EmbeddedChannel(loop: loop)
        let server = EmbeddedChannel(loop: loop)
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: 9)
        _ = try client.connect(to: address).wait()
        _ = try server.connect(to: address).wait()
        let options = ProxyOptions()
        let logger = Logger(label: "test")
        let services = try ProxyServices(
            options: options,
            addons: AddonManager(addons: [], context: AddonContext(options: options, logger: logger)),
            certificates: CertificateStore(authority: TestCA.authority),
            logger: logger
        )
        let connection = ClientConnectionContext(
            services: services,
            eventLoop: loop,
            mode: .regular,
            client: ClientConnection(
                peername: Address(host: "127.0.0.1", port: 50000),
                sockname: Address(host: "127.0.0.1", port: 8080),
                proxyMode: "regular"
            )
        )
        connection.tunnelTarget = Address(host: "127.0.0.1", port: 9)
        let halfCloses = HalfCloseRecorder()
        try server.pipeline.syncOperations.addHandler(halfCloses)
        let counter = ReadCounter()
        let placeholder = ProtocolPeekHandler { _ in .needMoreData }
        try client.pipeline.syncOperations.addHandlers([counter, placeholder])
        let context = try client.pipeline.syncOperations.context(handler: placeholder)
        let serverConnection = ServerConnection(address: Address(host: "127.0.0.1", port: 9), usesTLS: false)
        PipelineSetup.startTCPRelay(
            replacing: context,
            connection: connection,
            preconnected: loop.makeSucceededFuture((server as any Channel, serverConnection))
        )
        return Pair(client: client, server: server, clientReads: counter, serverHalfCloses: halfCloses, services: services)
    }

    func outbound(_ channel: EmbeddedChannel) throws -> [String] {
        var chunks: [String] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
            chunks.append(String(buffer: buffer))
        }
        return chunks
    }

    @Test func bytesCrossBothWaysInOrder() throws {
        let pair = try makePair()
        #expect(pair.services.openFlows.load(ordering: .relaxed) == 1)
        try pair.client.writeInbound(ByteBuffer(string: "one"))
        try pair.client.writeInbound(ByteBuffer(string: "two"))
        #expect(try outbound(pair.server) == ["one", "two"])
        try pair.server.writeInbound(ByteBuffer(string: "back"))
        #expect(try outbound(pair.client) == ["back"])
    }

    @Test func aFINIsForwardedAndBothFINsEndTheFlow() throws {
        let pair = try makePair()
        pair.client.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(pair.serverHalfCloses.halfCloses == 1)
        #expect(pair.server.isActive, "a half-close, not a close")
        try pair.server.writeInbound(ByteBuffer(string: "late answer"))
        #expect(try outbound(pair.client) == ["late answer"])
        pair.server.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(!pair.client.isActive)
        #expect(!pair.server.isActive)
        #expect(pair.services.openFlows.load(ordering: .relaxed) == 0)
    }

    @Test func theClientIsNotReadWhileTheServerCannotTakeMore() throws {
        let pair = try makePair()
        pair.server.isWritable = false
        let before = pair.clientReads.reads
        pair.client.read()
        #expect(pair.clientReads.reads == before, "held back")
        pair.server.isWritable = true
        pair.server.pipeline.fireChannelWritabilityChanged()
        #expect(pair.clientReads.reads == before + 1, "issued once the server can write again")
    }
}
