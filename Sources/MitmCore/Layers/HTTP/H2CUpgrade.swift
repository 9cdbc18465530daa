import NIOCore
import NIOHTTP1

/// Cleartext HTTP/2 by `Upgrade: h2c` (RFC 7540 §3.2), the server side, without sockets.
///
/// The request that carries the offer is answered on stream 1 of the new HTTP/2 connection, a
/// stream the client never opens itself. NIO's HTTP/2 handler has no notion of that stream, so the
/// upgrade request is turned into the HEADERS frame the client would have sent and spliced into the
/// client's byte stream right after its connection preface (`Splicer`): from then on, the HTTP/2
/// handler sees an ordinary first request on stream 1.
public enum H2CUpgrade {
    /// Whether `head` offers `h2c` and can be taken up: the offer's three headers, and no body
    /// (a body would have to be read as HTTP/1 before switching).
    public static func canAccept(_ head: HTTPRequestHead) -> Bool {
        let headers = head.headers
        guard headers["upgrade"].contains(where: { $0.lowercased().split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces) == "h2c" } }),
            headers.contains(name: "http2-settings"),
            headers["connection"].contains(where: { $0.lowercased().contains("http2-settings") })
        else { return false }
        if headers.contains(name: "transfer-encoding") { return false }
        if let length = headers.first(name: "content-length"), length != "0" { return false }
        return head.version == .http1_1
    }

    /// The headers that must not cross into HTTP/2 (RFC 7540 §8.1.2.2), and the upgrade offer itself.
    static let connectionSpecific: Set<String> = [
        "connection", "upgrade", "http2-settings", "keep-alive", "proxy-connection", "transfer-encoding", "host",
    ]

    /// The HEADERS frame (END_STREAM, END_HEADERS) for stream 1 that stands for `head`, its fields
    /// HPACK-encoded as literals without indexing (so the decoder's dynamic table is untouched).
    /// `nil` when it does not fit one frame of the default maximum size (16,384 bytes).
    public static func headersFrame(for head: HTTPRequestHead) -> [UInt8]? {
        var fields: [(String, String)] = [
            (":method", head.method.rawValue),
            (":scheme", "http"),
            (":path", head.uri),
        ]
        if let host = head.headers.first(name: "host") { fields.append((":authority", host)) }
        for field in head.headers {
            let name = field.name.lowercased()
            if connectionSpecific.contains(name) { continue }
            if name == "te" && field.value.lowercased() != "trailers" { continue }
            fields.append((name, field.value))
        }
        var block: [UInt8] = []
        for (name, value) in fields {
            block.append(0x00)  // literal header field without indexing, new name
            appendString(Array(name.utf8), to: &block)
            appendString(Array(value.utf8), to: &block)
        }
        guard block.count <= 16_384 else { return nil }
        let length = block.count
        var frame: [UInt8] = [UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)]
        frame.append(0x01)  // HEADERS
        frame.append(0x05)  // END_STREAM | END_HEADERS
        frame += [0, 0, 0, 1]  // stream 1
        return frame + block
    }

    /// An HPACK string literal, not Huffman-coded: a 7-bit-prefix length, then the bytes.
    private static func appendString(_ bytes: [UInt8], to block: inout [UInt8]) {
        var length = bytes.count
        if length < 127 {
            block.append(UInt8(length))
        } else {
            block.append(127)
            length -= 127
            while length >= 128 {
                block.append(UInt8(length & 0x7F) | 0x80)
                length >>= 7
            }
            block.append(UInt8(length))
        }
        block += bytes
    }

    /// Splices the stream-1 HEADERS frame into the client's bytes after its connection preface and
    /// the SETTINGS frame that ends it. Bytes in, bytes out; once spliced, everything passes as is.
    public struct Splicer: Sendable {
        static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

        private var pending: [UInt8] = []
        private var frame: [UInt8]?

        public init(headersFrame: [UInt8]) {
            self.frame = headersFrame
        }

        /// Whether the frame has been spliced in (the splicer is no longer needed).
        public var isDone: Bool { frame == nil }

        /// The bytes to pass on for `bytes` just received (possibly none yet).
        public mutating func receive(_ bytes: some Collection<UInt8>) -> [UInt8] {
            guard let frame else { return Array(bytes) }
            pending += bytes
            let prefaceLength = Self.preface.count
            guard pending.count >= prefaceLength + 9 else {
                // Not a preface at all: pass it on for the HTTP/2 handler to refuse.
                if !Self.preface.starts(with: pending.prefix(prefaceLength)) { return flush() }
                return []
            }
            guard pending.starts(with: Self.preface), pending[prefaceLength + 3] == 0x04 else { return flush() }
            let settingsLength = Int(pending[prefaceLength]) << 16 | Int(pending[prefaceLength + 1]) << 8 | Int(pending[prefaceLength + 2])
            let end = prefaceLength + 9 + settingsLength
            guard pending.count >= end else { return [] }
            let out = Array(pending[..<end]) + frame + pending[end...]
            self.frame = nil
            pending = []
            return out
        }

        private mutating func flush() -> [UInt8] {
            frame = nil
            defer { pending = [] }
            return pending
        }
    }
}
