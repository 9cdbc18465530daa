import Foundation
import MitmCore
import NIOCore
import MitmTestSupport
import Testing

@Suite("ContentEncoding")
struct ContentEncodingTests {
    static let allEncodings = ["identity", "", "none", "gzip", "x-gzip", "deflate", "deflateraw", "br", "zstd"]
    static let compressingEncodings = ["gzip", "deflate", "deflateraw", "br", "zstd"]

    // MARK: Round trips

    @Test("round trip", arguments: allEncodings, BodyKind.allCases)
    func roundTrip(encoding: String, kind: BodyKind) throws {
        let body = kind.body
        let encoded = try ContentEncoding.encode(body, encoding: encoding)
        let decoded = try ContentEncoding.decode(encoded, encoding: encoding)
        #expect(decoded.readableBytes == body.readableBytes)
        #expect(decoded == body)
        if kind == .compressible, Self.compressingEncodings.contains(encoding) {
            #expect(encoded.readableBytes < body.readableBytes / 50)
        }
    }

    @Test("encoded output is the standard wire format")
    func wireFormats() throws {
        let body = ByteBuffer(string: "hello hello hello hello")
        let gzip = try ContentEncoding.encode(body, encoding: "gzip")
        #expect(Array(gzip.readableBytesView.prefix(3)) == [0x1F, 0x8B, 0x08])
        // deflate is zlib-wrapped (RFC 9110 §8.4.1.2), as mitmproxy's zlib.compress
        let deflate = try ContentEncoding.encode(body, encoding: "deflate")
        let cmf = deflate.readableBytesView.first!, flg = deflate.readableBytesView.dropFirst().first!
        #expect(cmf & 0x0F == 8 && (UInt16(cmf) << 8 | UInt16(flg)) % 31 == 0)
        let zstd = try ContentEncoding.encode(body, encoding: "zstd")
        #expect(Array(zstd.readableBytesView.prefix(4)) == [0x28, 0xB5, 0x2F, 0xFD])
        // identity hands the same bytes back
        #expect(try ContentEncoding.encode(body, encoding: "identity") == body)
    }

    @Test("names are case-insensitive and trimmed")
    func caseInsensitive() throws {
        let body = ByteBuffer(string: "case")
        for (encodeName, decodeName) in [("GZIP", "gzip"), ("gzip", "X-GZip"), (" Br ", "BR"), ("ZStd", "zstd"), ("Deflate", "DEFLATE")] {
            let encoded = try ContentEncoding.encode(body, encoding: encodeName)
            #expect(try ContentEncoding.decode(encoded, encoding: decodeName) == body)
        }
    }

    @Test("isSupported")
    func supported() {
        for name in Self.allEncodings + ["GZIP", "X-Gzip", " br", "DeflateRaw"] {
            #expect(ContentEncoding.isSupported(name), "\(name)")
        }
        for name in ["compress", "x-compress", "gzip, br", "lzma", "bzip2", "zst", "brotli"] {
            #expect(!ContentEncoding.isSupported(name), "\(name)")
        }
        #expect(ContentEncoding.isSupported(contentEncodingHeader: "gzip, br"))
        #expect(ContentEncoding.isSupported(contentEncodingHeader: ""))
        #expect(!ContentEncoding.isSupported(contentEncodingHeader: "gzip, compress"))
    }

    @Test("empty bodies decode to empty, as in mitmproxy", arguments: allEncodings)
    func emptyDecodes(encoding: String) throws {
        #expect(try ContentEncoding.decode(ByteBuffer(), encoding: encoding).readableBytes == 0)
    }

    // MARK: Data made by other tools

    @Test("decodes what python3, gzip, brotli and zstd produced")
    func realToolFixtures() throws {
        let plain = ByteBuffer(string: Fixtures.plainText)
        #expect(try ContentEncoding.decode(Fixtures.pythonGzip, encoding: "gzip") == plain)
        #expect(try ContentEncoding.decode(Fixtures.pythonGzip, encoding: "x-gzip") == plain)
        #expect(try ContentEncoding.decode(Fixtures.gzipCLIWithFileName, encoding: "gzip") == plain)
        #expect(try ContentEncoding.decode(Fixtures.pythonZlib, encoding: "deflate") == plain)
        #expect(try ContentEncoding.decode(Fixtures.pythonRawDeflate, encoding: "deflate") == plain)
        #expect(try ContentEncoding.decode(Fixtures.pythonRawDeflate, encoding: "deflateraw") == plain)
        #expect(try ContentEncoding.decode(Fixtures.brotliCLI, encoding: "br") == plain)
        #expect(try ContentEncoding.decode(Fixtures.zstdCLI, encoding: "zstd") == plain)
    }

    @Test("gzip members and zstd frames one after another are all decoded")
    func concatenatedStreams() throws {
        let expected = ByteBuffer(string: Fixtures.plainText + "second part\n")
        #expect(try ContentEncoding.decode(Fixtures.gzipCLITwoMembers, encoding: "gzip") == expected)
        #expect(try ContentEncoding.decode(Fixtures.zstdCLITwoFrames, encoding: "zstd") == expected)
    }

    @Test("zstd skippable frames are skipped")
    func zstdSkippableFrame() throws {
        // magic 0x184D2A50 (little-endian), length 4, four bytes of user data
        var body = ByteBuffer(bytes: [0x50, 0x2A, 0x4D, 0x18, 4, 0, 0, 0, 0xDE, 0xAD, 0xBE, 0xEF])
        body.writeImmutableBuffer(Fixtures.zstdCLI)
        #expect(try ContentEncoding.decode(body, encoding: "zstd") == ByteBuffer(string: Fixtures.plainText))
    }

    @Test("gzip: zero padding after the last member is ignored, other bytes are an error")
    func gzipTrailingBytes() throws {
        var padded = Fixtures.pythonGzip
        padded.writeRepeatingByte(0, count: 7)
        #expect(try ContentEncoding.decode(padded, encoding: "gzip") == ByteBuffer(string: Fixtures.plainText))

        var garbage = Fixtures.pythonGzip
        garbage.writeString("junk")
        #expect(throws: ContentEncodingError(encoding: "gzip", reason: .trailingData)) {
            try ContentEncoding.decode(garbage, encoding: "gzip")
        }
    }

    @Test("brotli: bytes after the stream are an error")
    func brotliTrailingBytes() throws {
        var garbage = Fixtures.brotliCLI
        garbage.writeString("junk")
        #expect(throws: ContentEncodingError(encoding: "br", reason: .trailingData)) {
            try ContentEncoding.decode(garbage, encoding: "br")
        }
    }

    @Test("deflate: bytes after the stream are ignored, as zlib does")
    func deflateTrailingBytes() throws {
        var trailing = Fixtures.pythonZlib
        trailing.writeString("junk")
        #expect(try ContentEncoding.decode(trailing, encoding: "deflate") == ByteBuffer(string: Fixtures.plainText))
    }

    // MARK: Several codings in one header

    @Test("a Content-Encoding header with several codings is undone in reverse order")
    func headerWithSeveralCodings() throws {
        let body = BodyKind.small.body
        let gzipped = try ContentEncoding.encode(body, encoding: "gzip")
        let wire = try ContentEncoding.encode(gzipped, encoding: "br")
        #expect(try ContentEncoding.encode(body, contentEncodingHeader: "gzip, br") == wire)
        #expect(try ContentEncoding.decode(wire, contentEncodingHeader: "gzip, br") == body)
        #expect(try ContentEncoding.decode(wire, contentEncodingHeader: " gzip ,, identity, BR ") == body)
        // in the wrong order it fails
        #expect(throws: ContentEncodingError.self) {
            try ContentEncoding.decode(wire, contentEncodingHeader: "br, gzip")
        }
        #expect(try ContentEncoding.decode(body, contentEncodingHeader: "") == body)
        #expect(try ContentEncoding.decode(body, contentEncodingHeader: "identity") == body)
        let threeTimes = try ContentEncoding.encode(body, contentEncodingHeader: "deflate, zstd, gzip")
        #expect(try ContentEncoding.decode(threeTimes, contentEncodingHeader: "deflate, zstd, gzip") == body)
    }

    @Test("an unsupported coding anywhere in the header is reported before decoding")
    func headerWithUnsupportedCoding() {
        #expect(throws: ContentEncodingError(encoding: "compress", reason: .unsupportedEncoding)) {
            try ContentEncoding.decode(ByteBuffer(string: "not gzip"), contentEncodingHeader: "gzip, Compress")
        }
        #expect(throws: ContentEncodingError(encoding: "lzma", reason: .unsupportedEncoding)) {
            try ContentEncoding.encode(ByteBuffer(string: "x"), contentEncodingHeader: "lzma, gzip")
        }
    }

    // MARK: Errors

    @Test("an unknown coding gives a readable error")
    func unknownEncoding() throws {
        let error = #expect(throws: ContentEncodingError.self) {
            try ContentEncoding.decode(ByteBuffer(string: "abc"), encoding: "Compress")
        }
        #expect(error?.reason == .unsupportedEncoding)
        #expect(error?.encoding == "compress")
        #expect(error?.description == "unsupported content encoding \"compress\"")
        #expect(throws: ContentEncodingError(encoding: "sdch", reason: .unsupportedEncoding)) {
            try ContentEncoding.encode(ByteBuffer(string: "abc"), encoding: "sdch")
        }
        // even an empty body is refused for an unknown coding
        #expect(throws: ContentEncodingError(encoding: "bogus", reason: .unsupportedEncoding)) {
            try ContentEncoding.decode(ByteBuffer(), encoding: "bogus")
        }
    }

    @Test("error descriptions name the coding and what failed")
    func errorDescriptions() {
        #expect(
            ContentEncodingError(encoding: "br", reason: .sizeLimitExceeded(limit: 1024)).description
                == "cannot decode br body: decoded size exceeds the limit of 1024 bytes")
        #expect(
            ContentEncodingError(encoding: "gzip", reason: .truncatedData).description
                == "cannot decode gzip body: data is truncated (the compressed stream does not end)")
        #expect(
            ContentEncodingError(encoding: "zstd", reason: .corruptData("Unknown frame descriptor")).description
                == "cannot decode zstd body: corrupt data (Unknown frame descriptor)")
    }

    @Test("data that is not in the coding is an error", arguments: compressingEncodings)
    func notEncoded(encoding: String) {
        let error = #expect(throws: ContentEncodingError.self) {
            try ContentEncoding.decode(ByteBuffer(string: "<html><body>plain text, not compressed</body></html>"), encoding: encoding)
        }
        #expect(error?.encoding == encoding)
        #expect(error?.description.contains(encoding) == true)
    }

    @Test("random bytes are an error", arguments: compressingEncodings)
    func randomBytes(encoding: String) {
        var rng = SplitMix64(seed: 42)
        for length in [1, 2, 3, 10, 100, 4096] {
            let body = ByteBuffer(bytes: (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) })
            #expect(throws: ContentEncodingError.self, "\(encoding), \(length) bytes") {
                try ContentEncoding.decode(body, encoding: encoding)
            }
        }
    }

    @Test("truncated data is an error", arguments: compressingEncodings)
    func truncated(encoding: String) throws {
        let encoded = try ContentEncoding.encode(BodyKind.random.body, encoding: encoding)
        for keep in [1, 2, 10, encoded.readableBytes / 2, encoded.readableBytes - 1] {
            let cut = encoded.getSlice(at: encoded.readerIndex, length: keep)!
            #expect(throws: ContentEncodingError.self, "\(encoding), first \(keep) bytes") {
                try ContentEncoding.decode(cut, encoding: encoding)
            }
        }
        let error = #expect(throws: ContentEncodingError.self) {
            try ContentEncoding.decode(encoded.getSlice(at: encoded.readerIndex, length: encoded.readableBytes - 1)!, encoding: encoding)
        }
        #expect(error?.reason == .truncatedData)
    }

    @Test("a changed byte never decodes to the original (checksums in gzip, zlib, zstd)")
    func checksums() {
        for (fixture, encoding) in [(Fixtures.pythonGzip, "gzip"), (Fixtures.pythonZlib, "deflate"), (Fixtures.zstdCLI, "zstd"), (Fixtures.brotliCLI, "br")] {
            // flip a bit in the middle and, separately, in the checksum at the end
            for index in [fixture.readableBytes / 2, fixture.readableBytes - 2] {
                var changed = fixture
                let byte = changed.getInteger(at: index, as: UInt8.self)!
                changed.setInteger(byte ^ 0x10, at: index)
                let result = try? ContentEncoding.decode(changed, encoding: encoding)
                #expect(result != ByteBuffer(string: Fixtures.plainText), "\(encoding), byte \(index)")
            }
        }
    }

    @Test("mutated and cut input never crashes", arguments: compressingEncodings)
    func fuzzSmoke(encoding: String) throws {
        var rng = SplitMix64(seed: 7)
        let original = try ContentEncoding.encode(BodyKind.small.body, encoding: encoding)
        for _ in 0..<300 {
            var bytes = Array(original.readableBytesView)
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let index = Int.random(in: 0..<bytes.count, using: &rng)
                bytes[index] = UInt8.random(in: 0...255, using: &rng)
            }
            if Bool.random(using: &rng) {
                bytes.removeLast(Int.random(in: 0..<bytes.count, using: &rng))
            }
            // Either decodes (to something) or throws ContentEncodingError; the limit holds either way.
            if let decoded = try? ContentEncoding.decode(ByteBuffer(bytes: bytes), encoding: encoding, limit: 64 * 1024) {
                #expect(decoded.readableBytes <= 64 * 1024)
            }
        }
    }

    // MARK: Decompression bombs

    @Test("a body that decodes past the limit throws", arguments: compressingEncodings)
    func limit(encoding: String) throws {
        let size = 4 * 1024 * 1024
        let bomb = try ContentEncoding.encode(ByteBuffer(repeating: 0, count: size), encoding: encoding)
        #expect(bomb.readableBytes < size / 100)
        #expect(throws: ContentEncodingError(encoding: encoding, reason: .sizeLimitExceeded(limit: 1024 * 1024))) {
            try ContentEncoding.decode(bomb, encoding: encoding, limit: 1024 * 1024)
        }
        // exactly at the limit is fine, one byte under is not
        #expect(try ContentEncoding.decode(bomb, encoding: encoding, limit: size).readableBytes == size)
        #expect(throws: ContentEncodingError(encoding: encoding, reason: .sizeLimitExceeded(limit: size - 1))) {
            try ContentEncoding.decode(bomb, encoding: encoding, limit: size - 1)
        }
        // the limit bounds every step of a header's codings
        #expect(throws: ContentEncodingError(encoding: encoding, reason: .sizeLimitExceeded(limit: 1000))) {
            try ContentEncoding.decode(bomb, contentEncodingHeader: "identity, \(encoding)", limit: 1000)
        }
        #expect(throws: ContentEncodingError(encoding: encoding, reason: .sizeLimitExceeded(limit: 0))) {
            try ContentEncoding.decode(bomb, encoding: encoding, limit: 0)
        }
    }

    @Test("a 809-byte brotli bomb of 1 GiB stops at the default limit of 256 MiB")
    func brotliBombDefaultLimit() {
        #expect(ContentEncoding.defaultDecodeLimit == 256 * 1024 * 1024)
        #expect(throws: ContentEncodingError(encoding: "br", reason: .sizeLimitExceeded(limit: ContentEncoding.defaultDecodeLimit))) {
            try ContentEncoding.decode(Fixtures.brotliBomb1GiB, encoding: "br")
        }
        #expect(throws: ContentEncodingError(encoding: "br", reason: .sizeLimitExceeded(limit: 10_000_000))) {
            try ContentEncoding.decode(Fixtures.brotliBomb1GiB, encoding: "br", limit: 10_000_000)
        }
    }

    // MARK: - Helpers

    enum BodyKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
        case empty, small, random, compressible

        var testDescription: String { rawValue }

        var body: ByteBuffer {
            switch self {
            case .empty:
                return ByteBuffer()
            case .small:
                return ByteBuffer(string: "Hello, mitmproxy! ü ✓")
            case .random:
                var rng = SplitMix64(seed: 0x5EED)
                var buffer = ByteBuffer()
                buffer.reserveCapacity(1024 * 1024)
                for _ in 0..<(1024 * 1024 / 8) { buffer.writeInteger(rng.next()) }
                return buffer
            case .compressible:
                var buffer = ByteBuffer()
                var line = 0
                while buffer.readableBytes < 4 * 1024 * 1024 {
                    buffer.writeString("<li class=\"item\">row \(line % 100) of the table</li>\n")
                    line += 1
                }
                return buffer
            }
        }
    }

    /// Bodies made by other tools, base64-encoded.
    enum Fixtures {
        static let plainText =
            String(repeating: "mitmproxy is a free and open source interactive HTTPS proxy. ", count: 3)
            + "{\"status\": \"ok\", \"items\": [1, 2, 3]}\n"

        static func base64(_ text: String) -> ByteBuffer {
            ByteBuffer(bytes: Data(base64Encoded: text.filter { !$0.isWhitespace })!)
        }

        /// python3: gzip.compress(plainText, mtime=0)
        static let pythonGzip = base64("""
            H4sIAAAAAAACA8vNLMktKMqvqFTILFZIVEgrSk1VSMxLUcgvSM1TKM4vLUpOVcjMK0ktSkwuySxLVfAICQkIVgDr0FPIHTDN
            1UrFJYklpcVKVgpK+dlKOgpKmSWpuSButKGOgpGOgnFsLRcAaUke29wAAAA=
            """)
        /// python3: zlib.compress(plainText)
        static let pythonZlib = base64("""
            eJzLzSzJLSjKr6hUyCxWSFRIK0pNVUjMS1HIL0jNUyjOLy1KTlXIzCtJLUpMLsksS1XwCAkJCFYA69BTyB0wzdVKxSWJJaXF
            SlYKSvnZSjoKSpklqbkgbrShjoKRjoJxbC0XAJUTTOI=
            """)
        /// python3: zlib.compressobj(9, zlib.DEFLATED, -15), raw deflate
        static let pythonRawDeflate = base64("""
            y80syS0oyq+oVMgsVkhUSCtKTVVIzEtRyC9IzVMozi8tSk5VyMwrSS1KTC7JLEtV8AgJCQhWAOvQU8gdMM3VSsUliSWlxUpW
            Ckr52Uo6CkqZJam5IG60oY6CkY6CcWwtFwA=
            """)
        /// gzip: `gzip -9 plain.txt` (FNAME and MTIME set in the header)
        static let gzipCLIWithFileName = base64("""
            H4sICOFAA2sCA3BsYWluLnR4dADLzSzJLSjKr6hUyCxWSFRIK0pNVUjMS1HIL0jNUyjOLy1KTlXIzCtJLUpMLsksS1XwCAkJ
            CFYA69BTyB0wzdVKxSWJJaXFSlYKSvnZSjoKSpklqbkgbrShjoKRjoJxbC0XAGlJHtvcAAAA
            """)
        /// brotli 1.0.9: `brotli -q 11 plain.txt`
        static let brotliCLI = base64("""
            odgGQGWcLHMT7ux3/rReN0ths6xGGQyGl16EgX6/FEDc4IA9zgooSnDnwG03OEosqyQM15fK0bnGfZCNim8gBCK5twMTK0F/
            auH6Y/tgzNFpUk5TanYGHgnlBw==
            """)
        /// zstd 1.5.4: `zstd -19 plain.txt` (content size and XXH64 checksum in the frame)
        static let zstdCLI = base64("""
            KLUv/STc5QIAkkUTGHCtDjCCTEjlojYgHCKaYif+kIaFBOji4MCkEFfDlZC4bdYrbaC+0Ok066nSgyPHWsb34W5Mbj/+NunA
            +bcRfnnsu5I5++RHEJTRNbsDAGSCdgGcsFVBQQGMG8JC
            """)
        /// zstdCLI followed by `zstd` of "second part\n": two frames
        static let zstdCLITwoFrames = base64("""
            KLUv/STc5QIAkkUTGHCtDjCCTEjlojYgHCKaYif+kIaFBOji4MCkEFfDlZC4bdYrbaC+0Ok066nSgyPHWsb34W5Mbj/+NunA
            +bcRfnnsu5I5++RHEJTRNbsDAGSCdgGcsFVBQQGMG8JCKLUv/SQMYQAAc2Vjb25kIHBhcnQK9PEh0Q==
            """)
        /// `gzip -9 -n plain.txt` followed by `gzip -n` of "second part\n": two members
        static let gzipCLITwoMembers = base64("""
            H4sIAAAAAAACA8vNLMktKMqvqFTILFZIVEgrSk1VSMxLUcgvSM1TKM4vLUpOVcjMK0ktSkwuySxLVfAICQkIVgDr0FPIHTDN
            1UrFJYklpcVKVgpK+dlKOgpKmSWpuSButKGOgpGOgnFsLRcAaUke29wAAAAfiwgAAAAAAAADK05Nzs9LUShILCrhAgAlGAeL
            DAAAAA==
            """)
        /// brotli 1.0.9: `head -c 1G /dev/zero | brotli -q 5`: 809 bytes that decode to 1 GiB of zeros
        static let brotliBomb1GiB = base64("""
            z///fwAkAOKxQHLv//n//w+ABEAcFoDu/T////8BkACIwwLQvf/n//8/ABIAcVgAuvf//P//B0ACIA4LQPf+n////wBIAMRh
            Aeje//P//x8ACYA4LADd+3/+//8DIAEQhwWge//P//9/ACQA4rAAdO//+f//D4AEQBwWgO79P////wGQAIjDAtC9/+f//z8A
            EgBxWAC69//8//8HQAIgDgtA9/6f////AEgAxGEB6N7/8///HwAJgDgsAN37f/7//wMgARCHBaB7/8///38AJADisAB07//5
            //8PgARAHBaA7v0/////AZAAiMMC0L3/5///PwASAHFYALr3//z//wdAAiAOC0D3/p////8ASADEYQHo3v/z//8fAAmAOCwA
            3ft//v//AyABEIcFoHv/z///fwAkAOKwAHTv//n//w+ABEAcFoDu/T////8BkACIwwLQvf/n//8/ABIAcVgAuvf//P//B0AC
            IA4LQPf+n////wBIAMRhAeje//P//x8ACYA4LADd+3/+//8DIAEQhwWge//P//9/ACQA4rAAdO//+f//D4AEQBwWgO79P///
            /wGQAIjDAtC9/+f//z8AEgBxWAC69//8//8HQAIgDgtA9/6f////AEgAxGEB6N7/8///HwAJgDgsAN37f/7//wMgARCHBaB7
            /8///38AJADisAB07//5//8PgARAHBaA7v0/////AZAAiMMC0L3/5///PwASAHFYALr3//z//wdAAiAOC0D3/p////8ASADE
            YQHo3v/z//8fAAmAOCwA3ft//v//AyABEIcFoHv/z///fwAkAOKwAHTv//n//w+ABEAcFoDu/T////8BkACIwwLQvf/n//8/
            ABIAcVgAuvf//P//B0ACIA4LQPf+n////wBIAMRhAeje//P//x8ACYA4LADd+3/+//8DIAEQhwWge//P//9/ACQA4rAAdO//
            +f//D4AEQBwWgO79P////wGQAIjDAtC9/+f//z8AEgBxWAC69//8//8HQAIgDgtA9/6f////AEgAxGEB6N7/8///HwAJgDgs
            AN37f/7//wMgARCHBaB7/z8=
            """)
    }
}
