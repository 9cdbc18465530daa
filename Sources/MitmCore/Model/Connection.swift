import Foundation

/// A network address as mitmproxy shows it: host and port.
public struct Address: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `host:port`, with IPv6 literals in brackets.
    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// Identifies one connection for the lifetime of the process.
public struct ConnectionID: Sendable, Hashable, CustomStringConvertible {
    public let uuid: UUID
    public init() { self.uuid = UUID.fast() }
    /// An existing connection's id, e.g. one read back from a flow file.
    public init(uuid: UUID) { self.uuid = uuid }
    public var description: String { uuid.uuidString.lowercased() }
}

/// What both sides of a proxied exchange share: addresses, TLS state and timestamps
/// (mitmproxy's `connection.Connection`).
public struct TLSInfo: Sendable, Hashable {
    /// The SNI the client sent (client side) or we sent (server side).
    public var sni: String?
    /// The protocol chosen by ALPN, if any.
    public var alpn: String?
    /// ALPN protocols offered in the ClientHello.
    public var alpnOffers: [String]
    public var tlsVersion: String?
    public var cipher: String?
    /// The peer's certificate chain, DER, leaf first (server side only).
    public var certificateChain: [[UInt8]]

    public init(
        sni: String? = nil,
        alpn: String? = nil,
        alpnOffers: [String] = [],
        tlsVersion: String? = nil,
        cipher: String? = nil,
        certificateChain: [[UInt8]] = []
    ) {
        self.sni = sni
        self.alpn = alpn
        self.alpnOffers = alpnOffers
        self.tlsVersion = tlsVersion
        self.cipher = cipher
        self.certificateChain = certificateChain
    }
}

/// The connection between the client and us.
public struct ClientConnection: Sendable, Hashable {
    public var id: ConnectionID
    /// The client's address.
    public var peername: Address
    /// Our listening address that it reached.
    public var sockname: Address
    /// Present once TLS with the client has been established.
    public var tls: TLSInfo?
    /// Set when a TLS handshake was attempted (even if it failed).
    public var tlsAttempted: Bool
    public var timestampStart: Double
    public var timestampTLSSetup: Double?
    public var timestampEnd: Double?
    /// The proxy mode the connection arrived in, as its spec (`regular`, `reverse:https://…`).
    public var proxyMode: String
    public var error: String?

    public init(peername: Address, sockname: Address, proxyMode: String, timestampStart: Double = now()) {
        self.id = ConnectionID()
        self.peername = peername
        self.sockname = sockname
        self.tls = nil
        self.tlsAttempted = false
        self.timestampStart = timestampStart
        self.proxyMode = proxyMode
    }
}

/// The connection between us and the server.
public struct ServerConnection: Sendable, Hashable {
    public var id: ConnectionID
    /// Where we connect to (host as given, not resolved).
    public var address: Address
    /// The resolved address we actually reached.
    public var peername: Address?
    public var sockname: Address?
    /// Whether we speak TLS to the server.
    public var usesTLS: Bool
    /// The SNI to send (defaults to the address host).
    public var sni: String?
    /// The ALPN protocols to offer.
    public var alpnOffers: [String]
    public var tls: TLSInfo?
    public var timestampStart: Double?
    public var timestampTCPSetup: Double?
    public var timestampTLSSetup: Double?
    public var timestampEnd: Double?
    public var error: String?

    public init(address: Address, usesTLS: Bool, sni: String? = nil, alpnOffers: [String] = []) {
        self.id = ConnectionID()
        self.address = address
        self.usesTLS = usesTLS
        self.sni = sni
        self.alpnOffers = alpnOffers
    }
}

/// Seconds since the epoch, as every mitmproxy timestamp.
@inlinable
public func now() -> Double {
    Date().timeIntervalSince1970
}
