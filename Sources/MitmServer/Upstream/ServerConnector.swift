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
        eventLoop: any EventLoop,
        preconnected: (channel: any Channel, opened: Double, connected: Double)? = nil
    ) -> EventLoopFuture<UpstreamConnection> {
        var initial = ServerConnection(address: key.address, usesTLS: key.usesTLS, sni: key.sni, alpnOffers: alpnOffers)
        initial.timestampStart = preconnected?.opened ?? now()
        let connectData = ServerConnectionHookData(client: client, server: initial)
        let opening = initial
        services.notify(.serverConnect) { addons in
            var data = connectData
            await addons.serverConnect(&data)
        }
        let options = services.options
        let address = key.address
        // Through an HTTP upstream proxy, plain HTTP goes to the proxy itself in absolute form;
        // everything else is tunnelled to the server (CONNECT, or SOCKS5).
        let absoluteForm = key.via.map { $0.scheme != .socks5 && !key.usesTLS } ?? false
        let connecting: EventLoopFuture<any Channel>
        if let preconnected {
            connecting = eventLoop.makeSucceededFuture(preconnected.channel)
        } else if absoluteForm, let via = key.via {
            connecting = openToProxy(via, services: services, eventLoop: eventLoop)
        } else {
            connecting = openTunnel(to: address, via: key.via, services: services, eventLoop: eventLoop)
        }
        return connecting
            .flatMapErrorThrowing { error in
                throw Failure(description: "Error connecting to \(address): \(describe(error))")
            }
            .flatMap { channel -> EventLoopFuture<UpstreamConnection> in
                var server = opening
                server.timestampTCPSetup = preconnected?.connected ?? now()
                server.peername = channel.remoteAddress.flatMap(Address.init)
                server.sockname = channel.localAddress.flatMap(Address.init)
                let ready: EventLoopFuture<String?>
                if key.usesTLS {
                    let data = TLSHookData(side: .server, client: client, server: server)
                    services.notify(.tlsStartServer) { await $0.tls(.tlsStartServer, data) }
                    ready = startTLS(on: channel, key: key, alpnOffers: alpnOffers, services: services)
                        .flatMapError { [server] error in
                            var failed = server
                            failed.error = "\(error)"
                            let data = TLSHookData(side: .server, client: client, server: failed, error: "\(error)")
                            services.notify(.tlsFailedServer) { await $0.tls(.tlsFailedServer, data) }
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
                        server.tls = TLSInfo.afterHandshake(on: channel, sni: key.sni, alpn: alpn, alpnOffers: alpnOffers)
                        let data = TLSHookData(side: .server, client: client, server: server)
                        services.notify(.tlsEstablishedServer) { await $0.tls(.tlsEstablishedServer, data) }
                    }
                    let kind = try configureHTTP(on: channel, http2: alpn == "h2", options: options)
                    let connection = UpstreamConnection(key: key, channel: channel, kind: kind, server: server)
                    connection.usesAbsoluteForm = absoluteForm
                    return connection
                }
                .flatMapErrorThrowing { error in
                    channel.close(promise: nil)
                    throw error
                }
            }
    }

    /// A connection that leads to `target`: straight there, or through `via` (a CONNECT tunnel
    /// through an HTTP(S) proxy, or a SOCKS5 tunnel), with the handshakes done and gone.
    static func openTunnel(
        to target: Address,
        via: ProxyMode.UpstreamProxy?,
        services: ProxyServices,
        eventLoop: any EventLoop
    ) -> EventLoopFuture<any Channel> {
        guard let via else { return openTCP(to: target, options: services.options, eventLoop: eventLoop) }
        let options = services.options
        return openToProxy(via, services: services, eventLoop: eventLoop).flatMap { channel in
            let promise = eventLoop.makePromise(of: Void.self)
            do {
                let handler: any ChannelHandler =
                    via.scheme == .socks5
                    ? SOCKS5TunnelHandler(target: target, proxy: via.address, credentials: options.upstreamCredentials, promise: promise)
                    : HTTPConnectTunnelHandler(
                        target: target, proxy: via.address, authorization: options.upstreamProxyAuthorization, promise: promise
                    )
                try channel.pipeline.syncOperations.addHandler(handler)
            } catch {
                promise.fail(error)
            }
            return promise.futureResult.map { channel }.flatMapErrorThrowing { error in
                channel.close(promise: nil)
                throw error
            }
        }
    }

    /// A connection to the upstream proxy itself, with TLS for an `https://` proxy.
    static func openToProxy(_ via: ProxyMode.UpstreamProxy, services: ProxyServices, eventLoop: any EventLoop) -> EventLoopFuture<any Channel> {
        let opening = openTCP(to: via.address, options: services.options, eventLoop: eventLoop).flatMapErrorThrowing { error in
            throw Failure(description: "Error connecting to upstream proxy \(via.address): \(describe(error))")
        }
        guard via.scheme == .https else { return opening }
        return opening.flatMap { channel in
            let promise = eventLoop.makePromise(of: String?.self)
            do {
                let context = try services.clientContext(alpn: ["http/1.1"])
                let sni = isIPAddress(via.address.host) ? nil : via.address.host
                try channel.pipeline.syncOperations.addHandlers([
                    try NIOSSLClientHandler(context: context, serverHostname: sni), TLSHandshakeWaiter(promise: promise),
                ])
            } catch {
                promise.fail(error)
            }
            return promise.futureResult.map { _ in channel }.flatMapErrorThrowing { error in
                channel.close(promise: nil)
                throw Failure(description: "TLS handshake failed with upstream proxy \(via.address): \(describe(tlsError: error))")
            }
        }
    }

    /// A plain TCP connection to `address` on `eventLoop`, with the proxy's connect timeout.
    static func openTCP(to address: Address, options: ProxyOptions, eventLoop: any EventLoop) -> EventLoopFuture<any Channel> {
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(.milliseconds(Int64(options.connectTimeout * 1000)))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
        // An IP literal needs no resolver (which would cost a thread hop per connection).
        if let ip = try? SocketAddress(ipAddress: address.host, port: address.port) {
            return bootstrap.connect(to: ip)
        }
        return bootstrap.connect(host: address.host, port: address.port)
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

extension TLSInfo {
    /// What a finished handshake with a server on `channel` gave: its leaf certificate, the TLS
    /// version and the ALPN choice.
    static func afterHandshake(on channel: any Channel, sni: String?, alpn: String?, alpnOffers: [String]) -> TLSInfo {
        let chain = (try? channel.pipeline.syncOperations.nioSSL_peerCertificate())
            .flatMap { $0 }
            .flatMap { try? $0.toDERBytes() }
        let version = try? channel.pipeline.syncOperations.nioSSL_tlsVersion()
        return TLSInfo(
            sni: sni,
            alpn: alpn,
            alpnOffers: alpnOffers,
            tlsVersion: version.flatMap { $0 }.map(describe(tlsVersion:)),
            certificateChain: chain.map { [$0] } ?? []
        )
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
