import NIOCore

/// Classifies the first bytes a client sends, the byte checks mitmproxy's `NextLayer` addon
/// (`addons/next_layer.py`) makes before choosing a layer.
///
/// Pure and incremental: call ``sniff(_:)`` with everything buffered so far until the verdict is
/// not ``Verdict/needMoreData``. The answer never changes once given, since every rule decides on
/// a fixed prefix of the stream.
public enum ProtocolSniffer {
    /// What the first bytes look like.
    public enum Verdict: Sendable, Hashable {
        /// All bytes so far fit more than one possibility (or there are none yet).
        case needMoreData
        /// A TLS handshake record carrying a ClientHello; see
        /// ``ClientHello/looksLikeTLSClientHello(_:)``.
        case tls
        /// The HTTP/2 client connection preface (RFC 9113 §3.4), i.e. HTTP/2 with prior knowledge.
        case http2Preface
        /// An HTTP/1 request line: an uppercase method token followed by a space (RFC 9112 §3).
        case http1
        /// Anything else; mitmproxy falls back to a raw TCP layer.
        case unknown
    }

    /// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, the 24 octets that open an HTTP/2 connection
    /// (RFC 9113 §3.4).
    public static let http2Preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    /// Methods are matched up to this many characters; the longest registered one
    /// (`UPDATEREDIRECTREF`) has 17.
    public static let maximumMethodLength = 24

    /// Classifies `firstBytes` (its readable bytes; the reader index is not moved).
    ///
    /// Rules, in order:
    /// 1. `0x16` first: TLS if ``ClientHello/looksLikeTLSClientHello(_:)`` agrees.
    /// 2. A prefix of the HTTP/2 preface waits for all 24 bytes, so `PRI * HTTP/2.0…` is not
    ///    taken for an HTTP/1 `PRI` request.
    /// 3. HTTP/1: a method of 3 to ``maximumMethodLength`` characters from `A-Z`, `-`, `_`, starting
    ///    with a letter, then a space. mitmproxy likewise requires three letters and a space in the
    ///    first line; lowercase methods are not HTTP (methods are case-sensitive, RFC 9110 §9.1).
    public static func sniff(_ firstBytes: ByteBuffer) -> Verdict {
        let bytes = firstBytes.readableBytesView
        guard let first = bytes.first else { return .needMoreData }

        if first == 0x16 {
            switch ClientHello.looksLikeTLSClientHello(firstBytes) {
            case .some(true): return .tls
            case .some(false): return .unknown
            case .none: return .needMoreData
            }
        }

        if bytes.starts(with: Self.http2Preface) { return .http2Preface }
        if Self.http2Preface.starts(with: bytes) { return .needMoreData }

        return Self.sniffHTTP1RequestLine(bytes)
    }

    private static func sniffHTTP1RequestLine(_ bytes: ByteBufferView) -> Verdict {
        for (offset, byte) in bytes.enumerated() {
            if byte == UInt8(ascii: " ") { return offset >= 3 ? .http1 : .unknown }
            let isMethodByte =
                UInt8(ascii: "A")...UInt8(ascii: "Z") ~= byte
                || (offset > 0 && (byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")))
            guard isMethodByte, offset < Self.maximumMethodLength else { return .unknown }
        }
        return .needMoreData
    }
}
