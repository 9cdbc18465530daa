import Foundation
import MitmCore

/// Where rendering reads a value's bytes from: a known length, read a block at a time, so a
/// generated gigabyte is produced as it is sent and never held whole.
public protocol ByteSource {
    /// The total number of bytes.
    var length: UInt64 { get }
    /// `count` bytes (fewer at the end) starting at `offset`.
    func read(offset: UInt64, count: Int) throws -> [UInt8]
}

extension ByteSource {
    /// All the bytes. Only for values known to be small (headers, explained specs, tests).
    public func readAll() throws -> [UInt8] {
        try read(offset: 0, count: Int(clamping: length))
    }
}

/// What rendering needs from its surroundings.
public struct RenderSettings: Sendable {
    /// The directory `<path` values are read from; nil refuses every file value, as pathod does
    /// without `-d`.
    public var staticDirectory: String?
    /// Whether messages are rendered by the client (pathoc): websocket frames are then masked by default.
    public var isClient: Bool
    /// The `Host` header a request gets unless it sets one or is raw.
    public var requestHost: String?
    /// The client's `Sec-WebSocket-Key`, for a `ws` response's `Sec-WebSocket-Accept`.
    public var websocketKey: String?

    public init(staticDirectory: String? = nil, isClient: Bool = false, requestHost: String? = nil, websocketKey: String? = nil) {
        self.staticDirectory = staticDirectory
        self.isClient = isClient
        self.requestHost = requestHost
        self.websocketKey = websocketKey
    }
}

/// A literal's bytes.
public struct LiteralSource: ByteSource {
    public let bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public var length: UInt64 { UInt64(bytes.count) }
    public func read(offset: UInt64, count: Int) throws -> [UInt8] {
        guard offset < length else { return [] }
        let start = Int(offset)
        return Array(bytes[start..<min(bytes.count, start + count)])
    }
}

/// Random bytes of one ``DataType``, made on demand.
public struct RandomSource: ByteSource {
    public let type: DataType
    public let length: UInt64
    private let alphabet: [UInt8]

    public init(type: DataType, length: UInt64) {
        self.type = type
        self.length = length
        self.alphabet = type.alphabet
    }

    public func read(offset: UInt64, count: Int) throws -> [UInt8] {
        guard offset < length else { return [] }
        let n = Int(min(UInt64(count), length - offset))
        // One draw from the system per block seeds a fast generator for the rest: the system's
        // generator makes a getrandom(2) call per 64-bit word, which held a gigabyte body to
        // about 16 MiB/s. The bytes need not be unpredictable, only varied.
        var seed = SystemRandomNumberGenerator()
        var generator = SplitMix64(seed: seed.next())
        var out = [UInt8](repeating: 0, count: n)
        let size = UInt64(alphabet.count)
        if type == .bytes {
            // Every byte value is allowed: copy whole random words.
            out.withUnsafeMutableBytes { buffer in
                var index = 0
                while index < n {
                    var word = generator.next()
                    let take = min(8, n - index)
                    withUnsafeBytes(of: &word) { buffer.baseAddress!.advanced(by: index).copyMemory(from: $0.baseAddress!, byteCount: take) }
                    index += take
                }
            }
            return out
        }
        out.withUnsafeMutableBufferPointer { buffer in
            var index = 0
            while index < n {
                var word = generator.next()
                // Each 64-bit word yields several draws; the modulo bias of at most 95 symbols over 2^16 is negligible.
                for _ in 0..<4 where index < n {
                    buffer[index] = alphabet[Int((word & 0xFFFF) % size)]
                    word >>= 16
                    index += 1
                }
            }
        }
        return out
    }
}

/// A file under the static directory. The path must stay inside it once resolved.
public final class FileSource: ByteSource {
    public let path: String
    public let length: UInt64
    private let handle: FileHandle

    public init(path: String, staticDirectory: String?) throws {
        guard let staticDirectory else {
            throw RenderError.fileAccessDenied("File access disabled.")
        }
        let root = URL(fileURLWithPath: staticDirectory).standardizedFileURL.resolvingSymlinksInPath().path
        let full = URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: root + "/")).standardizedFileURL
            .resolvingSymlinksInPath().path
        guard full == root || full.hasPrefix(root.hasSuffix("/") ? root : root + "/") else {
            throw RenderError.fileAccessDenied("File access outside of configured directory")
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: full, isDirectory: &isDirectory), !isDirectory.boolValue,
            let handle = FileHandle(forReadingAtPath: full)
        else {
            throw RenderError.fileAccessDenied("File not readable")
        }
        let attributes = try? FileManager.default.attributesOfItem(atPath: full)
        self.path = full
        self.handle = handle
        self.length = (attributes?[.size] as? NSNumber)?.uint64Value ?? 0
    }

    deinit { try? handle.close() }

    public func read(offset: UInt64, count: Int) throws -> [UInt8] {
        guard offset < length else { return [] }
        try handle.seek(toOffset: offset)
        let data = try handle.read(upToCount: Int(min(UInt64(count), length - offset))) ?? Data()
        return Array(data)
    }
}

/// Another source's bytes XORed with a websocket masking key, aligned to the start of the payload.
public struct MaskedSource: ByteSource {
    public let inner: any ByteSource
    public let key: [UInt8]
    public var length: UInt64 { inner.length }

    public init(inner: any ByteSource, key: [UInt8]) {
        self.inner = inner
        self.key = key
    }

    public func read(offset: UInt64, count: Int) throws -> [UInt8] {
        var bytes = try inner.read(offset: offset, count: count)
        guard key.count == 4 else { return bytes }
        for index in bytes.indices {
            bytes[index] ^= key[Int((offset + UInt64(index)) % 4)]
        }
        return bytes
    }
}
