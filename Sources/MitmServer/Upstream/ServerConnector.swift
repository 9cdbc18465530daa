import Foundation
import MitmAddons
import MitmCore
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL
import NIOTLS

/// Opens connections to servers on the client connection's own event loop (so both sides of a
/// connection share one thread), with TLS and ALPN as asked, and sets up HTTP/1 or HTTP/2 by what
/// the server chose.
enum ServerConnector {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func connect(
        key: ServerKey,
        alpnOffers: [String],
        client: ClientConnection,
        services: ProxyServices,
        eventLoop: any EventLoop
    ) -> EventLoopFuture<UpstreamConnection> {
        var initial = ServerConnection(address: key.address, usesTLS: key.usesTLS, sni: key.sni, alpnOffers: alpnOffers)
        initial.timestampStart = now()
        let connectData = ServerConnectionHookData(client: client, server: initial)
        let opening = initial
        services.notify { addons in
            var data = connectData
            await addons.serverConnect(&data)
        }
        let options = services.options
        let address = key.address
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(.milliseconds(Int64(options.connectTimeout * 1000)))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
        // An IP literal needs no resolver (which would cost a thread hop per connection).
        let connecting: EventLoopFuture<any Channel>
        if let ip = try? SocketAddress(ipAddress: address.host, port: address.port) {
            connecting = bootstrap.connect(to: ip)
        } else {
            connecting = bootstrap.connect(host: address.host, port: address.port)
        }
        return connecting
            .flatMapErrorThrowing { error in
                throw Failure(description: "Error connecting to \(address): \(describe(error))")
            }
            .flatMap { channel -> EventLoopFuture<UpstreamConnection> in
                var server = opening
                server.timestampTCPSetup = now()
                server.peername = channel.remoteAddress.flatMap(Address.init)
                server.sockname = channel.localAddress.flatMap(Address.init)
                let ready: EventLoopFuture<String?>
                if key.usesTLS {
                    let data = TLSHookData(side: .server, client: client, server: server)
                    services.notify { await $0.tls(.tlsStartServer, data) }
                    ready = startTLS(on: channel, key: key, alpnOffers: alpnOffers, services: services)
                        .flatMapError { [server] error in
                            var failed = server
                            failed.error = "\(error)"
                            let data = TLSHookData(side: .server, client: client, server: failed, error: "\(error)")
                            services.notify { await $0.tls(.tlsFailedServer, data) }
                            return eventLoop.makeFailedFuture(error)
                        }
                } else {
                    ready = eventLoop.makeSucceededFuture(nil)
                }
                let connected = server
                return ready.flatMapThrowing { alpn -> UpstreamConnection in
                    var server = connected
                    if key.usesTLS {
                        server.timestampTLSSetup = now()
                        let chain = (try? channel.pipeline.syncOperations.nioSSL_peerCertificate())
                            .flatMap { $0 }
                            .flatMap { try? $0.toDERBytes() }
                        let version = try? channel.pipeline.syncOperations.nioSSL_tlsVersion()
                        server.tls = TLSInfo(
                            sni: key.sni,
                            alpn: alpn,
                            alpnOffers: alpnOffers,
                            tlsVersion: version.flatMap { $0 }.map(describe(tlsVersion:)),
                            certificateChain: chain.map { [$0] } ?? []
                        )
                        let data = TLSHookData(side: .server, client: client, server: server)
                        services.notify { await $0.tls(.tlsEstablishedServer, data) }
                    }
                    let kind = try configureHTTP(on: channel, http2: alpn == "h2", options: options)
                    return UpstreamConnection(key: key, channel: channel, kind: kind, server: server)
                }
                .flatMapErrorThrowing { error in
                    channel.close(promise: nil)
                    throw error
                }
            }
    }

    private static func startTLS(
        on channel: any Channel,
        key: ServerKey,
        alpnOffers: [String],
        services: ProxyServices
    ) -> EventLoopFuture<String?> {
        let promise = channel.eventLoop.makePromise(of: String?.self)
        do {
            let context = try services.clientContext(alpn: alpnOffers)
            // SNI cannot carry an IP address (RFC 6066 §3).
            let sni = key.sni.flatMap { isIPAddress($0) ? nil : $0 }
            let handler = try NIOSSLClientHandler(context: context, serverHostname: sni)
            try channel.pipeline.syncOperations.addHandlers([
                handler, TLSHandshakeWaiter(promise: promise),
            ])
        } catch {
            promise.fail(error)
        }
        let host = key.sni ?? key.address.host
        return promise.futureResult.flatMapErrorThrowing { error in
            throw Failure(description: "TLS handshake failed with server \(host): \(describe(tlsError: error))")
        }
    }

    private static func configureHTTP(on channel: any Channel, http2: Bool, options: ProxyOptions) throws
        -> UpstreamConnection.Kind
    {
        let sync = channel.pipeline.syncOperations
        if http2 {
            // Server push is refused: a pushed stream is closed at once.
            let multiplexer = try sync.configureHTTP2Pipeline(
                mode: .client,
                connectionConfiguration: .init(),
                streamConfiguration: .init(),
                inboundStreamInitializer: { stream in stream.close() }
            )
            return .http2(multiplexer)
        }
        var encoderConfiguration = HTTPRequestEncoder.Configuration()
        encoderConfiguration.automaticallySetFramingHeaders = false
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = max(options.headerSizeLimit, 256 * 1024)
        limits.maxHeaderFieldSize = limits.maxHeaderListSize
        let handler = UpstreamStreamHandler()
        try sync.addHandlers([
            HTTPRequestEncoder(configuration: encoderConfiguration),
            ByteToMessageHandler(
                HTTPResponseDecoder(
                    // After a 101, the bytes behind it belong to the new protocol (WebSocket frames):
                    // they go on to the handlers that replace this decoder.
                    leftOverBytesStrategy: .forwardBytes,
                    informationalResponseStrategy: .drop,
                    limitConfiguration: limits
                )
            ),
            handler,
        ])
        return .http1(handler)
    }
}

/// Completes a promise with the negotiated ALPN protocol once the TLS handshake is done, then leaves
/// the pipeline.
final class TLSHandshakeWaiter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    private var promise: EventLoopPromise<String?>?

    init(promise: EventLoopPromise<String?>) {
        self.promise = promise
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted(let alpn) = event {
            promise?.succeed(alpn)
            promise = nil
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise?.fail(error)
        promise = nil
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise?.fail(ChannelError.eof)
        promise = nil
        context.fireChannelInactive()
    }
}

extension Address {
    init?(_ address: SocketAddress) {
        guard let host = address.ipAddress, let port = address.port else { return nil }
        self.init(host: host, port: port)
    }
}

func isIPAddress(_ host: String) -> Bool {
    (try? SocketAddress(ipAddress: host, port: 0)) != nil
}

func describe(tlsVersion: TLSVersion) -> String {
    switch tlsVersion {
    case .tlsv1: "TLSv1"
    case .tlsv11: "TLSv1.1"
    case .tlsv12: "TLSv1.2"
    case .tlsv13: "TLSv1.3"
    }
}

/// TLS errors as a person reads them: BoringSSL's reason ("certificate verify failed") rather than
/// the whole error stack.
func describe(tlsError error: any Error) -> String {
    if let error = error as? NIOSSLError {
        switch error {
        case .handshakeFailed(let inner):
            return openSSLReason(String(describing: inner)) ?? "\(inner)"
        case .uncleanShutdown:
            return "connection closed during handshake"
        default:
            return "\(error)"
        }
    }
    if let error = error as? BoringSSLError {
        return openSSLReason(String(describing: error)) ?? "\(error)"
    }
    if let error = error as? ChannelError, case .eof = error {
        return "connection closed during handshake"
    }
    return describe(error)
}

/// Pulls the reason out of an OpenSSL-style error string, `…:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED at …`
/// becomes `certificate verify failed`.
private func openSSLReason(_ text: String) -> String? {
    guard let marker = text.range(of: "OPENSSL_internal:") else { return nil }
    let rest = text[marker.upperBound...]
    let end = rest.firstIndex(where: { $0 == " " || $0 == "]" || $0 == ")" }) ?? rest.endIndex
    let reason = rest[..<end].replacingOccurrences(of: "_", with: " ").lowercased()
    return reason.isEmpty ? nil : reason
}
