import NIOCore

/// SOCKS protocol version 5 (RFC 1928) with username/password authentication (RFC 1929), both
/// directions, sans-I/O: ``SOCKS5ServerHandshake`` is mitmproxy's `socks5` mode (the client talks
/// SOCKS to us), ``SOCKS5ClientHandshake`` sends our own outgoing connections through an upstream
/// SOCKS5 proxy. Both take bytes as they arrive, split anywhere, and answer with actions; neither
/// touches a socket.
///
/// The messages, as RFC 1928 §3–§6 and RFC 1929 §2 draw them (sizes in bytes):
///
/// ```
/// greeting        VER=5 | NMETHODS (1) | METHODS (1..255)
/// method reply    VER=5 | METHOD (1)          00 no auth, 02 username/password, FF none acceptable
/// auth request    VER=1 | ULEN | UNAME (1..255) | PLEN | PASSWD (1..255)
/// auth reply      VER=1 | STATUS (1)          00 success, anything else failure
/// request         VER=5 | CMD | RSV=0 | ATYP | DST.ADDR | DST.PORT (2)
/// reply           VER=5 | REP | RSV=0 | ATYP | BND.ADDR | BND.PORT (2)
///                 ATYP 01 IPv4 (4), 03 domain name (length byte + name), 04 IPv6 (16)
/// ```
public enum SOCKS5 {
    /// The protocol version byte of every non-auth message.
    public static let version: UInt8 = 0x05
    /// The version byte of the RFC 1929 subnegotiation, which is not the SOCKS version.
    public static let authVersion: UInt8 = 0x01

    /// Authentication method codes (RFC 1928 §3).
    public enum Method {
        public static let noAuthentication: UInt8 = 0x00
        public static let usernamePassword: UInt8 = 0x02
        public static let noAcceptableMethods: UInt8 = 0xFF
    }

    /// Request commands (RFC 1928 §4). Only CONNECT is supported, as in mitmproxy.
    public enum Command {
        public static let connect: UInt8 = 0x01
        public static let bind: UInt8 = 0x02
        public static let udpAssociate: UInt8 = 0x03
    }

    /// Address types (RFC 1928 §5).
    public enum AddressType {
        public static let ipv4: UInt8 = 0x01
        public static let domainName: UInt8 = 0x03
        public static let ipv6: UInt8 = 0x04
    }

    /// The REP field of a reply (RFC 1928 §6).
    public struct ReplyCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }

        public static let succeeded = ReplyCode(rawValue: 0x00)
        public static let generalFailure = ReplyCode(rawValue: 0x01)
        public static let connectionNotAllowed = ReplyCode(rawValue: 0x02)
        public static let networkUnreachable = ReplyCode(rawValue: 0x03)
        public static let hostUnreachable = ReplyCode(rawValue: 0x04)
        public static let connectionRefused = ReplyCode(rawValue: 0x05)
        public static let ttlExpired = ReplyCode(rawValue: 0x06)
        public static let commandNotSupported = ReplyCode(rawValue: 0x07)
        public static let addressTypeNotSupported = ReplyCode(rawValue: 0x08)

        /// The RFC's wording in lower case plus the code, e.g. "connection refused (reply 0x05)".
        public var description: String {
            let text: String
            switch self.rawValue {
            case 0x00: text = "succeeded"
            case 0x01: text = "general SOCKS server failure"
            case 0x02: text = "connection not allowed by ruleset"
            case 0x03: text = "network unreachable"
            case 0x04: text = "host unreachable"
            case 0x05: text = "connection refused"
            case 0x06: text = "TTL expired"
            case 0x07: text = "command not supported"
            case 0x08: text = "address type not supported"
            default: text = "unassigned reply code"
            }
            return "\(text) (reply \(hex(self.rawValue)))"
        }
    }

    /// Where a CONNECT request wants to go.
    public struct Target: Hashable, Sendable, CustomStringConvertible {
        /// How the host travelled on the wire.
        public enum Kind: Hashable, Sendable {
            case ipv4
            case ipv6
            case domainName
        }

        /// A domain name as sent, or an address literal: dotted quad for IPv4, RFC 5952 text
        /// (lower case, longest zero run compressed, no brackets) for IPv6.
        public var host: String
        public var port: UInt16
        public var kind: Kind

        public init(host: String, port: UInt16, kind: Kind) {
            self.host = host
            self.port = port
            self.kind = kind
        }

        /// `host:port`, with brackets around IPv6 literals.
        public var description: String {
            self.kind == .ipv6 ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
        }
    }

    /// Why a SOCKS5 handshake failed, on either side. Equality compares the whole value, so tests
    /// can match exact errors.
    public enum HandshakeError: Error, Hashable, Sendable, CustomStringConvertible {
        /// The first byte of a SOCKS message was not 5.
        case invalidVersion(UInt8)
        /// The greeting listed no methods at all.
        case noMethodsOffered
        /// None of the offered methods is the one we require (`needed`).
        case noAcceptableMethod(offered: [UInt8], needed: UInt8)
        /// The RFC 1929 subnegotiation did not start with version 1.
        case invalidAuthVersion(UInt8)
        /// An empty username or password, which RFC 1929 does not allow (lengths are 1...255).
        case emptyCredentials
        /// The credentials were checked and refused.
        case authenticationFailed(username: String)
        /// BIND, UDP ASSOCIATE or an unknown command.
        case unsupportedCommand(UInt8)
        /// An ATYP other than 1, 3 or 4.
        case unsupportedAddressType(UInt8)
        /// A nonzero RSV byte.
        case invalidReservedByte(UInt8)
        /// A domain name of length zero.
        case emptyDomainName
        /// Client side: the proxy selected a method we did not offer.
        case unexpectedMethod(UInt8)
        /// Client side: the proxy wants authentication and we have no credentials.
        case authenticationRequired
        /// Client side: no offered method is acceptable to the proxy.
        case noAcceptableMethods
        /// Client side: the proxy answered the CONNECT request with a failure code.
        case connectRefused(ReplyCode)
        /// Client side: the target or the credentials cannot be encoded (e.g. longer than 255 bytes).
        case unencodable(String)
        /// Bytes arrived when the protocol expects the peer to wait for us.
        case unexpectedData

        public var description: String {
            switch self {
            case .invalidVersion(let byte):
                var message = "Invalid SOCKS version \(hex(byte)): expected 5"
                if byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") {
                    message += " (is this an HTTP client talking to a SOCKS5 proxy?)"
                } else if byte == 0x04 {
                    message += " (SOCKS4 is not supported)"
                } else if byte == 0x16 {
                    message += " (is this a TLS client talking to a SOCKS5 proxy?)"
                }
                return message
            case .noMethodsOffered:
                return "SOCKS5 greeting offers no authentication methods"
            case .noAcceptableMethod(let offered, let needed):
                let name = needed == Method.usernamePassword ? "username/password" : "no"
                return "SOCKS5 client does not support \(name) authentication (offered methods: "
                    + offered.map(hex).joined(separator: ", ") + ")"
            case .invalidAuthVersion(let byte):
                return "Invalid SOCKS5 username/password subnegotiation version \(hex(byte)): expected 1"
            case .emptyCredentials:
                return "SOCKS5 username/password authentication with an empty username or password"
            case .authenticationFailed(let username):
                return "SOCKS5 authentication failed for user \"\(username)\""
            case .unsupportedCommand(let command):
                let name: String
                switch command {
                case Command.bind: name = "BIND"
                case Command.udpAssociate: name = "UDP ASSOCIATE"
                default: name = "unknown command"
                }
                return "Unsupported SOCKS5 command \(name) (\(hex(command))): only CONNECT is supported"
            case .unsupportedAddressType(let type):
                return "Unsupported SOCKS5 address type \(hex(type))"
            case .invalidReservedByte(let byte):
                return "Invalid SOCKS5 request: reserved byte is \(hex(byte)), expected 0x00"
            case .emptyDomainName:
                return "Invalid SOCKS5 request: empty domain name"
            case .unexpectedMethod(let method):
                return "SOCKS5 proxy selected authentication method \(hex(method)), which we did not offer"
            case .authenticationRequired:
                return "SOCKS5 proxy requires authentication"
            case .noAcceptableMethods:
                return "SOCKS5 proxy accepts none of the offered authentication methods"
            case .connectRefused(let code):
                return "SOCKS5 proxy refused the connection: \(code)"
            case .unencodable(let reason):
                return "Cannot send SOCKS5 request: \(reason)"
            case .unexpectedData:
                return "Unexpected data during the SOCKS5 handshake"
            }
        }
    }

    /// A reply (RFC 1928 §6) with the given code and bound address; mitmproxy always reports
    /// 0.0.0.0:0, which clients ignore for CONNECT.
    public static func reply(_ code: ReplyCode, bound: Target? = nil) -> [UInt8] {
        var bytes: [UInt8] = [version, code.rawValue, 0x00]
        if let bound, let encoded = try? encodeAddress(bound) {
            bytes += encoded
        } else {
            bytes += [AddressType.ipv4, 0, 0, 0, 0, 0, 0]
        }
        return bytes
    }

    /// ATYP, DST.ADDR and DST.PORT for `target`. Literals are re-checked: a `.ipv4`/`.ipv6`
    /// target whose host does not parse is an error rather than a silently wrong address.
    static func encodeAddress(_ target: Target) throws(HandshakeError) -> [UInt8] {
        var bytes: [UInt8]
        switch target.kind {
        case .ipv4:
            guard let address = IPAddressText.parseIPv4(target.host) else {
                throw .unencodable("\"\(target.host)\" is not an IPv4 address")
            }
            bytes = [AddressType.ipv4] + address
        case .ipv6:
            guard let address = IPAddressText.parseIPv6(target.host) else {
                throw .unencodable("\"\(target.host)\" is not an IPv6 address")
            }
            bytes = [AddressType.ipv6] + address
        case .domainName:
            let name = Array(target.host.utf8)
            guard !name.isEmpty, name.count <= 255 else {
                throw .unencodable("domain name must be 1 to 255 bytes, got \(name.count)")
            }
            bytes = [AddressType.domainName, UInt8(name.count)] + name
        }
        bytes += [UInt8(target.port >> 8), UInt8(target.port & 0xFF)]
        return bytes
    }

    /// Result of reading an address (ATYP onwards) from the front of a buffer.
    enum AddressParse {
        case needMoreData
        case address(Target, length: Int)
        case unsupported(UInt8)
        case emptyDomainName
    }

    /// Reads ATYP, address and port starting at `offset` of `bytes` without consuming anything.
    static func parseAddress(_ bytes: ByteBuffer, at offset: Int) -> AddressParse {
        let view = bytes.readableBytesView
        guard view.count > offset else { return .needMoreData }
        let type = view[view.startIndex + offset]
        let addressLength: Int
        let start: Int
        switch type {
        case AddressType.ipv4:
            addressLength = 4
            start = offset + 1
        case AddressType.ipv6:
            addressLength = 16
            start = offset + 1
        case AddressType.domainName:
            guard view.count > offset + 1 else { return .needMoreData }
            addressLength = Int(view[view.startIndex + offset + 1])
            guard addressLength > 0 else { return .emptyDomainName }
            start = offset + 2
        default:
            return .unsupported(type)
        }
        let end = start + addressLength + 2
        guard view.count >= end else { return .needMoreData }
        let address = Array(view[(view.startIndex + start)..<(view.startIndex + start + addressLength)])
        let port = UInt16(view[view.startIndex + end - 2]) << 8 | UInt16(view[view.startIndex + end - 1])
        let target: Target
        switch type {
        case AddressType.ipv4:
            target = Target(host: IPAddressText.formatIPv4(address), port: port, kind: .ipv4)
        case AddressType.ipv6:
            target = Target(host: IPAddressText.formatIPv6(address), port: port, kind: .ipv6)
        default:
            // Domain names are ASCII in practice (IDNs travel as punycode); anything else is
            // decoded leniently so a hostile name becomes a failed lookup, not a crash.
            target = Target(host: String(decoding: address, as: UTF8.self), port: port, kind: .domainName)
        }
        return .address(target, length: end - offset)
    }
}

/// `0x05`-style hex for messages.
private func hex(_ byte: UInt8) -> String {
    let digits = Array("0123456789ABCDEF")
    return "0x" + String(digits[Int(byte >> 4)]) + String(digits[Int(byte & 0x0F)])
}

// MARK: - Server

/// The server side of a SOCKS5 handshake: the proxy in mitmproxy's `socks5` mode.
///
/// ```
///            receive                       receive                        receive
/// greeting ───────────▶ (auth required?) ─────────▶ verifying ─(checked)─▶ request ─────▶ connecting
///            │  no ─────────────────────────────────────────────────────▶ request          │
///            ▼                                                                  connectSucceeded/Failed
///          failed  ◀── any malformed input, refused credentials, ... ─┘          ▼
///                                                                             established / closed
/// ```
///
/// Feed bytes with ``receive(_:)``; answer ``Action/verifyCredentials(username:password:)`` with
/// ``credentialsChecked(ok:)`` and ``Action/connect(_:)`` with ``connectSucceeded(boundAddress:)``
/// or ``connectFailed(_:)``. Bytes the client sends after its request (it may pipeline its first
/// application data) are kept untouched and handed back by ``connectSucceeded(boundAddress:)``.
///
/// Like mitmproxy, the machine demands exactly one method: username/password when authentication
/// is required, "no authentication" otherwise, and answers 0xFF if the client does not offer it.
/// Every length on the wire is one byte, so nothing can make it buffer more than a greeting, an
/// auth message (≤ 513 bytes) and a request (≤ 262 bytes) before it acts. Only application data
/// sent while the upstream connection is being opened accumulates without a bound here; the
/// caller should stop reading from the client until it has answered ``Action/connect(_:)``, as
/// it would for any peer that outpaces the other side.
public struct SOCKS5ServerHandshake: Sendable {
    public struct Configuration: Sendable, Hashable {
        /// Demand RFC 1929 username/password authentication (mitmproxy: `proxyauth` is set).
        public var requireAuthentication: Bool

        public init(requireAuthentication: Bool = false) {
            self.requireAuthentication = requireAuthentication
        }
    }

    /// What the caller must do next. Actions are returned in order; perform them in order.
    public enum Action: Hashable, Sendable {
        /// Write these bytes to the client.
        case send([UInt8])
        /// Check these credentials (mitmproxy's `socks5_auth` hook), then call
        /// ``SOCKS5ServerHandshake/credentialsChecked(ok:)``.
        case verifyCredentials(username: String, password: String)
        /// Open a connection to the target, then call ``SOCKS5ServerHandshake/connectSucceeded(boundAddress:)``
        /// or ``SOCKS5ServerHandshake/connectFailed(_:)``.
        case connect(SOCKS5.Target)
        /// The handshake is over and succeeded: relay data from now on, starting with these bytes
        /// the client already sent (possibly empty).
        case established(leftover: ByteBuffer)
        /// The handshake failed: log the error and close the connection (after any `.send` before it).
        case fail(SOCKS5.HandshakeError)
        /// Close the client connection (after any `.send` before it); used after a failed connect,
        /// whose reason the caller already knows.
        case close
    }

    /// Why the upstream connection could not be opened; each maps to a reply code.
    public enum ConnectFailure: Hashable, Sendable {
        case connectionRefused
        case hostUnreachable
        case networkUnreachable
        case timedOut
        case notAllowed
        case other

        public var replyCode: SOCKS5.ReplyCode {
            switch self {
            case .connectionRefused: .connectionRefused
            case .hostUnreachable: .hostUnreachable
            case .networkUnreachable: .networkUnreachable
            case .timedOut: .ttlExpired
            case .notAllowed: .connectionNotAllowed
            case .other: .generalFailure
            }
        }
    }

    enum State: Sendable {
        case awaitingGreeting
        case awaitingCredentials
        case verifyingCredentials(username: String)
        case awaitingRequest
        case connecting
        case established
        case failed
    }

    public let configuration: Configuration
    private(set) var state: State = .awaitingGreeting
    /// Bytes received and not yet consumed.
    private var buffer = ByteBuffer()

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    /// Whether the machine has finished, successfully or not.
    public var isFinished: Bool {
        switch self.state {
        case .established, .failed: true
        case .awaitingGreeting, .awaitingCredentials, .verifyingCredentials, .awaitingRequest, .connecting: false
        }
    }

    // MARK: Inbound

    /// Feeds bytes received from the client. Returns `[]` when more bytes are needed.
    public mutating func receive(_ bytes: ByteBuffer) -> [Action] {
        var bytes = bytes
        switch self.state {
        case .failed, .established:
            // Not ours any more: after `.established` the caller relays data itself.
            return []
        case .awaitingGreeting, .awaitingCredentials, .verifyingCredentials, .awaitingRequest, .connecting:
            self.buffer.writeBuffer(&bytes)
            return self.advance()
        }
    }

    /// The answer to ``Action/verifyCredentials(username:password:)``.
    public mutating func credentialsChecked(ok: Bool) -> [Action] {
        guard case .verifyingCredentials(let username) = self.state else { return [] }
        guard ok else {
            self.state = .failed
            return [.send([SOCKS5.authVersion, 0x01]), .fail(.authenticationFailed(username: username))]
        }
        self.state = .awaitingRequest
        return [.send([SOCKS5.authVersion, 0x00])] + self.advance()
    }

    /// The upstream connection is open: send the success reply, then relay. `boundAddress` is
    /// reported as BND.ADDR/BND.PORT; `nil` sends 0.0.0.0:0 as mitmproxy does.
    public mutating func connectSucceeded(boundAddress: SOCKS5.Target? = nil) -> [Action] {
        guard case .connecting = self.state else { return [] }
        self.state = .established
        let leftover = self.buffer
        self.buffer = ByteBuffer()
        return [.send(SOCKS5.reply(.succeeded, bound: boundAddress)), .established(leftover: leftover)]
    }

    /// The upstream connection failed: send the matching reply and close.
    public mutating func connectFailed(_ failure: ConnectFailure) -> [Action] {
        guard case .connecting = self.state else { return [] }
        self.state = .failed
        self.buffer = ByteBuffer()
        return [.send(SOCKS5.reply(failure.replyCode)), .close]
    }

    // MARK: Parsing

    /// Parses as far as the buffered bytes allow.
    private mutating func advance() -> [Action] {
        var actions: [Action] = []
        while true {
            switch self.state {
            case .awaitingGreeting:
                guard let step = self.parseGreeting() else { return actions }
                actions += step
            case .awaitingCredentials:
                guard let step = self.parseCredentials() else { return actions }
                actions += step
            case .awaitingRequest:
                guard let step = self.parseRequest() else { return actions }
                actions += step
            case .verifyingCredentials, .connecting, .established, .failed:
                return actions
            }
        }
    }

    private mutating func failure(_ error: SOCKS5.HandshakeError, reply: [UInt8]? = nil) -> [Action] {
        self.state = .failed
        self.buffer = ByteBuffer()
        return (reply.map { [Action.send($0)] } ?? []) + [.fail(error)]
    }

    private func byte(_ offset: Int) -> UInt8? {
        self.buffer.getInteger(at: self.buffer.readerIndex + offset, as: UInt8.self)
    }

    private mutating func parseGreeting() -> [Action]? {
        guard let version = self.byte(0) else { return nil }
        guard version == SOCKS5.version else { return self.failure(.invalidVersion(version)) }
        guard let count = self.byte(1) else { return nil }
        guard count > 0 else {
            return self.failure(.noMethodsOffered, reply: [SOCKS5.version, SOCKS5.Method.noAcceptableMethods])
        }
        guard let methods = self.buffer.getBytes(at: self.buffer.readerIndex + 2, length: Int(count)) else {
            return nil
        }
        self.buffer.moveReaderIndex(forwardBy: 2 + Int(count))
        let needed =
            self.configuration.requireAuthentication
            ? SOCKS5.Method.usernamePassword : SOCKS5.Method.noAuthentication
        guard methods.contains(needed) else {
            return self.failure(
                .noAcceptableMethod(offered: methods, needed: needed),
                reply: [SOCKS5.version, SOCKS5.Method.noAcceptableMethods]
            )
        }
        self.state = self.configuration.requireAuthentication ? .awaitingCredentials : .awaitingRequest
        return [.send([SOCKS5.version, needed])]
    }

    private mutating func parseCredentials() -> [Action]? {
        guard let version = self.byte(0) else { return nil }
        // RFC 1929 §2 has no "bad version" status; answer "failure" so the client stops waiting.
        guard version == SOCKS5.authVersion else {
            return self.failure(.invalidAuthVersion(version), reply: [SOCKS5.authVersion, 0x01])
        }
        guard let userLength = self.byte(1).map(Int.init) else { return nil }
        guard let passwordLength = self.byte(2 + userLength).map(Int.init) else { return nil }
        guard
            let user = self.buffer.getBytes(at: self.buffer.readerIndex + 2, length: userLength),
            let password = self.buffer.getBytes(at: self.buffer.readerIndex + 3 + userLength, length: passwordLength)
        else { return nil }
        self.buffer.moveReaderIndex(forwardBy: 3 + userLength + passwordLength)
        guard userLength > 0, passwordLength > 0 else {
            return self.failure(.emptyCredentials, reply: [SOCKS5.authVersion, 0x01])
        }
        // Invalid UTF-8 is repaired with U+FFFD: such a name simply matches no configured user.
        let username = String(decoding: user, as: UTF8.self)
        self.state = .verifyingCredentials(username: username)
        return [.verifyCredentials(username: username, password: String(decoding: password, as: UTF8.self))]
    }

    private mutating func parseRequest() -> [Action]? {
        guard let version = self.byte(0) else { return nil }
        guard version == SOCKS5.version else {
            return self.failure(.invalidVersion(version), reply: SOCKS5.reply(.generalFailure))
        }
        guard let command = self.byte(1) else { return nil }
        guard command == SOCKS5.Command.connect else {
            return self.failure(.unsupportedCommand(command), reply: SOCKS5.reply(.commandNotSupported))
        }
        guard let reserved = self.byte(2) else { return nil }
        guard reserved == 0 else {
            return self.failure(.invalidReservedByte(reserved), reply: SOCKS5.reply(.generalFailure))
        }
        switch SOCKS5.parseAddress(self.buffer, at: 3) {
        case .needMoreData:
            return nil
        case .unsupported(let type):
            return self.failure(.unsupportedAddressType(type), reply: SOCKS5.reply(.addressTypeNotSupported))
        case .emptyDomainName:
            return self.failure(.emptyDomainName, reply: SOCKS5.reply(.generalFailure))
        case .address(let target, let length):
            self.buffer.moveReaderIndex(forwardBy: 3 + length)
            self.state = .connecting
            return [.connect(target)]
        }
    }
}

// MARK: - Client

/// The client side of a SOCKS5 handshake: how we reach a target through an upstream SOCKS5 proxy.
///
/// ```
/// start() → greeting ─▶ awaitingMethod ─(00)──────────────────────────▶ awaitingReply ─(REP=00)─▶ connected
///                                      └(02)─▶ awaitingAuthReply ─(00)─┘          └─(other)─▶ failed
/// ```
///
/// ``start()`` returns the greeting; every ``receive(_:)`` returns what to send next and, at the
/// end, ``Action/connected(leftover:)`` with any bytes the proxy sent after its reply (the target's
/// first bytes) or ``Action/fail(_:)``. Names go out as ATYP 3, address literals as ATYP 1 or 4.
public struct SOCKS5ClientHandshake: Sendable {
    public enum Action: Hashable, Sendable {
        /// Write these bytes to the proxy.
        case send([UInt8])
        /// The tunnel is open; these bytes already came from the target (possibly empty).
        case connected(leftover: ByteBuffer)
        /// The handshake failed; close the connection.
        case fail(SOCKS5.HandshakeError)
    }

    enum State: Sendable {
        case idle
        case awaitingMethod
        case awaitingAuthReply
        case awaitingReply
        case connected
        case failed
    }

    public let target: SOCKS5.Target
    public let credentials: (username: String, password: String)?
    private(set) var state: State = .idle
    private var buffer = ByteBuffer()

    /// - Parameters:
    ///   - host: A domain name, an IPv4 literal or an IPv6 literal (brackets allowed).
    ///   - credentials: Offered with method 0x02 in addition to 0x00.
    public init(host: String, port: UInt16, username: String? = nil, password: String? = nil) {
        var bare = Substring(host)
        if bare.hasPrefix("["), bare.hasSuffix("]") { bare = bare.dropFirst().dropLast() }
        if let v4 = IPAddressText.parseIPv4(String(bare)) {
            self.target = SOCKS5.Target(host: IPAddressText.formatIPv4(v4), port: port, kind: .ipv4)
        } else if let v6 = IPAddressText.parseIPv6(String(bare)) {
            self.target = SOCKS5.Target(host: IPAddressText.formatIPv6(v6), port: port, kind: .ipv6)
        } else {
            self.target = SOCKS5.Target(host: host, port: port, kind: .domainName)
        }
        if let username, let password {
            self.credentials = (username, password)
        } else {
            self.credentials = nil
        }
    }

    /// The greeting: method 0x00, plus 0x02 when we have credentials.
    public mutating func start() -> [Action] {
        guard case .idle = self.state else { return [] }
        if let credentials {
            // Fail early rather than send a request the proxy would misread.
            let user = credentials.username.utf8.count
            let password = credentials.password.utf8.count
            guard (1...255).contains(user), (1...255).contains(password) else {
                self.state = .failed
                return [.fail(.unencodable("username and password must be 1 to 255 bytes"))]
            }
        }
        do throws(SOCKS5.HandshakeError) {
            _ = try SOCKS5.encodeAddress(self.target)
        } catch {
            self.state = .failed
            return [.fail(error)]
        }
        self.state = .awaitingMethod
        return self.credentials == nil
            ? [.send([SOCKS5.version, 1, SOCKS5.Method.noAuthentication])]
            : [.send([SOCKS5.version, 2, SOCKS5.Method.noAuthentication, SOCKS5.Method.usernamePassword])]
    }

    /// Feeds bytes received from the proxy.
    public mutating func receive(_ bytes: ByteBuffer) -> [Action] {
        var bytes = bytes
        switch self.state {
        case .idle:
            self.state = .failed
            return [.fail(.unexpectedData)]
        case .connected, .failed:
            return []
        case .awaitingMethod, .awaitingAuthReply, .awaitingReply:
            self.buffer.writeBuffer(&bytes)
        }
        var actions: [Action] = []
        while true {
            let step: [Action]?
            switch self.state {
            case .awaitingMethod: step = self.parseMethod()
            case .awaitingAuthReply: step = self.parseAuthReply()
            case .awaitingReply: step = self.parseReply()
            case .idle, .connected, .failed: step = nil
            }
            guard let step else { return actions }
            actions += step
        }
    }

    private func byte(_ offset: Int) -> UInt8? {
        self.buffer.getInteger(at: self.buffer.readerIndex + offset, as: UInt8.self)
    }

    private mutating func failure(_ error: SOCKS5.HandshakeError) -> [Action] {
        self.state = .failed
        self.buffer = ByteBuffer()
        return [.fail(error)]
    }

    private var request: [UInt8] {
        // Checked in `start()`, so this cannot fail here.
        let address = (try? SOCKS5.encodeAddress(self.target)) ?? []
        return [SOCKS5.version, SOCKS5.Command.connect, 0x00] + address
    }

    private mutating func parseMethod() -> [Action]? {
        guard let version = self.byte(0) else { return nil }
        guard version == SOCKS5.version else { return self.failure(.invalidVersion(version)) }
        guard let method = self.byte(1) else { return nil }
        self.buffer.moveReaderIndex(forwardBy: 2)
        switch method {
        case SOCKS5.Method.noAuthentication:
            self.state = .awaitingReply
            return [.send(self.request)]
        case SOCKS5.Method.usernamePassword:
            guard let credentials else { return self.failure(.authenticationRequired) }
            let user = Array(credentials.username.utf8)
            let password = Array(credentials.password.utf8)
            self.state = .awaitingAuthReply
            return [.send([SOCKS5.authVersion, UInt8(user.count)] + user + [UInt8(password.count)] + password)]
        case SOCKS5.Method.noAcceptableMethods:
            return self.failure(self.credentials == nil ? .authenticationRequired : .noAcceptableMethods)
        default:
            return self.failure(.unexpectedMethod(method))
        }
    }

    private mutating func parseAuthReply() -> [Action]? {
        guard let version = self.byte(0) else { return nil }
        guard version == SOCKS5.authVersion else { return self.failure(.invalidAuthVersion(version)) }
        guard let status = self.byte(1) else { return nil }
        self.buffer.moveReaderIndex(forwardBy: 2)
        guard status == 0 else {
            return self.failure(.authenticationFailed(username: self.credentials?.username ?? ""))
        }
        self.state = .awaitingReply
        return [.send(self.request)]
    }

    private mutating func parseReply() -> [Action]? {
        guard let version = self.byte(0) else { return nil }
        guard version == SOCKS5.version else { return self.failure(.invalidVersion(version)) }
        guard let code = self.byte(1) else { return nil }
        // A failure reply may be cut short by the proxy closing; report it as soon as REP is known.
        guard code == SOCKS5.ReplyCode.succeeded.rawValue else {
            return self.failure(.connectRefused(SOCKS5.ReplyCode(rawValue: code)))
        }
        guard let reserved = self.byte(2) else { return nil }
        guard reserved == 0 else { return self.failure(.invalidReservedByte(reserved)) }
        switch SOCKS5.parseAddress(self.buffer, at: 3) {
        case .needMoreData:
            return nil
        case .unsupported(let type):
            return self.failure(.unsupportedAddressType(type))
        case .emptyDomainName:
            return self.failure(.emptyDomainName)
        case .address(_, let length):
            self.buffer.moveReaderIndex(forwardBy: 3 + length)
            self.state = .connected
            let leftover = self.buffer
            self.buffer = ByteBuffer()
            return [.connected(leftover: leftover)]
        }
    }
}

// MARK: - Address text

/// Text forms of IP addresses without Foundation or `inet_pton`, so the core stays pure Swift.
enum IPAddressText {
    /// Dotted-quad IPv4, four decimal parts 0...255, no leading zeros beyond "0" itself.
    static func parseIPv4(_ text: String) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard (1...3).contains(part.count), part.allSatisfy({ $0.isASCII && $0.isNumber }),
                part.count == 1 || part.first != "0", let value = UInt8(part)
            else { return nil }
            bytes.append(value)
        }
        return bytes
    }

    static func formatIPv4(_ bytes: [UInt8]) -> String {
        bytes.map(String.init).joined(separator: ".")
    }

    /// RFC 4291 §2.2 text (hex groups, one `::`, optional trailing dotted quad); no zone IDs.
    static func parseIPv6(_ text: String) -> [UInt8]? {
        guard text.contains(":"), text.utf8.count <= 45 else { return nil }
        var head: [UInt16] = []
        var tail: [UInt16] = []
        var sawDoubleColon = false
        let halves = text.split(separator: "::", omittingEmptySubsequences: false).map(String.init)
        guard halves.count <= 2 else { return nil }
        sawDoubleColon = halves.count == 2
        func groups(_ part: String, allowIPv4: Bool) -> [UInt16]? {
            if part.isEmpty { return [] }
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
            var out: [UInt16] = []
            for (index, piece) in pieces.enumerated() {
                if allowIPv4, index == pieces.count - 1, piece.contains(".") {
                    guard let v4 = parseIPv4(String(piece)) else { return nil }
                    out.append(UInt16(v4[0]) << 8 | UInt16(v4[1]))
                    out.append(UInt16(v4[2]) << 8 | UInt16(v4[3]))
                    continue
                }
                guard (1...4).contains(piece.count), piece.allSatisfy({ $0.isHexDigit }),
                    let value = UInt16(piece, radix: 16)
                else { return nil }
                out.append(value)
            }
            return out
        }
        guard let first = groups(halves[0], allowIPv4: !sawDoubleColon) else { return nil }
        head = first
        if sawDoubleColon {
            guard let second = groups(halves[1], allowIPv4: true) else { return nil }
            tail = second
            guard head.count + tail.count <= 7 else { return nil }
        } else {
            guard head.count == 8 else { return nil }
        }
        let all = head + Array(repeating: 0, count: 8 - head.count - tail.count) + tail
        return all.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
    }

    /// RFC 5952 §4: lower-case hex, no leading zeros, the longest run (≥ 2) of zero groups as `::`.
    static func formatIPv6(_ bytes: [UInt8]) -> String {
        guard bytes.count == 16 else { return "" }
        // IPv4-mapped addresses keep their dotted tail, as RFC 5952 §5 and `inet_ntop` do.
        if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF {
            return "::ffff:" + formatIPv4(Array(bytes[12..<16]))
        }
        return IPv6Text.compressed(bytes)
    }
}
