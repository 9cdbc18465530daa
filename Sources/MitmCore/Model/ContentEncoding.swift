import CBrotli
import CZstd
import CompressNIO
import NIOCore

/// HTTP content codings (mitmproxy's `mitmproxy.net.encoding`): decode and encode a body by the name
/// in its `Content-Encoding` header.
///
/// Known names (case-insensitive, surrounding whitespace ignored):
///
/// | name                      | decoding                                         | encoding                  |
/// |---------------------------|--------------------------------------------------|---------------------------|
/// | `identity`, `none`, `""`  | unchanged                                        | unchanged                 |
/// | `gzip`, `x-gzip`          | gzip (RFC 1952), several members in a row, zero padding after the last | gzip, level 6 |
/// | `deflate`                 | zlib-wrapped (RFC 1950), or raw (RFC 1951) as sent by some servers | zlib-wrapped     |
/// | `deflateraw`              | as `deflate`                                     | raw deflate               |
/// | `br`                      | brotli (RFC 7932)                                | brotli, quality 6         |
/// | `zstd`                    | zstandard (RFC 8878), several frames in a row    | zstandard, level 3        |
///
/// Decoding is safe on hostile input: it is streamed into a body that may not grow past `limit`
/// bytes, so a decompression bomb throws ``ContentEncodingError/Reason/sizeLimitExceeded(limit:)``
/// instead of exhausting memory. Corrupt and truncated data throw; nothing traps.
///
/// As in mitmproxy, an empty body decodes to an empty body whatever the coding.
public enum ContentEncoding {
    /// The default largest decoded body: 256 MiB.
    public static let defaultDecodeLimit = 256 * 1024 * 1024

    /// The canonical names of the codings this type decodes and encodes.
    public static let supportedEncodings: [String] = ["identity", "gzip", "deflate", "br", "zstd"]

    /// Whether `name` is a content coding that ``decode(_:encoding:limit:)`` and
    /// ``encode(_:encoding:)`` understand (see the table on ``ContentEncoding``).
    public static func isSupported(_ name: String) -> Bool {
        Coding(name: name) != nil
    }

    /// Whether every coding listed in a `Content-Encoding` header value (`"gzip, br"`) is supported.
    public static func isSupported(contentEncodingHeader header: String) -> Bool {
        codingNames(in: header).allSatisfy { isSupported($0) }
    }

    /// Decodes `body`, encoded with the content coding `name`.
    ///
    /// - Parameters:
    ///   - body: The body as received.
    ///   - name: A content coding name, such as `gzip`, `x-gzip`, `deflate`, `br`, `zstd`, `identity`
    ///     or `""` (case-insensitive).
    ///   - limit: The largest decoded body allowed, in bytes.
    /// - Throws: ``ContentEncodingError`` for an unknown coding, corrupt or truncated data, or a
    ///   decoded body larger than `limit`.
    public static func decode(
        _ body: ByteBuffer,
        encoding name: String,
        limit: Int = defaultDecodeLimit
    ) throws(ContentEncodingError) -> ByteBuffer {
        let label = normalized(name)
        guard let coding = Coding(name: name) else {
            throw ContentEncodingError(encoding: label, reason: .unsupportedEncoding)
        }
        if coding == .identity { return body }
        if body.readableBytes == 0 { return ByteBuffer() }
        let limit = max(0, limit)
        switch coding {
        case .identity:
            return body
        case .gzip:
            return try Gzip.decode(body, limit: limit, label: label)
        case .deflate, .deflateRaw:
            return try Deflate.decode(body, limit: limit, label: label)
        case .brotli:
            return try Brotli.decode(body, limit: limit, label: label)
        case .zstd:
            return try Zstd.decode(body, limit: limit, label: label)
        }
    }

    /// Encodes `body` with the content coding `name`.
    ///
    /// - Throws: ``ContentEncodingError`` for an unknown coding, or when the compressor fails.
    public static func encode(_ body: ByteBuffer, encoding name: String) throws(ContentEncodingError) -> ByteBuffer {
        let label = normalized(name)
        guard let coding = Coding(name: name) else {
            throw ContentEncodingError(encoding: label, reason: .unsupportedEncoding)
        }
        switch coding {
        case .identity:
            return body
        case .gzip:
            return try Deflate.compress(body, algorithm: .gzip(), label: label)
        case .deflate:
            return try Deflate.compress(body, algorithm: .zlib(), label: label)
        case .deflateRaw:
            return try Deflate.compress(body, algorithm: .deflate(), label: label)
        case .brotli:
            return try Brotli.encode(body, label: label)
        case .zstd:
            return try Zstd.encode(body, label: label)
        }
    }

    /// Decodes `body` by a whole `Content-Encoding` header value. Codings listed in one header
    /// (`"gzip, br"`) were applied in order, so they are undone in reverse order; empty entries and
    /// `identity` are skipped. Every name is checked before any decoding starts.
    ///
    /// `limit` bounds the output of every step (and so the final body).
    public static func decode(
        _ body: ByteBuffer,
        contentEncodingHeader header: String,
        limit: Int = defaultDecodeLimit
    ) throws(ContentEncodingError) -> ByteBuffer {
        let names = codingNames(in: header)
        if let unsupported = names.first(where: { !isSupported($0) }) {
            throw ContentEncodingError(encoding: normalized(unsupported), reason: .unsupportedEncoding)
        }
        var body = body
        for name in names.reversed() {
            body = try decode(body, encoding: name, limit: limit)
        }
        return body
    }

    /// Encodes `body` by a whole `Content-Encoding` header value, applying the listed codings in
    /// order (`"gzip, br"`: gzip first, then brotli).
    public static func encode(_ body: ByteBuffer, contentEncodingHeader header: String) throws(ContentEncodingError) -> ByteBuffer {
        let names = codingNames(in: header)
        if let unsupported = names.first(where: { !isSupported($0) }) {
            throw ContentEncodingError(encoding: normalized(unsupported), reason: .unsupportedEncoding)
        }
        var body = body
        for name in names {
            body = try encode(body, encoding: name)
        }
        return body
    }

    // MARK: - Names

    /// The codings as this file tells them apart.
    fileprivate enum Coding {
        case identity, gzip, deflate, deflateRaw, brotli, zstd

        init?(name: String) {
            switch ContentEncoding.normalized(name) {
            case "", "identity", "none": self = .identity
            case "gzip", "x-gzip": self = .gzip
            case "deflate": self = .deflate
            case "deflateraw": self = .deflateRaw
            case "br": self = .brotli
            case "zstd": self = .zstd
            default: return nil
            }
        }
    }

    fileprivate static func normalized(_ name: String) -> String {
        trimmed(name).lowercased()
    }

    private static func trimmed<S: StringProtocol>(_ s: S) -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
        guard let start = s.firstIndex(where: { !isSpace($0) }),
            let end = s.lastIndex(where: { !isSpace($0) })
        else { return "" }
        return String(s[start...end])
    }

    /// The non-empty, non-identity entries of a `Content-Encoding` header value, in header order.
    private static func codingNames(in header: String) -> [String] {
        header.split(separator: ",", omittingEmptySubsequences: false)
            .map { trimmed($0) }
            .filter { !$0.isEmpty && Coding(name: $0) != .identity }
    }

    /// Output is produced in pieces of this size, and appended to the decoded body only while the
    /// body stays within the limit.
    fileprivate static let chunkSize = 64 * 1024
}

/// Why content could not be decoded or encoded.
public struct ContentEncodingError: Error, CustomStringConvertible, Hashable, Sendable {
    public enum Reason: Hashable, Sendable {
        /// The coding name is not one ``ContentEncoding`` knows.
        case unsupportedEncoding
        /// The data is not valid for the coding; the associated text is the decompressor's detail.
        case corruptData(String)
        /// The data ends before the compressed stream does.
        case truncatedData
        /// Bytes follow the end of the compressed stream that are not another stream.
        case trailingData
        /// The decoded body would be larger than `limit` bytes.
        case sizeLimitExceeded(limit: Int)
        /// The compressor failed; the associated text says how.
        case encodingFailed(String)
    }

    /// The coding name as given (trimmed and lower-cased).
    public var encoding: String
    public var reason: Reason

    public init(encoding: String, reason: Reason) {
        self.encoding = encoding
        self.reason = reason
    }

    public var description: String {
        let name = encoding.isEmpty ? "\"\"" : encoding
        switch reason {
        case .unsupportedEncoding:
            return "unsupported content encoding \"\(encoding)\""
        case .corruptData(let detail):
            return "cannot decode \(name) body: corrupt data" + (detail.isEmpty ? "" : " (\(detail))")
        case .truncatedData:
            return "cannot decode \(name) body: data is truncated (the compressed stream does not end)"
        case .trailingData:
            return "cannot decode \(name) body: unexpected data after the end of the compressed stream"
        case .sizeLimitExceeded(let limit):
            return "cannot decode \(name) body: decoded size exceeds the limit of \(limit) bytes"
        case .encodingFailed(let detail):
            return "cannot encode \(name) body: \(detail)"
        }
    }
}

// MARK: - gzip and deflate (zlib, through CompressNIO)

extension ContentEncoding {
    fileprivate enum Deflate {
        /// `deflate`: zlib-wrapped first; if that fails, raw deflate (as Python's `zlib` fallback in
        /// mitmproxy). Bytes after the end of the stream are ignored, as zlib does.
        static func decode(_ body: ByteBuffer, limit: Int, label: String) throws(ContentEncodingError) -> ByteBuffer {
            let zlibError: ContentEncodingError
            do {
                var input = body
                var output = ByteBuffer()
                try inflate(&input, algorithm: .zlib, into: &output, limit: limit, label: label)
                return output
            } catch {
                if case .sizeLimitExceeded = error.reason { throw error }
                zlibError = error
            }
            do {
                var input = body
                var output = ByteBuffer()
                try inflate(&input, algorithm: .deflate, into: &output, limit: limit, label: label)
                return output
            } catch {
                if case .sizeLimitExceeded = error.reason { throw error }
                // Report whichever attempt the data looked meant for.
                throw hasZlibHeader(body) ? zlibError : error
            }
        }

        /// RFC 1950: CM = 8, CINFO <= 7, and the header is a multiple of 31.
        static func hasZlibHeader(_ body: ByteBuffer) -> Bool {
            guard let cmf = body.getInteger(at: body.readerIndex, as: UInt8.self),
                let flg = body.getInteger(at: body.readerIndex + 1, as: UInt8.self)
            else { return false }
            return cmf & 0x0F == 8 && cmf >> 4 <= 7 && (UInt16(cmf) << 8 | UInt16(flg)) % 31 == 0
        }

        /// Inflates one zlib, gzip or raw deflate stream from `input`, appending to `output` without
        /// letting it grow past `limit`. On return `input` holds whatever followed the stream.
        static func inflate(
            _ input: inout ByteBuffer,
            algorithm: ZlibAlgorithm,
            into output: inout ByteBuffer,
            limit: Int,
            label: String
        ) throws(ContentEncodingError) {
            let decompressor: ZlibDecompressor
            do {
                decompressor = try ZlibDecompressor(algorithm: algorithm, windowSize: 15)
            } catch {
                throw ContentEncodingError(encoding: label, reason: .corruptData("cannot start zlib: \(error)"))
            }
            var chunk = ByteBufferAllocator().buffer(capacity: ContentEncoding.chunkSize)
            while true {
                chunk.clear()
                let inputBefore = input.readableBytes
                var finished = false
                var truncated = false
                do {
                    try decompressor.inflate(from: &input, to: &chunk)
                    // Returning without an error is Z_STREAM_END, or Z_OK with all input consumed
                    // (zlib stops early only when the output is full, which throws). Input left over
                    // therefore means the stream ended. With no input, zlib answers Z_STREAM_END once
                    // the stream is done and Z_BUF_ERROR (thrown) otherwise, unless it still had output.
                    finished = input.readableBytes > 0 || (inputBefore == 0 && chunk.readableBytes == 0)
                } catch let error as CompressNIOError where error == .bufferOverflow {
                    // The chunk is full: take it and go on.
                } catch let error as CompressNIOError where error == .inputBufferOverflow {
                    truncated = true
                } catch let error as CompressNIOError where error == .corruptData {
                    throw ContentEncodingError(encoding: label, reason: .corruptData(detail(algorithm)))
                } catch {
                    throw ContentEncodingError(encoding: label, reason: .corruptData("zlib error: \(error)"))
                }
                guard chunk.readableBytes <= limit - output.readableBytes else {
                    throw ContentEncodingError(encoding: label, reason: .sizeLimitExceeded(limit: limit))
                }
                output.writeBuffer(&chunk)
                if truncated {
                    throw ContentEncodingError(encoding: label, reason: .truncatedData)
                }
                if finished { return }
            }
        }

        private static func detail(_ algorithm: ZlibAlgorithm) -> String {
            switch algorithm {
            case .gzip: return "invalid gzip stream"
            case .zlib: return "invalid zlib stream"
            case .deflate: return "invalid deflate stream"
            }
        }

        static func compress(
            _ body: ByteBuffer,
            algorithm: CompressionAlgorithm,
            label: String
        ) throws(ContentEncodingError) -> ByteBuffer {
            var input = body
            do {
                return try input.compress(with: algorithm)
            } catch {
                throw ContentEncodingError(encoding: label, reason: .encodingFailed("zlib error: \(error)"))
            }
        }
    }
}

extension ContentEncoding {
    fileprivate enum Gzip {
        /// gzip as Python's `GzipFile` reads it: members one after another, zero bytes after a member
        /// skipped, anything else after it an error.
        static func decode(_ body: ByteBuffer, limit: Int, label: String) throws(ContentEncodingError) -> ByteBuffer {
            var input = body
            var output = ByteBuffer()
            while true {
                try ContentEncoding.Deflate.inflate(&input, algorithm: .gzip, into: &output, limit: limit, label: label)
                while input.getInteger(at: input.readerIndex, as: UInt8.self) == 0 {
                    input.moveReaderIndex(forwardBy: 1)
                }
                if input.readableBytes == 0 { return output }
                guard input.getInteger(at: input.readerIndex, as: UInt8.self) == 0x1F,
                    input.readableBytes < 2 || input.getInteger(at: input.readerIndex + 1, as: UInt8.self) == 0x8B
                else {
                    throw ContentEncodingError(encoding: label, reason: .trailingData)
                }
            }
        }
    }
}

// MARK: - Brotli

extension ContentEncoding {
    fileprivate enum Brotli {
        /// Quality 6 of 0...11: most of the ratio of 11 (Python's default) at a fraction of the time,
        /// nginx's default for on-the-fly compression.
        static let quality: Int32 = 6

        static func decode(_ body: ByteBuffer, limit: Int, label: String) throws(ContentEncodingError) -> ByteBuffer {
            guard let state = BrotliDecoderCreateInstance(nil, nil, nil) else {
                throw ContentEncodingError(encoding: label, reason: .corruptData("cannot create a brotli decoder"))
            }
            defer { BrotliDecoderDestroyInstance(state) }
            let chunkSize = ContentEncoding.chunkSize
            let chunk = UnsafeMutablePointer<UInt8>.allocate(capacity: chunkSize)
            defer { chunk.deallocate() }

            var output = ByteBuffer()
            let failure: ContentEncodingError? = body.withUnsafeReadableBytes { raw -> ContentEncodingError? in
                let bytes = raw.bindMemory(to: UInt8.self)
                var availableIn = bytes.count
                var nextIn = bytes.baseAddress
                while true {
                    var availableOut = chunkSize
                    var nextOut: UnsafeMutablePointer<UInt8>? = chunk
                    let result = BrotliDecoderDecompressStream(state, &availableIn, &nextIn, &availableOut, &nextOut, nil)
                    let produced = chunkSize - availableOut
                    guard produced <= limit - output.readableBytes else {
                        return ContentEncodingError(encoding: label, reason: .sizeLimitExceeded(limit: limit))
                    }
                    output.writeBytes(UnsafeBufferPointer(start: chunk, count: produced))
                    switch result {
                    case BROTLI_DECODER_RESULT_SUCCESS:
                        return availableIn > 0 ? ContentEncodingError(encoding: label, reason: .trailingData) : nil
                    case BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT:
                        continue
                    case BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT:
                        return ContentEncodingError(encoding: label, reason: .truncatedData)
                    default:
                        let code = BrotliDecoderGetErrorCode(state)
                        let text = BrotliDecoderErrorString(code).map { String(cString: $0) } ?? "error \(code.rawValue)"
                        return ContentEncodingError(encoding: label, reason: .corruptData(text))
                    }
                }
            }
            if let failure { throw failure }
            return output
        }

        static func encode(_ body: ByteBuffer, label: String) throws(ContentEncodingError) -> ByteBuffer {
            let count = body.readableBytes
            // A bound with room to spare for the empty stream, which the bound leaves out on some versions.
            let bound = BrotliEncoderMaxCompressedSize(count)
            guard bound > 0 else {
                throw ContentEncodingError(encoding: label, reason: .encodingFailed("body too large for brotli"))
            }
            let capacity = bound + 16
            var output = ByteBufferAllocator().buffer(capacity: capacity)
            var ok = false
            body.withUnsafeReadableBytes { raw in
                let input = raw.bindMemory(to: UInt8.self)
                output.writeWithUnsafeMutableBytes(minimumWritableBytes: capacity) { out in
                    var encodedSize = out.count
                    var empty: UInt8 = 0
                    let written = withUnsafePointer(to: &empty) { emptyPointer in
                        ok =
                            BrotliEncoderCompress(
                                quality,
                                BROTLI_DEFAULT_WINDOW,
                                BROTLI_MODE_GENERIC,
                                count,
                                input.baseAddress ?? emptyPointer,
                                &encodedSize,
                                out.baseAddress!.assumingMemoryBound(to: UInt8.self)
                            ) == BROTLI_TRUE
                        return encodedSize
                    }
                    return ok ? written : 0
                }
            }
            guard ok else {
                throw ContentEncodingError(encoding: label, reason: .encodingFailed("brotli encoder failed"))
            }
            return output
        }
    }
}

// MARK: - Zstandard

extension ContentEncoding {
    fileprivate enum Zstd {
        static func decode(_ body: ByteBuffer, limit: Int, label: String) throws(ContentEncodingError) -> ByteBuffer {
            guard let context = ZSTD_createDCtx() else {
                throw ContentEncodingError(encoding: label, reason: .corruptData("cannot create a zstd decoder"))
            }
            defer { ZSTD_freeDCtx(context) }
            // The decoder's default refuses frames wanting a window over 128 MiB (windowLog 27), which
            // bounds its own memory; the output is bounded below.
            let chunkSize = ContentEncoding.chunkSize
            let chunk = UnsafeMutableRawPointer.allocate(byteCount: chunkSize, alignment: 16)
            defer { chunk.deallocate() }

            var output = ByteBuffer()
            let failure: ContentEncodingError? = body.withUnsafeReadableBytes { raw -> ContentEncodingError? in
                var input = ZSTD_inBuffer(src: raw.baseAddress, size: raw.count, pos: 0)
                while true {
                    var out = ZSTD_outBuffer(dst: chunk, size: chunkSize, pos: 0)
                    let result = ZSTD_decompressStream(context, &out, &input)
                    if ZSTD_isError(result) != 0 {
                        let text = ZSTD_getErrorName(result).map { String(cString: $0) } ?? "error \(result)"
                        return ContentEncodingError(encoding: label, reason: .corruptData(text))
                    }
                    guard out.pos <= limit - output.readableBytes else {
                        return ContentEncodingError(encoding: label, reason: .sizeLimitExceeded(limit: limit))
                    }
                    output.writeBytes(UnsafeRawBufferPointer(start: chunk, count: out.pos))
                    let inputDone = input.pos == input.size
                    if result == 0 && inputDone {
                        // A frame ended and was flushed, and nothing follows it.
                        return nil
                    }
                    if inputDone && out.pos < out.size {
                        // All input read and all the output it gave flushed, but the frame goes on.
                        return ContentEncodingError(encoding: label, reason: .truncatedData)
                    }
                }
            }
            if let failure { throw failure }
            return output
        }

        static func encode(_ body: ByteBuffer, label: String) throws(ContentEncodingError) -> ByteBuffer {
            let count = body.readableBytes
            let bound = ZSTD_compressBound(count)
            guard ZSTD_isError(bound) == 0 else {
                throw ContentEncodingError(encoding: label, reason: .encodingFailed("body too large for zstd"))
            }
            var output = ByteBufferAllocator().buffer(capacity: bound)
            var failure: String?
            _ = body.withUnsafeReadableBytes { input in
                output.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { out in
                    let written = ZSTD_compress(out.baseAddress, out.count, input.baseAddress, count, ZSTD_CLEVEL_DEFAULT)
                    if ZSTD_isError(written) != 0 {
                        failure = ZSTD_getErrorName(written).map { String(cString: $0) } ?? "error \(written)"
                        return 0
                    }
                    return written
                }
            }
            if let failure {
                throw ContentEncodingError(encoding: label, reason: .encodingFailed(failure))
            }
            return output
        }
    }
}
