import MitmCore
import MitmTestSupport
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOHTTP2
import NIOSSL
import NIOTLS
import Testing
import X509

@testable import MitmServer

// MARK: - Pure decisions

/// `TLSInterceptor.chooseALPN` and `leafRequest`: what we answer a client's ClientHello with.
@Suite struct TLSInterceptorDecisionTests {
    /// `serverALPN`: `nil` = no server connection (not connected or not TLS); `.some(nil)` = a server
    /// that negotiated no protocol.
    @Test(arguments: [
        // No server: our own preference among the client's offers.
        (["h2", "http/1.1"], String??.none, true, "h2"),
        (["http/1.1", "h2"], .none, true, "h2"),
        (["h2", "http/1.1"], .none, false, "http/1.1"),
        (["h2"], .none, false, nil),
        (["http/1.1"], .none, true, "http/1.1"),
        (["spdy/3", "acme-tls/1"], .none, true, nil),
        ([], .none, true, nil),
        // A server: its choice, when the client offered it.
        (["h2", "http/1.1"], .some("h2"), true, "h2"),
        (["h2", "http/1.1"], .some("http/1.1"), true, "http/1.1"),
        (["h2", "http/1.1"], .some(nil), true, "http/1.1"),
        (["h2"], .some(nil), true, nil),
        (["http/1.1"], .some("h2"), true, "http/1.1"),
        (["h2", "http/1.1"], .some("h2"), false, "h2"),
    ] as [([String], String??, Bool, String?)])
    func chooseALPN(clientOffers: [String], serverALPN: String??, http2: Bool, expected: String?) {
        let server = serverALPN.map { alpn in makeUpstream(alpn: alpn) }
        #expect(TLSInterceptor.chooseALPN(clientOffers: clientOffers, server: server, http2: http2) == expected)
    }

    func makeUpstream(alpn: String?, certificateDER: [UInt8]? = nil) -> UpstreamConnection {
        var server = ServerConnection(address: Address(host: "example.com", port: 443), usesTLS: true, sni: "example.com")
        server.tls = TLSInfo(sni: "example.com", alpn: alpn, certificateChain: certificateDER.map { [$0] } ?? [])
        return UpstreamConnection(
            key: ServerKey(address: server.address, usesTLS: true, sni: "example.com"),
            channel: EmbeddedChannel(),
            kind: .http1(UpstreamStreamHandler()),
            server: server
        )
    }

    @Test func leafForAReverseProxyNamesTheSNIAndTheTargetAddress() throws {
        let harness = TestServices()
        let connection = harness.connection(on: EmbeddedEventLoop(), mode: try ProxyMode(parsing: "reverse:http://127.0.0.1:9"))
        let hello = try makeClientHello(sni: "example.test", alpn: ["h2"])
        let request = TLSInterceptor.leafRequest(hello: hello, connection: connection, server: nil)
        #expect(request.commonName == "example.test")
        #expect(request.dnsNames == ["example.test"])
        #expect(request.ipAddresses == ["127.0.0.1"])
        #expect(request.organization == nil)
    }

    @Test func leafWithoutSNIIsNamedForTheTunnelTarget() throws {
        let harness = TestServices()
        let connection = harness.connection(on: EmbeddedEventLoop(), mode: .regular)
        connection.tunnelTarget = Address(host: "example.com", port: 443)
        let hello = try makeClientHello(sni: nil, alpn: [])
        #expect(hello.serverName == nil)
        let request = TLSInterceptor.leafRequest(hello: hello, connection: connection, server: nil)
        #expect(request.commonName == "example.com")
        #expect(request.dnsNames == ["example.com"])
        #expect(request.ipAddresses.isEmpty)
    }

    @Test func leafCopiesTheServerCertificatesNames() throws {
        let harness = TestServices()
        let connection = harness.connection(on: EmbeddedEventLoop(), mode: .regular)
        connection.tunnelTarget = Address(host: "example.com", port: 443)
        let hello = try makeClientHello(sni: "example.com", alpn: [])
        // TestPKI's leaf: CN localhost, SANs localhost and 127.0.0.1, O "swift-mitmproxy tests".
        let der = try TestPKI.shared.leafCertificate.serializeAsPEM().derBytes
        let server = makeUpstream(alpn: nil, certificateDER: der)
        let request = TLSInterceptor.leafRequest(hello: hello, connection: connection, server: server)
        #expect(request.commonName == "example.com", "the SNI stays the common name")
        #expect(request.dnsNames == ["example.com", "localhost"])
        #expect(request.ipAddresses == ["127.0.0.1"])
        #expect(request.organization == "swift-mitmproxy tests")
    }
}

// MARK: - Back to back

/// A NIOSSL client and our server pipeline (reverse mode to an `http://` target, so no server
/// connection is made) in two `EmbeddedChannel`s, bytes pumped between them in memory.
@Suite struct TLSInterceptionBackToBackTests {
    struct Pair {
        let client: EmbeddedChannel
        let server: EmbeddedChannel
        let clientEvents: TLSEventRecorder
        let harness: TestServices
    }

    func makePair(alpn: [String], trustTestCA: Bool = true, answer: String? = nil) throws -> Pair {
        let harness = TestServices(answer: answer)
        let server = try makeAcceptedChannel()
        try PipelineSetup.configureNewClient(
            channel: server,
            services: harness.services,
            spec: try ProxyModeSpec(parsing: "reverse:http://127.0.0.1:9")
        )
        try activate(server)

        var configuration = TLSConfiguration.makeClientConfiguration()
        if trustTestCA {
            configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(TestCA.certificatePEMPath))
        } else {
            // Some other CA: our leaf will not verify.
            configuration.trustRoots = .certificates([
                try NIOSSLCertificate(bytes: Array(TestPKI.shared.caCertificatePEM.utf8), format: .pem)
            ])
        }
        configuration.applicationProtocols = alpn
        let context = try NIOSSLContext(configuration: configuration)
        let client = EmbeddedChannel()
        let events = TLSEventRecorder()
        try client.pipeline.syncOperations.addHandlers([
            try NIOSSLClientHandler(context: context, serverHostname: "example.test"), events,
        ])
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 8080)).wait()
        return Pair(client: client, server: server, clientEvents: events, harness: harness)
    }

    @Test func handshakeSelectsH2AndPresentsALeafForTheSNI() throws {
        let pair = try makePair(alpn: ["h2", "http/1.1"])
        let errors = interactInMemory(client: pair.client, server: pair.server)
        #expect(errors.client.isEmpty, "client errors: \(errors.client)")
        #expect(errors.server.isEmpty, "server errors: \(errors.server)")

        #expect(pair.clientEvents.handshakes == ["h2"])
        let peer = try #require(try pair.client.pipeline.syncOperations.nioSSL_peerCertificate())
        let leaf = try Certificate(derEncoded: try peer.toDERBytes())
        let names = try #require(try leaf.extensions.subjectAlternativeNames)
        #expect(names.contains(.dnsName("example.test")))
        #expect(leaf.issuer == TestCA.authority.certificate.subject)

        #expect(pipeline(pair.server, contains: NIOSSLServerHandler.self))
        #expect(pipeline(pair.server, contains: NIOHTTP2Handler.self))
        #expect(!pipeline(pair.server, contains: HTTPProxyHandler.self))
        #expect(!pipeline(pair.server, contains: ProtocolPeekHandler.self))
        #expect(!pipeline(pair.server, contains: ClientTLSHandshakeHandler.self))
        #expect(pair.server.isActive)
        #expect(pair.harness.recording.count(of: .tlsClientHello) == 1)
        #expect(runUntil(pair.server) { pair.harness.recording.count(of: .tlsEstablishedClient) == 1 })
        closeTLSPair(pair.client, pair.server)
    }

    @Test func clientOfferingOnlyHTTP1GetsHTTP1Handlers() throws {
        let pair = try makePair(alpn: ["http/1.1"])
        let errors = interactInMemory(client: pair.client, server: pair.server)
        #expect(errors.client.isEmpty, "client errors: \(errors.client)")
        #expect(errors.server.isEmpty, "server errors: \(errors.server)")
        #expect(pair.clientEvents.handshakes == ["http/1.1"])
        #expect(pipeline(pair.server, contains: HTTPProxyHandler.self))
        #expect(pipeline(pair.server, contains: ByteToMessageHandler<HTTPRequestDecoder>.self))
        #expect(pipeline(pair.server, contains: RequestHeadTimer.self))
        #expect(!pipeline(pair.server, contains: NIOHTTP2Handler.self))
        closeTLSPair(pair.client, pair.server)
    }

    @Test func clientWithoutALPNGetsHTTP1Handlers() throws {
        let pair = try makePair(alpn: [])
        let errors = interactInMemory(client: pair.client, server: pair.server)
        #expect(errors.client.isEmpty && errors.server.isEmpty, "\(errors)")
        #expect(pair.clientEvents.handshakes == [nil])
        #expect(pipeline(pair.server, contains: HTTPProxyHandler.self))
        #expect(!pipeline(pair.server, contains: NIOHTTP2Handler.self))
        closeTLSPair(pair.client, pair.server)
    }

    @Test func requestInsideTheInterceptedConnectionIsDecryptedAndAnswered() throws {
        let pair = try makePair(alpn: ["http/1.1"], answer: "hello over TLS")
        _ = interactInMemory(client: pair.client, server: pair.server)
        try pair.client.writeOutbound(ByteBuffer(text: "GET /secret HTTP/1.1\r\nHost: example.test\r\n\r\n"))
        var received = ""
        let answered = runUntil(pair.server) {
            _ = interactInMemory(client: pair.client, server: pair.server)
            received += pair.clientEvents.takeReceived()
            return received.contains("hello over TLS")
        }
        #expect(answered, "got: \(received.debugDescription)")
        #expect(received.hasPrefix("HTTP/1.1 200 OK\r\n"))
        let flow = try #require(pair.harness.recording.flows(at: .requestHeaders).first)
        #expect(flow.request.scheme == "http", "the reverse target's scheme, whatever the client spoke")
        #expect(flow.request.host == "127.0.0.1")
        #expect(flow.request.port == 9)
        #expect(flow.request.path == "/secret")
        #expect(flow.clientConnection.tls?.sni == "example.test")
        #expect(flow.clientConnection.tls?.alpn == "http/1.1")
        closeTLSPair(pair.client, pair.server)
    }

    @Test func clientThatDoesNotTrustTheCAFailsAndTheServerClosesAndLogs() throws {
        let pair = try makePair(alpn: ["h2", "http/1.1"], trustTestCA: false)
        let errors = interactInMemory(client: pair.client, server: pair.server)
        #expect(!errors.client.isEmpty, "the client refuses our certificate")
        #expect(pair.clientEvents.handshakes.isEmpty)
        #expect(runUntil(pair.server) { !pair.server.isActive }, "the server side closes")
        #expect(pair.harness.logs.contains("Client TLS handshake failed"))
        #expect(pair.harness.logs.contains("example.test"))
        #expect(runUntil(pair.server) { pair.harness.recording.count(of: .tlsFailedClient) == 1 })
        #expect(pair.harness.recording.count(of: .tlsEstablishedClient) == 0)
    }

    @Test func malformedClientHelloIsRefusedWithALogLine() throws {
        let harness = TestServices()
        let server = try makeAcceptedChannel()
        try PipelineSetup.configureNewClient(
            channel: server,
            services: harness.services,
            spec: try ProxyModeSpec(parsing: "reverse:http://127.0.0.1:9")
        )
        try activate(server)
        // A complete handshake record holding a ClientHello of four bytes: far too short to be one.
        var bytes = ByteBuffer()
        bytes.writeBytes([0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04, 0x03, 0x03, 0x00, 0x00])
        try? server.writeInbound(bytes)
        #expect(runUntil(server) { !server.isActive })
        #expect(harness.logs.contains("invalid ClientHello"))
        #expect(harness.recording.count(of: .tlsClientHello) == 0)
    }
}

// MARK: - Helpers

/// Records what a TLS client sees: completed handshakes (their ALPN) and decrypted bytes.
final class TLSEventRecorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private(set) var handshakes: [String?] = []
    private var received = ""

    func takeReceived() -> String {
        defer { received = "" }
        return received
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received += unwrapInboundIn(data).text
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted(let alpn) = event {
            handshakes.append(alpn)
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// Pumps bytes between two embedded channels until neither has anything to send (NIOSSL's own
/// `interactInMemory`), collecting the errors each side throws instead of stopping at the first.
func interactInMemory(client: EmbeddedChannel, server: EmbeddedChannel) -> (client: [any Error], server: [any Error]) {
    var clientErrors: [any Error] = []
    var serverErrors: [any Error] = []
    var quietRounds = 0
    for _ in 0..<1000 {
        client.embeddedEventLoop.run()
        server.embeddedEventLoop.run()
        var moved = false
        do {
            if let data = try client.readOutbound(as: IOData.self), case .byteBuffer(let buffer) = data {
                moved = true
                do { try server.writeInbound(buffer) } catch { serverErrors.append(error) }
            }
        } catch {
            clientErrors.append(error)
        }
        do {
            if let data = try server.readOutbound(as: IOData.self), case .byteBuffer(let buffer) = data {
                moved = true
                do { try client.writeInbound(buffer) } catch { clientErrors.append(error) }
            }
        } catch {
            serverErrors.append(error)
        }
        if moved {
            quietRounds = 0
        } else {
            quietRounds += 1
            if quietRounds > 2 { break }
        }
    }
    return (clientErrors, serverErrors)
}

struct NotAClientHello: Error {}

/// Closes both sides of a TLS pair. NIOSSL's close waits for the peer's close_notify or its own
/// timeout, neither of which comes by itself in embedded time (so no `finish()`, whose `wait()` would
/// block for ever): pump the alerts across, then let the shutdown timers fire.
func closeTLSPair(_ client: EmbeddedChannel, _ server: EmbeddedChannel) {
    client.close(promise: nil)
    _ = interactInMemory(client: client, server: server)
    server.close(promise: nil)
    _ = interactInMemory(client: client, server: server)
    client.embeddedEventLoop.advanceTime(by: .seconds(60))
    server.embeddedEventLoop.advanceTime(by: .seconds(60))
}

/// A ClientHello as NIOSSL sends it, parsed by our parser.
func makeClientHello(sni: String?, alpn: [String]) throws -> ClientHello {
    var configuration = TLSConfiguration.makeClientConfiguration()
    configuration.applicationProtocols = alpn
    let channel = EmbeddedChannel()
    try channel.pipeline.syncOperations.addHandler(
        try NIOSSLClientHandler(context: NIOSSLContext(configuration: configuration), serverHostname: sni)
    )
    try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 443)).wait()
    var bytes = ByteBuffer()
    while let data = try channel.readOutbound(as: IOData.self) {
        if case .byteBuffer(var buffer) = data { bytes.writeBuffer(&buffer) }
    }
    channel.close(promise: nil)
    channel.embeddedEventLoop.advanceTime(by: .seconds(60))
    guard case .clientHello(let hello) = ClientHello.parse(bytes) else {
        throw NotAClientHello()
    }
    return hello
}
