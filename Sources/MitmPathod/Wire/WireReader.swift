import NIOCore

/// Reads HTTP/1 heads, bodies and websocket frames from a connection's inbound byte stream,
/// buffering only what the current item needs. Bodies are counted, and kept only up to `keep` bytes.
final class WireReader {
    private var iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private var buffer = ByteBuffer()
    /// The longest head accepted.
    static let headLimit = 256 * 1024

    init(_ inbound: NIOAsyncChannelInboundStream<ByteBuffer>) {
        self.iterator = inbound.makeAsyncIterator()
    }

    /// Reads more bytes; false at the end of the stream.
    private func fill() async throws -> Bool {
        guard var more = try await iterator.next() else { return false }
        buffer.writeBuffer(&more)
        return true
    }

    /// Bytes already buffered beyond what has been read.
    var hasBufferedBytes: Bool { buffer.readableBytes > 0 }

    /// The next head, up to and including its blank line; nil if the peer closed before sending a byte.
    func readHead() async throws -> [UInt8]? {
        var searchFrom = 0
        while true {
            let view = buffer.readableBytesView
            if view.count >= 4 {
                let bytes = Array(view)
                var index = max(0, searchFrom - 3)
                while index + 3 < bytes.count {
                    if bytes[index] == 13, bytes[index + 1] == 10, bytes[index + 2] == 13, bytes[index + 3] == 10 {
                        buffer.moveReaderIndex(forwardBy: index + 4)
                        return Array(bytes[0..<(index + 4)])
                    }
                    index += 1
                }
                searchFrom = bytes.count
            }
            if buffer.readableBytes > Self.headLimit { throw WireError.malformed("head longer than \(Self.headLimit) bytes") }
            guard try await fill() else {
                if buffer.readableBytes == 0 { return nil }
                throw WireError.closed("connection closed in the middle of a head")
            }
        }
    }

    /// Exactly `count` bytes, of which the first `keep` are returned.
    func read(count: UInt64, keep: Int) async throws -> [UInt8] {
        var remaining = count
        var kept: [UInt8] = []
        while remaining > 0 {
            if buffer.readableBytes == 0 {
                guard try await fill() else { throw WireError.closed("connection closed with \(remaining) bytes of a body unread") }
            }
            let take = Int(min(UInt64(buffer.readableBytes), remaining))
            if kept.count < keep {
                kept += buffer.getBytes(at: buffer.readerIndex, length: min(take, keep - kept.count)) ?? []
            }
            buffer.moveReaderIndex(forwardBy: take)
            remaining -= UInt64(take)
        }
        return kept
    }

    /// Everything until the peer closes: (total bytes, the first `keep`).
    func readToEnd(keep: Int) async throws -> (UInt64, [UInt8]) {
        var total: UInt64 = 0
        var kept: [UInt8] = []
        repeat {
            let take = buffer.readableBytes
            if kept.count < keep {
                kept += buffer.getBytes(at: buffer.readerIndex, length: min(take, keep - kept.count)) ?? []
            }
            buffer.moveReaderIndex(forwardBy: take)
            total += UInt64(take)
        } while try await fill()
        return (total, kept)
    }

    /// One line ending in CRLF, without it.
    func readLine() async throws -> String {
        while true {
            let view = buffer.readableBytesView
            if let lf = view.firstIndex(of: 10) {
                let length = lf - view.startIndex + 1
                var line = buffer.readBytes(length: length) ?? []
                if line.last == 10 { line.removeLast() }
                if line.last == 13 { line.removeLast() }
                return String(decoding: line, as: UTF8.self)
            }
            if buffer.readableBytes > 64 * 1024 { throw WireError.malformed("line longer than 64 KiB") }
            guard try await fill() else { throw WireError.closed("connection closed in the middle of a line") }
        }
    }

    /// A chunked body (RFC 9112 §7.1): (decoded length, the first `keep` bytes). Trailers are skipped.
    func readChunked(keep: Int) async throws -> (UInt64, [UInt8]) {
        var total: UInt64 = 0
        var kept: [UInt8] = []
        while true {
            let line = try await readLine()
            let sizeText = line.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(in: " \t") } ?? ""
            guard let size = UInt64(sizeText, radix: 16) else { throw WireError.malformed("invalid chunk size line '\(line)'") }
            if size == 0 {
                while try await !readLine().isEmpty {}
                return (total, kept)
            }
            kept += try await read(count: size, keep: max(0, keep - kept.count))
            total += size
            guard try await readLine().isEmpty else { throw WireError.malformed("chunk not followed by CRLF") }
        }
    }

    /// One websocket frame; nil if the peer closed between frames.
    func readFrame(keep: Int) async throws -> WireFrame? {
        guard let first = try await readByteOrEnd() else { return nil }
        let second = try await read(count: 1, keep: 1)[0]
        var length = UInt64(second & 0x7F)
        if length == 126 {
            let b = try await read(count: 2, keep: 2)
            length = UInt64(b[0]) << 8 | UInt64(b[1])
        } else if length == 127 {
            let b = try await read(count: 8, keep: 8)
            length = b.reduce(0) { $0 << 8 | UInt64($1) }
        }
        let masked = second & 0x80 != 0
        let key = masked ? try await read(count: 4, keep: 4) : []
        var payload = try await read(count: length, keep: keep)
        if masked {
            for index in payload.indices { payload[index] ^= key[index % 4] }
        }
        return WireFrame(
            fin: first & 0x80 != 0, rsv: (first >> 4) & 0x7, opcode: first & 0x0F, masked: masked,
            length: length, payload: payload
        )
    }

    private func readByteOrEnd() async throws -> UInt8? {
        if buffer.readableBytes == 0 {
            guard try await fill() else { return nil }
        }
        return buffer.readInteger(as: UInt8.self)
    }
}

/// A websocket frame as read: header fields and the (unmasked) start of its payload.
public struct WireFrame: Sendable, Codable, Hashable {
    public var fin: Bool
    public var rsv: UInt8
    public var opcode: UInt8
    public var masked: Bool
    public var length: UInt64
    public var payload: [UInt8]

    public var opcodeName: String {
        OpcodeSpec.names.first { $0.1 == opcode }?.0 ?? String(opcode)
    }
}

enum WireError: Error, CustomStringConvertible {
    case malformed(String)
    case closed(String)

    var description: String {
        switch self {
        case .malformed(let s), .closed(let s): return s
        }
    }
}

/// A parsed HTTP/1 head: the start line's three parts and the header fields in order.
struct HTTPHead {
    var first: String
    var second: String
    var third: String
    var headers: [(name: String, value: String)]

    init(parsing bytes: [UInt8]) throws {
        let text = String(decoding: bytes, as: UTF8.self)
        var lines = text.components(separatedBy: "\r\n")
        while lines.last == "" { lines.removeLast() }
        guard let start = lines.first, !start.isEmpty else { throw WireError.malformed("empty start line") }
        let parts = start.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 2 else { throw WireError.malformed("invalid start line '\(start)'") }
        first = parts[0]
        second = parts[1]
        third = parts.count > 2 ? parts[2] : ""
        headers = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { throw WireError.malformed("invalid header line '\(line)'") }
            headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: " \t")))
        }
    }

    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    var isChunked: Bool { header("transfer-encoding")?.lowercased().contains("chunked") ?? false }
    var contentLength: UInt64? { header("content-length").flatMap { UInt64($0) } }
}

extension Substring {
    fileprivate func trimmingCharacters(in set: String) -> String {
        String(self.drop { set.contains($0) }.reversed().drop { set.contains($0) }.reversed())
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: String) -> String {
        Substring(self).trimmingCharacters(in: set)
    }
}

/// Bytes shown to a person: escaped the way the language writes literals, cut at `limit`.
func escapedForDisplay(_ bytes: [UInt8], limit: Int = 1024) -> String {
    Escaping.escape(Array(bytes.prefix(limit)), quote: false)
}
