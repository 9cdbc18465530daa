import MitmAddons
import MitmCore
import NIOCore
import NIOHTTP1

/// Everything one client connection's handlers share: the connection's model, its mode and tunnel,
/// and the server connections it opened (its pool). HTTP/2 streams of the connection share it too.
///
/// Confined to `eventLoop`: every handler of the connection, its HTTP/2 streams and its server
/// connections run there, and nothing else touches it. That confinement is what `@unchecked
/// Sendable` relies on here.
final class ClientConnectionContext: @unchecked Sendable {
    let services: ProxyServices
    let eventLoop: any EventLoop
    let mode: ProxyMode
    var client: ClientConnection
    /// The server the client's connection is for, once known: the CONNECT target (regular and
    /// upstream mode), the SOCKS5 target, or the original destination (transparent mode).
    var tunnelTarget: Address?
    /// Set once the client proved its credentials (`proxyauth`): at its first request, or in the
    /// SOCKS5 handshake.
    var isAuthenticated = false

    private var idleHTTP1: [ServerKey: [UpstreamConnection]] = [:]
    private var http2: [ServerKey: UpstreamConnection] = [:]
    private var open: [ObjectIdentifier: UpstreamConnection] = [:]
    private var isClosed = false
    /// A connection opened before the client said what it wants (SOCKS5's eager connect), kept for
    /// the first use of that address.
    private var preconnected: (address: Address, channel: any Channel, opened: Double, connected: Double)?
    /// Why the connection opened ahead of the first request (for the server's certificate) failed:
    /// that request gets the same answer instead of a second, identical attempt.
    var eagerFailure: (key: ServerKey, message: String)?

    init(services: ProxyServices, eventLoop: any EventLoop, mode: ProxyMode, client: ClientConnection) {
        self.services = services
        self.eventLoop = eventLoop
        self.mode = mode
        self.client = client
    }

    var options: ProxyOptions { services.options }

    // MARK: - Requests

    /// The Host header reverse mode sends, worked out once per connection.
    private lazy var reverseHostHeader: String = {
        guard case .reverse(let target) = mode else { return "" }
        return HTTPRequest(method: "GET", scheme: target.scheme, host: target.address.host, port: target.address.port, path: "/")
            .hostHeaderValue
    }()

    struct RequestError: Error {
        var message: String
    }

    /// Turns a request head as the client sent it into the flow's request, resolving which server it
    /// is for from the mode, the tunnel and the request target.
    func makeRequest(_ head: HTTPRequestHead, isHTTP2: Bool) throws(RequestError) -> HTTPRequest {
        let version = isHTTP2 ? "HTTP/2.0" : head.version.mitmproxyString
        let method = head.method.rawValue
        let uri = head.uri
        var request = HTTPRequest(
            method: method,
            scheme: client.tls != nil ? "https" : "http",
            host: "",
            port: 0,
            path: uri,
            httpVersion: version,
            headers: Headers(head.headers)
        )
        if method == "CONNECT" {
            guard let authority = Authority(parsing: uri), let port = authority.port else {
                throw RequestError(message: "Invalid CONNECT target '\(uri)': expected host:port")
            }
            request.host = authority.host
            request.port = port
            request.authority = uri
            request.path = ""
            return request
        }
        if uri.utf8.first != UInt8(ascii: "/"), let range = uri.range(of: "://") {
            // Absolute form: scheme://authority/path
            let scheme = uri[..<range.lowerBound].lowercased()
            guard scheme == "http" || scheme == "https" else {
                throw RequestError(message: "Invalid request scheme '\(scheme)' in '\(uri)'")
            }
            let rest = uri[range.upperBound...]
            let pathStart = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
            let authorityText = String(rest[..<pathStart])
            guard let authority = Authority(parsing: authorityText) else {
                throw RequestError(message: "Invalid host in request target '\(uri)'")
            }
            request.scheme = scheme
            request.host = authority.host
            request.port = authority.port ?? HTTPRequest.defaultPort(for: scheme)
            request.authority = authorityText
            let path = String(rest[pathStart...])
            request.path = path.isEmpty ? "/" : (path.hasPrefix("?") ? "/" + path : path)
        } else {
            guard uri.hasPrefix("/") || (uri == "*" && method == "OPTIONS") else {
                throw RequestError(message: "Invalid request target '\(uri)'")
            }
            switch mode {
            case .regular, .upstream, .transparent, .socks5:
                if let tunnelTarget {
                    request.host = tunnelTarget.host
                    request.port = tunnelTarget.port
                } else {
                    throw RequestError(
                        message: "Invalid HTTP request form (expected authority or absolute form, got origin form '\(uri)'): "
                            + "a client of an explicit proxy must send the full URL"
                    )
                }
            case .reverse:
                break
            }
        }
        if case .reverse(let target) = mode {
            request.scheme = target.scheme
            request.host = target.address.host
            request.port = target.address.port
            if !options.keepHostHeader {
                request.headers["host"] = reverseHostHeader
            }
        }
        return request
    }

    // MARK: - Server connections

    /// The SNI to send for `request`: the client's own SNI while the request goes where the client
    /// meant it to, else the request's host.
    func serverKey(for request: HTTPRequest) -> ServerKey {
        let usesTLS = request.scheme == "https"
        var sni: String? = nil
        if usesTLS {
            sni = request.host
            if let clientSNI = client.tls?.sni, request.host == originalServerAddress?.host {
                sni = clientSNI
            }
        }
        return ServerKey(address: Address(host: request.host, port: request.port), usesTLS: usesTLS, sni: sni, via: upstreamProxy)
    }

    /// The server the client's connection is for before any request is seen, if the mode says.
    var originalServerAddress: Address? {
        switch mode {
        case .regular, .upstream, .transparent, .socks5: tunnelTarget
        case .reverse(let target): target.address
        }
    }

    /// The proxy every server connection goes through, in upstream mode.
    var upstreamProxy: ProxyMode.UpstreamProxy? {
        if case .upstream(let proxy) = mode { return proxy }
        return nil
    }

    /// The ALPN protocols to offer a server: the client's own offers when it spoke TLS (so both sides
    /// speak the same HTTP version where they can), our preference when it did not.
    func upstreamALPNOffers(clientOffers: [String]?) -> [String] {
        if let clientOffers {
            return options.http2 ? clientOffers : clientOffers.filter { $0 != "h2" }
        }
        return options.http2 ? ["h2", "http/1.1"] : ["http/1.1"]
    }

    /// Hands out a stream to the server for one exchange, reusing an idle or multiplexed connection
    /// when there is one.
    func acquireStream(for key: ServerKey, scheme: String) -> EventLoopFuture<(UpstreamConnection, UpstreamStreamHandler)> {
        if let connection = http2[key], connection.isUsable {
            return connection.openStream(scheme: scheme).map { (connection, $0) }
        }
        if let (connection, handler) = idleHTTP1Stream(for: key) {
            return eventLoop.makeSucceededFuture((connection, handler))
        }
        if let failure = eagerFailure, failure.key == key {
            eagerFailure = nil
            return eventLoop.makeFailedFuture(ServerConnector.Failure(description: failure.message))
        }
        let offers = upstreamALPNOffers(clientOffers: client.tls.map { $0.alpnOffers })
        return connect(key: key, alpnOffers: offers).flatMap { connection in
            connection.openStream(scheme: scheme).map { (connection, $0) }
        }
    }

    /// A stream on an HTTP/1 connection to `key` (idle or new, offering only `http/1.1` over TLS),
    /// for exchanges that cannot go over HTTP/2: a WebSocket upgrade.
    func acquireHTTP1Stream(for key: ServerKey) -> EventLoopFuture<(UpstreamConnection, UpstreamStreamHandler)> {
        if let (connection, handler) = idleHTTP1Stream(for: key) {
            return eventLoop.makeSucceededFuture((connection, handler))
        }
        if let failure = eagerFailure, failure.key == key {
            eagerFailure = nil
            return eventLoop.makeFailedFuture(ServerConnector.Failure(description: failure.message))
        }
        return connect(key: key, alpnOffers: key.usesTLS ? ["http/1.1"] : []).flatMap { connection in
            connection.openStream(scheme: key.usesTLS ? "https" : "http").map { (connection, $0) }
        }
    }

    /// An idle HTTP/1 connection to `key`, taken out of the pool, if it has a usable one.
    func idleHTTP1Stream(for key: ServerKey) -> (UpstreamConnection, UpstreamStreamHandler)? {
        while var idle = idleHTTP1[key], let connection = idle.popLast() {
            idleHTTP1[key] = idle.isEmpty ? nil : idle
            if connection.isUsable, case .http1(let handler) = connection.kind {
                return (connection, handler)
            }
            connection.channel.close(promise: nil)
        }
        return nil
    }

    /// Connects to a server and keeps the connection in this client's pool.
    func connect(key: ServerKey, alpnOffers: [String]) -> EventLoopFuture<UpstreamConnection> {
        let client = self.client
        let services = self.services
        return ServerConnector.connect(
            key: key,
            alpnOffers: alpnOffers,
            client: client,
            services: services,
            eventLoop: eventLoop,
            preconnected: takePreconnected(for: key.address)
        ).flatMapThrowing { connection in
            guard !self.isClosed else {
                connection.channel.close(promise: nil)
                throw ChannelError.ioOnClosedChannel
            }
            self.adopt(connection)
            return connection
        }
    }

    private func adopt(_ connection: UpstreamConnection) {
        let id = ObjectIdentifier(connection)
        open[id] = connection
        if connection.isHTTP2 {
            http2[connection.key] = connection
        }
        let data = ServerConnectionHookData(client: client, server: connection.server)
        services.notify(.serverConnected) { await $0.serverConnected(data) }
        connection.channel.closeFuture.whenComplete { _ in
            self.open[id] = nil
            if self.http2[connection.key] === connection {
                self.http2[connection.key] = nil
            }
            self.idleHTTP1[connection.key]?.removeAll { $0 === connection }
            var server = connection.server
            server.timestampEnd = now()
            let data = ServerConnectionHookData(client: self.client, server: server)
            self.services.notify(.serverDisconnected) { await $0.serverDisconnected(data) }
        }
    }

    /// Returns an HTTP/1 connection after an exchange: kept for the next one when it is clean.
    func release(_ connection: UpstreamConnection, reusable: Bool) {
        guard case .http1 = connection.kind else { return }
        if reusable && connection.isUsable && !isClosed {
            idleHTTP1[connection.key, default: []].append(connection)
        } else {
            connection.channel.close(promise: nil)
        }
    }

    /// Parks a connection opened ahead of any request (to sniff the server's certificate) in the pool.
    func park(_ connection: UpstreamConnection) {
        release(connection, reusable: true)
    }

    /// Opens a TCP connection to `address` now, to be used by the first server connection to it
    /// (or passed through). Fails as connecting fails.
    func preconnect(to address: Address) -> EventLoopFuture<Void> {
        let opened = now()
        return ServerConnector.openTCP(to: address, options: options, eventLoop: eventLoop).flatMapThrowing { channel in
            guard !self.isClosed else {
                channel.close(promise: nil)
                throw ChannelError.ioOnClosedChannel
            }
            self.preconnected?.channel.close(promise: nil)
            self.preconnected = (address, channel, opened, now())
        }
    }

    /// The connection `preconnect(to:)` opened to `address`, if it is still unused and open.
    func takePreconnected(for address: Address) -> (channel: any Channel, opened: Double, connected: Double)? {
        guard let kept = preconnected, kept.address == address else { return nil }
        preconnected = nil
        guard kept.channel.isActive else { return nil }
        return (kept.channel, kept.opened, kept.connected)
    }

    /// A connection that failed before any flow existed (a SOCKS5 target that refused): recorded as a
    /// failed TCP flow, so the dump shows it and `-w` keeps it, as nothing may be lost silently.
    func recordFailedConnection(to address: Address, message: String) {
        var server = ServerConnection(address: address, usesTLS: false)
        server.timestampStart = now()
        server.error = message
        var failed = TCPFlow(clientConnection: client, serverConnection: server)
        failed.error = FlowError(message)
        let flow = failed
        services.notify(.tcpStart, .tcpError) { addons in
            var flow = flow
            await addons.run(.start, on: &flow)
            await addons.run(.error, on: &flow)
        }
    }

    /// The client went away: its server connections go too.
    func close() {
        preconnected?.channel.close(promise: nil)
        preconnected = nil
        isClosed = true
        for connection in open.values {
            connection.channel.close(promise: nil)
        }
        idleHTTP1.removeAll()
        http2.removeAll()
    }
}

extension ProxyMode {
    /// Whether clients of this mode open tunnels with CONNECT (they are explicit HTTP proxies).
    var acceptsCONNECT: Bool {
        switch self {
        case .regular, .upstream: true
        case .transparent, .socks5, .reverse: false
        }
    }
}
