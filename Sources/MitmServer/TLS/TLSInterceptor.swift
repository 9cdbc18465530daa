import MitmAddons
import MitmCertificates
import MitmCore
import NIOCore
import NIOSSL
import NIOTLS
import SwiftASN1
import X509

/// Intercepts a TLS connection from a client, the way mitmproxy does with `connection_strategy`
/// eager and `upstream_cert` on:
///
/// ```
///  ClientHello peeked ──► tls_clienthello hook ──► connect to the server with TLS
///     (SNI, ALPN)                                   (SNI and ALPN mirrored from the client)
///        ──► leaf certificate: SNI, target host, and the server certificate's names
///        ──► handshake with the client, choosing the ALPN the server chose
///        ──► HTTP/1 or HTTP/2 handlers by the negotiated protocol
/// ```
///
/// A server that cannot be reached does not stop the client handshake: the client gets its
/// certificate and then, for its first request, a 502 that names the reason.
enum TLSInterceptor {
    static func intercept(hello: ClientHello, peekContext: ChannelHandlerContext, connection: ClientConnectionContext) {
        let services = connection.services
        let eventLoop = peekContext.eventLoop
        let peek = NIOLoopBound(peekContext, eventLoop: eventLoop)
        connection.client.tlsAttempted = true
        let helloData = TLSClientHelloData(client: connection.client, clientHello: hello)

        run(on: eventLoop) { () -> TLSClientHelloData in
            var data = helloData
            await services.addons.tlsClientHello(&data)
            return data
        }
        .flatMap { data -> EventLoopFuture<EagerServer> in
            if data.ignoreConnection, let target = connection.originalServerAddress {
                PipelineSetup.passThrough(peekContext: peek.value, to: target, connection: connection)
                return eventLoop.makeFailedFuture(Skip())
            }
            // A TCP flow inside TLS gets its TLS server connection now, without HTTP on top.
            if let tcp = connectEagerlyForTCP(hello: hello, connection: connection) {
                return tcp
            }
            return connectEagerly(hello: hello, connection: connection).map(EagerServer.http)
        }
        .flatMap { eager -> EventLoopFuture<(LeafRequest, LeafCertificate, String?, EagerServer)> in
            let alpn: String?
            let request: LeafRequest
            switch eager {
            case .http(let server):
                alpn = chooseALPN(clientOffers: hello.alpnProtocols, server: server, http2: services.options.http2)
                request = leafRequest(hello: hello, connection: connection, server: server)
            case .tcp(_, let server):
                alpn = server?.tls?.alpn.flatMap { hello.alpnProtocols.contains($0) ? $0 : nil }
                request = leafRequest(hello: hello, connection: connection, serverCertificate: server?.tls?.certificateChain.first)
            }
            // The store answers with a user's certificate (--certs) first, then its cache.
            if let cached = services.certificates.cachedLeaf(for: request) {
                return eventLoop.makeSucceededFuture((request, cached, alpn, eager))
            }
            return run(on: eventLoop) { try await services.certificates.leaf(for: request) }
                .map { (request, $0, alpn, eager) }
        }
        .whenComplete { result in
            let peekContext = peek.value
            switch result {
            case .success(let (request, leaf, alpn, eager)):
                do {
                    let context = try services.serverContext(for: request, leaf: leaf, alpn: alpn)
                    let data = TLSHookData(side: .client, client: connection.client)
                    services.notify(.tlsStartClient) { await $0.tls(.tlsStartClient, data) }
                    let sync = peekContext.pipeline.syncOperations
                    try sync.addHandlers(
                        [
                            NIOSSLServerHandler(context: context),
                            ClientTLSHandshakeHandler(connection: connection, hello: hello, tcpServer: eager.tcpServer),
                        ],
                        position: .after(peekContext.handler)
                    )
                    sync.removeHandler(context: peekContext, promise: nil)
                } catch {
                    services.logger.error(
                        "could not set up TLS: \(error)",
                        metadata: ["client": "\(connection.client.peername)"]
                    )
                    peekContext.close(promise: nil)
                }
            case .failure(let error):
                if error is Skip { return }
                services.logger.error(
                    "could not create a certificate for \(hello.serverName ?? "?"): \(error)",
                    metadata: ["client": "\(connection.client.peername)"]
                )
                peekContext.close(promise: nil)
            }
        }
    }

    private struct Skip: Error {}

    /// With `upstream_cert`, the server comes first: its certificate's names go into ours, and its ALPN
    /// choice becomes ours. Failures are logged and leave `nil` (the request will fail with a 502).
    /// Not for the onboarding host: the onboarding addon answers for it, and it need not exist.
    private static func connectEagerly(hello: ClientHello, connection: ClientConnectionContext) -> EventLoopFuture<UpstreamConnection?> {
        let eventLoop = connection.eventLoop
        guard connection.options.upstreamCert, let target = connection.originalServerAddress,
            !connection.options.isOnboardingTarget(host: target.host, port: target.port)
        else {
            return eventLoop.makeSucceededFuture(nil)
        }
        if case .reverse(let reverse) = connection.mode, !reverse.usesTLS {
            return eventLoop.makeSucceededFuture(nil)
        }
        let key = ServerKey(address: target, usesTLS: true, sni: hello.serverName ?? target.host, via: connection.upstreamProxy)
        let offers = connection.upstreamALPNOffers(clientOffers: hello.alpnProtocols)
        return connection.connect(key: key, alpnOffers: offers)
            .map { server -> UpstreamConnection? in
                connection.park(server)
                return server
            }
            .flatMapError { error in
                let message = (error as? ServerConnector.Failure)?.description ?? describe(error)
                connection.eagerFailure = (key, message)
                return eventLoop.makeSucceededFuture(nil)
            }
    }

    /// The protocol to select for the client: what the server selected if the client offered it,
    /// else our own preference among the client's offers.
    static func chooseALPN(clientOffers: [String], server: UpstreamConnection?, http2: Bool) -> String? {
        if let server {
            if let chosen = server.server.tls?.alpn, clientOffers.contains(chosen) {
                return chosen
            }
            return clientOffers.contains("http/1.1") ? "http/1.1" : nil
        }
        if http2 && clientOffers.contains("h2") { return "h2" }
        if clientOffers.contains("http/1.1") { return "http/1.1" }
        return nil
    }

    /// The names our certificate must carry: the SNI, the host the client asked for, and (upstream
    /// certificate sniffing) the server certificate's common name and subject alternative names.
    static func leafRequest(hello: ClientHello, connection: ClientConnectionContext, server: UpstreamConnection?) -> LeafRequest {
        leafRequest(hello: hello, connection: connection, serverCertificate: server?.server.tls?.certificateChain.first)
    }

    /// The same, from the server certificate's DER (if any).
    static func leafRequest(hello: ClientHello, connection: ClientConnectionContext, serverCertificate: [UInt8]?) -> LeafRequest {
        var dnsNames: [String] = []
        var ipAddresses: [String] = []
        func add(_ name: String) {
            if isIPAddress(name) {
                if !ipAddresses.contains(name) { ipAddresses.append(name) }
            } else if !dnsNames.contains(name) {
                dnsNames.append(name)
            }
        }
        var commonName = hello.serverName
        if let sni = hello.serverName { add(sni) }
        if let target = connection.originalServerAddress {
            add(target.host)
            if commonName == nil { commonName = target.host }
        }
        var organization: String?
        if let der = serverCertificate, let certificate = try? Certificate(derEncoded: der) {
            if let cn = certificate.subject.commonName {
                add(cn)
                if commonName == nil { commonName = cn }
            }
            organization = certificate.subject.organizationName
            if let sans = try? certificate.extensions.subjectAlternativeNames {
                for san in sans {
                    switch san {
                    case .dnsName(let name): add(name)
                    case .ipAddress(let bytes): if let ip = ipString(Array(bytes.bytes)) { add(ip) }
                    default: break
                    }
                }
            }
        }
        return LeafRequest(commonName: commonName, dnsNames: dnsNames, ipAddresses: ipAddresses, organization: organization)
    }

    private static func ipString(_ bytes: [UInt8]) -> String? {
        if bytes.count == 4 {
            return bytes.map(String.init).joined(separator: ".")
        }
        if bytes.count == 16 {
            let groups = stride(from: 0, to: 16, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
            return (try? SocketAddress(ipAddress: groups.joined(separator: ":"), port: 0))?.ipAddress
        }
        return nil
    }

    /// Runs `body` as a task and completes a future with its result on `eventLoop`.
    static func run<T: Sendable>(on eventLoop: any EventLoop, _ body: @escaping @Sendable () async throws -> T) -> EventLoopFuture<T> {
        let promise = eventLoop.makePromise(of: T.self)
        Task.immediate {
            do {
                promise.succeed(try await body())
            } catch {
                promise.fail(error)
            }
        }
        return promise.futureResult
    }
}

extension DistinguishedName {
    var commonName: String? { attribute(ASN1ObjectIdentifier.RDNAttributeType.commonName) }
    var organizationName: String? { attribute(ASN1ObjectIdentifier.RDNAttributeType.organizationName) }

    private func attribute(_ type: ASN1ObjectIdentifier) -> String? {
        for rdn in self {
            for attribute in rdn where attribute.type == type {
                return attribute.value.description
            }
        }
        return nil
    }
}

/// Waits for the client handshake to finish, records the TLS details on the connection, and puts
/// HTTP/1, HTTP/2 or a TCP relay behind TLS (`PipelineSetup.configureAfterClientTLS`). A failed
/// handshake is logged with the host, as mitmproxy does, since it usually means the client does not
/// trust our CA.
final class ClientTLSHandshakeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let connection: ClientConnectionContext
    private let hello: ClientHello
    /// The TLS server connection opened for a TCP flow, if this is one (`connectEagerlyForTCP`).
    private let tcpServer: EventLoopFuture<(any Channel, ServerConnection)>?
    private var done = false

    init(connection: ClientConnectionContext, hello: ClientHello, tcpServer: EventLoopFuture<(any Channel, ServerConnection)>? = nil) {
        self.connection = connection
        self.hello = hello
        self.tcpServer = tcpServer
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let event = event as? TLSUserEvent, case .handshakeCompleted(let alpn) = event else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        done = true
        let version = try? context.pipeline.syncOperations.nioSSL_tlsVersion()
        connection.client.tls = TLSInfo(
            sni: hello.serverName,
            alpn: alpn,
            alpnOffers: hello.alpnProtocols,
            tlsVersion: version.flatMap { $0 }.map(describe(tlsVersion:))
        )
        connection.client.timestampTLSSetup = now()
        let data = TLSHookData(side: .client, client: connection.client)
        connection.services.notify(.tlsEstablishedClient) { await $0.tls(.tlsEstablishedClient, data) }
        PipelineSetup.configureAfterClientTLS(context: context, connection: connection, alpn: alpn, tcpServer: tcpServer)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard !done else {
            context.fireErrorCaught(error)
            return
        }
        done = true
        let host = hello.serverName ?? connection.originalServerAddress?.host ?? "unknown host"
        let reason = describe(tlsError: error)
        connection.services.logger.info(
            "Client TLS handshake failed. The client may not trust the proxy's certificate for \(host) (\(reason))",
            metadata: ["client": "\(connection.client.peername)"]
        )
        let data = TLSHookData(side: .client, client: connection.client, error: reason)
        connection.services.notify(.tlsFailedClient) { await $0.tls(.tlsFailedClient, data) }
        context.close(promise: nil)
    }
}
