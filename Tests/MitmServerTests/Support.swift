import Foundation
import Logging
import MitmAddons
import MitmCertificates
import MitmCore
import MitmTestSupport
import NIOCore
import NIOEmbedded
import Testing

@testable import MitmServer

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Helpers for driving the server's handlers in `EmbeddedChannel`s: no sockets, no threads of our own.
//
// Everything here is meant for synchronous tests. An `EmbeddedEventLoop` belongs to the thread that
// made it, and a synchronous test body stays on one thread; hooks complete through `Task.immediate`,
// which runs addons that do not suspend (all of ours) inline, then `eventLoop.execute`, so running the
// loop is enough to see their effects.

/// One CA for the whole test process, created in a temporary confdir the way the proxy creates it.
enum TestCA {
    static let confdir: String = {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("mitm-server-tests-\(UUID().uuidString)").path
        atexit { try? FileManager.default.removeItem(atPath: TestCA.confdir) }
        return directory
    }()

    static let authority: CertificateAuthority = {
        do {
            return try CertificateAuthority.loadOrCreate(confdir: confdir)
        } catch {
            fatalError("could not create the test CA in \(confdir): \(error)")
        }
    }()

    /// The CA certificate as the proxy writes it for clients (`mitmproxy-ca-cert.pem`).
    static var certificatePEMPath: String {
        _ = authority
        return (confdir as NSString).appendingPathComponent(CertificateAuthority.ConfdirFiles().certificatePEM)
    }
}

/// An addon that records like `RecordingAddon` and, when told to, answers every request itself in
/// `requestHeaders`, so a test never needs a server.
final class AnsweringAddon: Addon, Sendable {
    let name = "AnsweringAddon"
    let answer: String?
    let recording = RecordingAddon()

    init(answer: String?) {
        self.answer = answer
    }

    func requestHeaders(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        try await recording.requestHeaders(&flow, context: context)
        if let answer {
            flow.response = HTTPResponse.make(200, body: answer)
        }
    }
    func request(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        try await recording.request(&flow, context: context)
    }
    func response(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        try await recording.response(&flow, context: context)
    }
    func error(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        try await recording.error(&flow, context: context)
    }
    func tlsClientHello(_ data: inout TLSClientHelloData, context: AddonContext) async throws {
        try await recording.tlsClientHello(&data, context: context)
    }
    func tlsEstablishedClient(_ data: TLSHookData, context: AddonContext) async throws {
        try await recording.tlsEstablishedClient(data, context: context)
    }
    func tlsFailedClient(_ data: TLSHookData, context: AddonContext) async throws {
        try await recording.tlsFailedClient(data, context: context)
    }
}

/// The shared services of one proxy, with a recording addon and a log recorder.
struct TestServices {
    let services: ProxyServices
    let addon: AnsweringAddon
    let logs: LogRecorder

    var recording: RecordingAddon { addon.recording }

    init(options: ProxyOptions = ProxyOptions(), answer: String? = nil) {
        var options = options
        options.confdir = TestCA.confdir
        // An EmbeddedChannel cannot open sockets: CONNECT must not connect before answering.
        options.connectionStrategy = .lazy
        let logs = LogRecorder()
        let logger = logs.logger()
        let addon = AnsweringAddon(answer: answer)
        let manager = AddonManager(addons: [addon], context: AddonContext(options: options, logger: logger))
        // Tests pass valid host patterns; a bad one is a bug in the test.
        self.services = try! ProxyServices(
            options: options,
            addons: manager,
            certificates: CertificateStore(authority: TestCA.authority),
            logger: logger
        )
        self.addon = addon
        self.logs = logs
    }

    /// A connection context on `channel`'s loop, as `PipelineSetup.configureNewClient` makes one.
    func connection(on eventLoop: any EventLoop, mode: ProxyMode) -> ClientConnectionContext {
        let client = ClientConnection(
            peername: Address(host: "127.0.0.1", port: 50000),
            sockname: Address(host: "127.0.0.1", port: 8080),
            proxyMode: mode.description
        )
        return ClientConnectionContext(services: services, eventLoop: eventLoop, mode: mode, client: client)
    }
}

// MARK: - Channels

/// An `EmbeddedChannel` with both addresses set, as an accepted connection has them. Not yet active:
/// call `activate` after configuring the pipeline, as a server bootstrap would.
func makeAcceptedChannel() throws -> EmbeddedChannel {
    let channel = EmbeddedChannel()
    channel.localAddress = try SocketAddress(ipAddress: "127.0.0.1", port: 8080)
    channel.remoteAddress = try SocketAddress(ipAddress: "127.0.0.1", port: 50000)
    return channel
}

func activate(_ channel: EmbeddedChannel) throws {
    try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 50000)).wait()
}

/// Whether the channel has been closed (its close future is done).
func isClosed(_ channel: EmbeddedChannel) -> Bool {
    final class Flag: @unchecked Sendable { var value = false }  // only touched on the embedded loop's thread
    channel.embeddedEventLoop.run()
    let flag = Flag()
    channel.closeFuture.whenComplete { _ in flag.value = true }
    return flag.value
}

/// Everything the channel wrote so far, as one buffer.
func drainOutbound(_ channel: EmbeddedChannel, sourceLocation: SourceLocation = #_sourceLocation) -> ByteBuffer {
    var all = channel.allocator.buffer(capacity: 0)
    do {
        while let data = try channel.readOutbound(as: IOData.self) {
            switch data {
            case .byteBuffer(var buffer): all.writeBuffer(&buffer)
            case .fileRegion: Issue.record("unexpected file region", sourceLocation: sourceLocation)
            }
        }
    } catch {
        Issue.record("reading outbound failed: \(error)", sourceLocation: sourceLocation)
    }
    return all
}

/// Runs the embedded loop until `condition` holds, giving background tasks a moment between rounds;
/// gives up after `iterations` rounds (about a millisecond each) and returns whether it held.
@discardableResult
func runUntil(_ channel: EmbeddedChannel, iterations: Int = 500, _ condition: () -> Bool) -> Bool {
    for _ in 0..<iterations {
        channel.embeddedEventLoop.run()
        if condition() { return true }
        usleep(1000)
    }
    channel.embeddedEventLoop.run()
    return condition()
}

/// Whether the pipeline holds a handler of type `type`.
func pipeline<Handler: ChannelHandler>(_ channel: any Channel, contains type: Handler.Type) -> Bool {
    (try? channel.pipeline.syncOperations.handler(type: type)) != nil
}

extension ByteBuffer {
    init(text: String) {
        self.init(string: text)
    }

    var text: String { String(buffer: self) }
}

/// Collects every `ByteBuffer` that reaches it, in order.
final class ByteRecorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private(set) var reads: [ByteBuffer] = []
    var all: String { reads.map(\.text).joined() }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        reads.append(unwrapInboundIn(data))
    }
}
