import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// A bare TCP client for sending bytes no well-behaved HTTP client would send (malformed request
/// lines, half a head) and reading back whatever comes, until the peer closes.
public final class RawConnection: Sendable {
    private let channel: any Channel
    private let collector: ByteCollector

    private init(channel: any Channel, collector: ByteCollector) {
        self.channel = channel
        self.collector = collector
    }

    public static func connect(host: String = "127.0.0.1", port: Int) async throws -> RawConnection {
        let collector = ByteCollector()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(CollectingHandler(collector: collector))
                }
            }
            .connect(host: host, port: port)
            .get()
        return RawConnection(channel: channel, collector: collector)
    }

    public func send(_ text: String) async throws {
        try await send(Array(text.utf8))
    }

    public func send(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
    }

    /// Everything received so far.
    public var received: [UInt8] { collector.state.withLock { $0.bytes } }
    public var receivedText: String { String(decoding: received, as: UTF8.self) }
    /// Whether the peer has closed (or reset) the connection.
    public var isClosedByPeer: Bool { collector.state.withLock { $0.closed } }

    /// Waits until the peer closes the connection; returns whether it did within `timeout` seconds.
    @discardableResult
    public func waitForClose(timeout: Double = 15) async -> Bool {
        await poll(timeout: timeout) { self.isClosedByPeer }
    }

    /// Waits until the received text contains `text`; returns whether it did within `timeout` seconds.
    @discardableResult
    public func waitForText(_ text: String, timeout: Double = 15) async -> Bool {
        await poll(timeout: timeout) { self.receivedText.contains(text) }
    }

    /// Closes our sending side only (a FIN); the connection stays open for reading.
    public func shutdownOutput() async throws {
        try await channel.close(mode: .output)
    }

    public func close() async {
        try? await channel.close()
    }

    private func poll(timeout: Double, _ condition: () -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if condition() { return true }
            if Date() >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }
}

final class ByteCollector: Sendable {
    struct State {
        var bytes: [UInt8] = []
        var closed = false
    }
    let state = Mutex(State())
}

final class CollectingHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let collector: ByteCollector

    init(collector: ByteCollector) {
        self.collector = collector
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        let bytes = buffer.readBytes(length: buffer.readableBytes) ?? []
        collector.state.withLock { $0.bytes += bytes }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            collector.state.withLock { $0.closed = true }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        collector.state.withLock { $0.closed = true }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
