import NIOCore

/// A TLS ClientHello, parsed from the first bytes a client sends (mitmproxy's `tls.ClientHello`
/// and `parse_client_hello`).
///
/// Parsing is sans-I/O: hand ``parse(_:maximumLength:)`` everything buffered so far and it answers
/// whether it needs more bytes, found a ClientHello, saw something that is not TLS, or saw TLS it
/// cannot accept. It never reads past a length it has checked and never allocates by a length the
/// peer claims, so it is safe to call on hostile input after every read.
///
/// The wire format (RFC 8446 §4.1.2, same layout as RFC 5246 §7.4.1.2 for TLS 1.0–1.2):
///
/// ```
/// struct {
///     ProtocolVersion legacy_version;               // uint16
///     Random random;                                // 32 bytes
///     opaque legacy_session_id<0..32>;
///     CipherSuite cipher_suites<2..2^16-2>;         // uint16 each
///     opaque legacy_compression_methods<1..2^8-1>;
///     Extension extensions<8..2^16-1>;              // absent in some TLS 1.0-1.2 hellos
/// } ClientHello;
/// ```
public struct ClientHello: Sendable, Hashable {
    /// One entry of the `extensions` vector (RFC 8446 §4.2), kept as it came off the wire.
    public struct Extension: Sendable, Hashable {
        /// The `ExtensionType` code point, e.g. ``ClientHello/ExtensionType/serverName``.
        public var type: UInt16
        /// The `extension_data`, without the type and length prefix.
        public var data: ByteBuffer

        public init(type: UInt16, data: ByteBuffer) {
            self.type = type
            self.data = data
        }
    }

    /// `ExtensionType` code points this parser interprets or tests refer to (IANA "TLS
    /// ExtensionType Values"). ``ClientHello/Extension/type`` stays a plain `UInt16` so unknown
    /// and GREASE (RFC 8701) values pass through untouched.
    public enum ExtensionType {
        /// `server_name`, RFC 6066 §3.
        public static let serverName: UInt16 = 0
        /// `padding`, RFC 7685.
        public static let padding: UInt16 = 21
        /// `application_layer_protocol_negotiation`, RFC 7301 §3.1.
        public static let applicationLayerProtocolNegotiation: UInt16 = 16
        /// `pre_shared_key`, RFC 8446 §4.2.11 (must be the last extension).
        public static let preSharedKey: UInt16 = 41
        /// `supported_versions`, RFC 8446 §4.2.1.
        public static let supportedVersions: UInt16 = 43
        /// `key_share`, RFC 8446 §4.2.8.
        public static let keyShare: UInt16 = 51
    }

    /// What ``parse(_:maximumLength:)`` made of the bytes so far.
    public enum ParseResult: Sendable, Hashable {
        /// The bytes are a proper prefix of a TLS ClientHello: read more and parse again.
        case needMoreData
        /// A complete ClientHello. Bytes after its last record (early data, …) are ignored.
        case clientHello(ClientHello)
        /// The first bytes are not a TLS handshake record carrying a ClientHello
        /// (see ``looksLikeTLSClientHello(_:)``); SSLv2-style hellos land here too.
        case notTLS
        /// It starts like TLS but breaks the grammar or a limit; the string says how.
        case malformed(String)
    }

    /// The default cap on the ClientHello handshake message, header included. Real hellos are well
    /// under 2 KiB even with post-quantum key shares; 64 KiB bounds buffering for any peer.
    public static let defaultMaximumLength = 64 * 1024

    /// `legacy_version`: 0x0303 for TLS 1.2 and 1.3; TLS 1.3 is offered in ``supportedVersions``
    /// (RFC 8446 §4.1.2).
    public let legacyVersion: UInt16
    /// The 32 `random` bytes.
    public let random: [UInt8]
    /// `legacy_session_id`, 0–32 bytes.
    public let sessionID: [UInt8]
    /// `cipher_suites` in the client's order of preference, GREASE values included.
    public let cipherSuites: [UInt16]
    /// `legacy_compression_methods`; `[0]` (null) for any modern client.
    public let compressionMethods: [UInt8]
    /// All extensions in wire order. Each type occurs at most once (RFC 8446 §4.2).
    public let extensions: [Extension]

    /// The SNI `host_name` (RFC 6066 §3), exactly as sent (DNS names are case-insensitive).
    ///
    /// As in mitmproxy, `nil` unless the `server_name` extension holds exactly one `host_name`
    /// that is a syntactically valid host; a hostile or broken name is treated as no SNI, while
    /// broken *lengths* make the whole hello ``ParseResult/malformed(_:)``.
    public let serverName: String?
    /// The ALPN `protocol_name_list` (RFC 7301 §3.1) in the client's order, e.g. `["h2",
    /// "http/1.1"]`; `[]` without the extension. Names are decoded as UTF-8, with invalid
    /// sequences (GREASE) repaired; the exact bytes remain in ``extensions``.
    public let alpnProtocols: [String]
    /// The `supported_versions` list (RFC 8446 §4.2.1), e.g. `[0x0304, 0x0303]`; `[]` for a
    /// pre-TLS 1.3 client, which offers only ``legacyVersion``.
    public let supportedVersions: [UInt16]

    /// The handshake message as received: type, uint24 length and body, without the TLS record
    /// headers (mitmproxy's `ClientHello.raw_bytes(wrap_in_record=False)`).
    public let handshakeBytes: ByteBuffer
}

// MARK: - Detection

extension ClientHello {
    /// Whether `firstBytes` start like a record carrying a ClientHello, the check mitmproxy's
    /// `starts_like_tls_record` makes plus the handshake type:
    ///
    /// ```
    /// 16          ContentType handshake (RFC 8446 §5.1)
    /// 03 00..03   legacy_record_version, SSL 3.0 to TLS 1.2 (1.3 still sends 03 01 or 03 03)
    /// xx xx       record length
    /// 01          HandshakeType client_hello (RFC 8446 §4)
    /// ```
    ///
    /// - Returns: `false` as soon as one available byte disagrees, `nil` while all available bytes
    ///   agree but fewer than six have arrived, otherwise `true`.
    public static func looksLikeTLSClientHello(_ firstBytes: ByteBuffer) -> Bool? {
        let bytes = firstBytes.readableBytesView
        for (offset, allowed) in TLSConstants.clientHelloMagic {
            guard offset < bytes.count else { return nil }
            guard allowed.contains(bytes[bytes.startIndex + offset]) else { return false }
        }
        return true
    }
}

// MARK: - Parsing

extension ClientHello {
    /// Parses the ClientHello at the start of `bytes`, the data peeked from a new connection.
    ///
    /// The handshake message may be spread over several TLS records (RFC 8446 §5.1: "a single
    /// message MAY be fragmented across several records"); they are joined as mitmproxy's
    /// `get_client_hello` does. Call again with more bytes while the result is
    /// ``ParseResult/needMoreData``; every proper prefix of a valid input gives that result.
    ///
    /// - Parameters:
    ///   - bytes: Everything received from the client so far; its reader index is not moved.
    ///   - maximumLength: The largest acceptable handshake message (header included); a larger
    ///     declared length is ``ParseResult/malformed(_:)`` at once, before its bytes arrive.
    public static func parse(
        _ bytes: ByteBuffer,
        maximumLength: Int = ClientHello.defaultMaximumLength
    ) -> ParseResult {
        switch self.looksLikeTLSClientHello(bytes) {
        case .none: return .needMoreData
        case .some(false): return .notTLS
        case .some(true): break
        }
        do throws(ParseFailure) {
            let message = try self.reassembleHandshakeMessage(bytes, maximumLength: maximumLength)
            return .clientHello(try ClientHello(handshakeMessage: message))
        } catch {
            switch error {
            case .needMoreData: return .needMoreData
            case .malformed(let reason): return .malformed(reason)
            }
        }
    }

    /// Joins the fragments of the first handshake message from consecutive handshake records
    /// (RFC 8446 §5.1) and returns exactly that message, header included.
    private static func reassembleHandshakeMessage(
        _ bytes: ByteBuffer,
        maximumLength: Int
    ) throws(ParseFailure) -> ByteBuffer {
        var input = bytes
        var message: ByteBuffer? = nil
        var recordNumber = 0
        while true {
            recordNumber += 1
            // struct { ContentType type; ProtocolVersion legacy_record_version;
            //          uint16 length; opaque fragment[length]; } TLSPlaintext;
            guard input.readableBytes >= 5 else { throw .needMoreData }
            let contentType = input.readInteger(as: UInt8.self)!
            let version = input.readInteger(as: UInt16.self)!
            let length = Int(input.readInteger(as: UInt16.self)!)
            guard contentType == TLSConstants.contentTypeHandshake else {
                // "Handshake messages MUST NOT be interleaved with other record types."
                throw .malformed("record \(recordNumber) has content type \(contentType), expected handshake (22)")
            }
            guard version >> 8 == 0x03, version & 0xFF <= 0x03 else {
                throw .malformed("record \(recordNumber) has version \(hex(version)), expected 0x0300-0x0303")
            }
            guard length > 0 else {
                // "Implementations MUST NOT send zero-length fragments of Handshake types."
                throw .malformed("record \(recordNumber) is empty")
            }
            guard length <= TLSConstants.maximumPlaintextLength else {
                throw .malformed("record \(recordNumber) length \(length) exceeds 2^14")
            }

            // Take what has arrived of this fragment so an absurd message length is refused
            // before the rest of the record is waited for.
            let fragment = input.readSlice(length: min(length, input.readableBytes))!
            if message == nil {
                message = fragment
            } else {
                message!.writeImmutableBuffer(fragment)
            }

            // struct { HandshakeType msg_type; uint24 length; ... } Handshake;  (RFC 8446 §4)
            if let header = message!.getInteger(at: message!.readerIndex, as: UInt32.self) {
                let total = Int(header & 0x00FF_FFFF) + 4
                guard total <= maximumLength else {
                    throw .malformed("ClientHello of \(total) bytes exceeds the limit of \(maximumLength) bytes")
                }
                if fragment.readableBytes == length, message!.readableBytes >= total {
                    return message!.getSlice(at: message!.readerIndex, length: total)!
                }
            }
            guard fragment.readableBytes == length else { throw .needMoreData }
        }
    }

    /// Parses one complete handshake message whose type is client_hello.
    private init(handshakeMessage: ByteBuffer) throws(ParseFailure) {
        var body = handshakeMessage
        body.moveReaderIndex(forwardBy: 4)  // msg_type and uint24 length, checked while joining

        self.legacyVersion = try body.readField("legacy_version")
        self.random = Array(try body.readFixed("random", length: 32).readableBytesView)
        self.sessionID = Array(
            try body.readVector("legacy_session_id", lengthBytes: 1, allowed: 0...32).readableBytesView
        )

        var suites = try body.readVector("cipher_suites", lengthBytes: 2, allowed: 2...0xFFFE)
        guard suites.readableBytes.isMultiple(of: 2) else {
            throw .malformed("cipher_suites length \(suites.readableBytes) is odd")
        }
        self.cipherSuites = suites.readAll(UInt16.self)

        self.compressionMethods = Array(
            try body.readVector("legacy_compression_methods", lengthBytes: 1, allowed: 1...0xFF).readableBytesView
        )

        // TLS 1.0-1.2 hellos may end here (RFC 5246 §7.4.1.2); otherwise the extensions vector
        // must fill the rest of the message exactly.
        var extensions: [Extension] = []
        if body.readableBytes > 0 {
            var block = try body.readVector("extensions", lengthBytes: 2, allowed: 0...0xFFFF)
            try body.expectEnd("ClientHello")
            var seen = Set<UInt16>()
            while block.readableBytes > 0 {
                let type: UInt16 = try block.readField("extension type")
                let data = try block.readVector("extension \(type)", lengthBytes: 2, allowed: 0...0xFFFF)
                // "There MUST NOT be more than one extension of the same type" (RFC 8446 §4.2).
                guard seen.insert(type).inserted else { throw .malformed("duplicate extension \(type)") }
                extensions.append(Extension(type: type, data: data))
            }
        }
        self.extensions = extensions

        func data(_ type: UInt16) -> ByteBuffer? { extensions.first { $0.type == type }?.data }
        self.serverName = try data(ExtensionType.serverName).flatMap(Self.parseServerName)
        self.alpnProtocols = try data(ExtensionType.applicationLayerProtocolNegotiation).map(Self.parseALPN) ?? []
        self.supportedVersions = try data(ExtensionType.supportedVersions).map(Self.parseSupportedVersions) ?? []
        self.handshakeBytes = handshakeMessage
    }

    /// RFC 6066 §3: `ServerName server_name_list<1..2^16-1>`, each entry a `NameType` byte and,
    /// for `host_name(0)` and all future types, a `<1..2^16-1>` vector. Returns the host name if
    /// there is exactly one valid `host_name`.
    private static func parseServerName(_ extensionData: ByteBuffer) throws(ParseFailure) -> String? {
        var data = extensionData
        var list = try data.readVector("SNI server_name_list", lengthBytes: 2, allowed: 1...0xFFFF)
        try data.expectEnd("SNI extension")
        var hostNames: [ByteBuffer] = []
        while list.readableBytes > 0 {
            let nameType: UInt8 = try list.readField("SNI name_type")
            let name = try list.readVector("SNI name", lengthBytes: 2, allowed: 1...0xFFFF)
            if nameType == 0 { hostNames.append(name) }
        }
        guard hostNames.count == 1, Self.isValidHost(hostNames[0].readableBytesView) else { return nil }
        return String(decoding: hostNames[0].readableBytesView, as: UTF8.self)
    }

    /// RFC 7301 §3.1: `ProtocolName protocol_name_list<2..2^16-1>`, each
    /// `opaque ProtocolName<1..2^8-1>`.
    private static func parseALPN(_ extensionData: ByteBuffer) throws(ParseFailure) -> [String] {
        var data = extensionData
        var list = try data.readVector("ALPN protocol_name_list", lengthBytes: 2, allowed: 2...0xFFFF)
        try data.expectEnd("ALPN extension")
        var protocols: [String] = []
        while list.readableBytes > 0 {
            let name = try list.readVector("ALPN protocol name", lengthBytes: 1, allowed: 1...0xFF)
            protocols.append(String(decoding: name.readableBytesView, as: UTF8.self))
        }
        return protocols
    }

    /// RFC 8446 §4.2.1, in a ClientHello: `ProtocolVersion versions<2..254>`.
    private static func parseSupportedVersions(_ extensionData: ByteBuffer) throws(ParseFailure) -> [UInt16] {
        var data = extensionData
        var list = try data.readVector("supported_versions", lengthBytes: 1, allowed: 2...254)
        try data.expectEnd("supported_versions extension")
        guard list.readableBytes.isMultiple(of: 2) else {
            throw .malformed("supported_versions length \(list.readableBytes) is odd")
        }
        return list.readAll(UInt16.self)
    }

    /// A syntactic host check in the spirit of mitmproxy's `check.is_valid_host`: at most 255
    /// bytes; dot-separated labels of 1–63 letters, digits, `-` or `_` (an optional trailing dot
    /// allowed), or an IPv6 literal. IPv4 literals pass as labels, as in mitmproxy, although
    /// RFC 6066 §3 forbids sending them.
    static func isValidHost(_ host: some Collection<UInt8>) -> Bool {
        guard !host.isEmpty, host.count <= 255 else { return false }
        func isHexOrColon(_ byte: UInt8) -> Bool {
            byte == UInt8(ascii: ":") || byte == UInt8(ascii: ".") || byte.asciiHexValue != nil
        }
        if host.contains(UInt8(ascii: ":")) { return host.allSatisfy(isHexOrColon) }
        var labels = host.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        if labels.count > 1, labels.last!.isEmpty { labels.removeLast() }
        return labels.allSatisfy { label in
            (1...63).contains(label.count)
                && label.allSatisfy { byte in
                    UInt8(ascii: "a")...UInt8(ascii: "z") ~= byte || UInt8(ascii: "A")...UInt8(ascii: "Z") ~= byte
                        || UInt8(ascii: "0")...UInt8(ascii: "9") ~= byte || byte == UInt8(ascii: "-")
                        || byte == UInt8(ascii: "_")
                }
        }
    }
}

// MARK: - Helpers

/// Why parsing stopped; mapped onto ``ClientHello/ParseResult`` at the public boundary.
private enum ParseFailure: Error {
    case needMoreData
    case malformed(String)
}

private enum TLSConstants {
    static let contentTypeHandshake: UInt8 = 22
    static let handshakeTypeClientHello: UInt8 = 1
    /// Offset and accepted values of the bytes ``ClientHello/looksLikeTLSClientHello(_:)`` checks.
    static let clientHelloMagic: [(offset: Int, allowed: ClosedRange<UInt8>)] = [
        (0, contentTypeHandshake...contentTypeHandshake),
        (1, 0x03...0x03),
        (2, 0x00...0x03),
        (5, handshakeTypeClientHello...handshakeTypeClientHello),
    ]
    /// RFC 8446 §5.1: "The length MUST NOT exceed 2^14 bytes."
    static let maximumPlaintextLength = 1 << 14
}

private func hex(_ value: UInt16) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: 4 - digits.count) + digits
}

extension ByteBuffer {
    /// Reads a big-endian integer or reports `field` as truncated.
    fileprivate mutating func readField<T: FixedWidthInteger>(_ field: String) throws(ParseFailure) -> T {
        guard let value = self.readInteger(as: T.self) else {
            throw .malformed("\(field) truncated: \(self.readableBytes) bytes left")
        }
        return value
    }

    fileprivate mutating func readFixed(_ field: String, length: Int) throws(ParseFailure) -> ByteBuffer {
        guard let slice = self.readSlice(length: length) else {
            throw .malformed("\(field) needs \(length) bytes but only \(self.readableBytes) are left")
        }
        return slice
    }

    /// Reads a TLS vector `<floor..ceiling>` (RFC 8446 §3.4): a 1- or 2-byte big-endian length,
    /// then that many bytes, returned as a slice so nested reads cannot run past it.
    fileprivate mutating func readVector(
        _ field: String,
        lengthBytes: Int,
        allowed: ClosedRange<Int>
    ) throws(ParseFailure) -> ByteBuffer {
        let length: Int
        if lengthBytes == 1 {
            length = Int(try self.readField("\(field) length") as UInt8)
        } else {
            length = Int(try self.readField("\(field) length") as UInt16)
        }
        guard length <= self.readableBytes else {
            throw .malformed("\(field) length \(length) exceeds the \(self.readableBytes) bytes left")
        }
        guard allowed.contains(length) else {
            throw .malformed("\(field) length \(length) is outside \(allowed.lowerBound)...\(allowed.upperBound)")
        }
        return self.readSlice(length: length)!
    }

    fileprivate func expectEnd(_ what: String) throws(ParseFailure) {
        guard self.readableBytes == 0 else {
            throw .malformed("\(what) has \(self.readableBytes) trailing bytes")
        }
    }

    /// Reads the whole buffer as consecutive integers; the caller checked the length divides.
    fileprivate mutating func readAll<T: FixedWidthInteger>(_: T.Type) -> [T] {
        var values: [T] = []
        values.reserveCapacity(self.readableBytes / MemoryLayout<T>.size)
        while let value = self.readInteger(as: T.self) { values.append(value) }
        return values
    }
}
