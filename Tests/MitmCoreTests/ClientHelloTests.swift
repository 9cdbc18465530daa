import NIOCore
import MitmTestSupport
import Testing

@testable import MitmCore

// MARK: - Real clients

@Suite("ClientHello: captured from real clients")
struct ClientHelloCapturedTests {
    @Test func opensslWithSNIAndALPN() throws {
        let hello = try parsed(ClientHelloFixtures.opensslSNIALPN)
        #expect(hello.legacyVersion == 0x0303)
        #expect(
            hello.random
                == ClientHelloFixtures.bytes("86348abd9047f253f0e28761fa637013c83bba9587f10485766b7221fde65ab0")
        )
        #expect(hello.sessionID.count == 32)
        #expect(hello.cipherSuites.count == 31)
        #expect(hello.cipherSuites.prefix(3) == [0x1302, 0x1303, 0x1301])
        #expect(hello.cipherSuites.last == 0x00FF)  // TLS_EMPTY_RENEGOTIATION_INFO_SCSV
        #expect(hello.compressionMethods == [0])
        #expect(hello.extensions.map(\.type) == [0, 11, 10, 35, 16, 22, 23, 13, 43, 45, 51])
        #expect(hello.serverName == "example.com")
        #expect(hello.alpnProtocols == ["h2", "http/1.1"])
        #expect(hello.supportedVersions == [0x0304, 0x0303, 0x0302, 0x0301])
        let keyShare = try #require(hello.extensions.first { $0.type == ClientHello.ExtensionType.keyShare })
        #expect(keyShare.data.readableBytes == 38)  // one X25519 share: 2 + (2 + 2 + 32)
        #expect(
            Array(hello.handshakeBytes.readableBytesView)
                == ClientHelloFixtures.handshakeMessage(ClientHelloFixtures.opensslSNIALPN)
        )
    }

    @Test func opensslWithoutALPN() throws {
        let hello = try parsed(ClientHelloFixtures.opensslNoALPN)
        #expect(hello.serverName == "example.com")
        #expect(hello.alpnProtocols == [])
        #expect(!hello.extensions.contains { $0.type == ClientHello.ExtensionType.applicationLayerProtocolNegotiation })
        #expect(hello.supportedVersions == [0x0304, 0x0303, 0x0302, 0x0301])
    }

    @Test func curlHTTP2() throws {
        let hello = try parsed(ClientHelloFixtures.curlHTTP2)
        #expect(hello.serverName == "example.com")
        #expect(hello.alpnProtocols == ["h2", "http/1.1"])
        #expect(hello.extensions.last?.type == ClientHello.ExtensionType.padding)
        #expect(hello.handshakeBytes.readableBytes == 512)
    }

    @Test func curlToAnIPLiteralSendsNoSNI() throws {
        let hello = try parsed(ClientHelloFixtures.curlIPLiteral)
        #expect(hello.serverName == nil)
        #expect(!hello.extensions.contains { $0.type == ClientHello.ExtensionType.serverName })
        #expect(hello.alpnProtocols == ["h2", "http/1.1"])
    }

    @Test func tls12OnlyClient() throws {
        let hello = try parsed(ClientHelloFixtures.opensslTLS12)
        #expect(hello.serverName == "example.org")
        #expect(hello.sessionID == [])
        #expect(hello.supportedVersions == [])
        #expect(hello.cipherSuites.count == 28)
    }

    @Test func realClientHelloInTwoRecords() throws {
        let input = ClientHelloFixtures.opensslTwoRecords
        #expect(input.count == 5 + 512 + 5 + 133)
        let hello = try parsed(input)
        let label = String(repeating: "a", count: 60)
        #expect(hello.serverName == "\(label).\(label).\(label).split.example")
        #expect(hello.cipherSuites.count == 93)
        #expect(hello.alpnProtocols == ["h2", "http/1.1"])
        #expect(hello.handshakeBytes.readableBytes == 512 + 133)
    }

    @Test(arguments: ClientHelloFixtures.all.map(\.name))
    func dripFeedEveryPrefixNeedsMoreData(name: String) {
        let input = ClientHelloFixtures.all.first { $0.name == name }!.bytes
        let whole = ClientHello.parse(ByteBuffer(bytes: input))
        guard case .clientHello = whole else {
            Issue.record("\(name): \(whole)")
            return
        }
        for length in 0..<input.count {
            let result = ClientHello.parse(ByteBuffer(bytes: input.prefix(length)))
            #expect(result == .needMoreData, "\(name), prefix \(length): \(result)")
        }
        // Feeding byte by byte into one cumulation buffer, as a ByteToMessageDecoder would.
        var cumulation = ByteBuffer()
        var results: [ClientHello.ParseResult] = []
        for byte in input {
            cumulation.writeInteger(byte)
            results.append(ClientHello.parse(cumulation))
        }
        #expect(results.dropLast().allSatisfy { $0 == .needMoreData })
        #expect(results.last == whole)
    }

    @Test(arguments: ClientHelloFixtures.all.map(\.name))
    func bytesAfterTheClientHelloAreIgnored(name: String) {
        let input = ClientHelloFixtures.all.first { $0.name == name }!.bytes
        let whole = ClientHello.parse(ByteBuffer(bytes: input))
        // Early data or anything else that follows does not change the result.
        #expect(ClientHello.parse(ByteBuffer(bytes: input + [0x17, 0x03, 0x03, 0x00, 0x02, 0xAA, 0xBB])) == whole)
        #expect(ClientHello.parse(ByteBuffer(bytes: input + [0xFF])) == whole)
    }

    @Test func readerIndexIsRespected() throws {
        var buffer = ByteBuffer(bytes: [0xDE, 0xAD] + ClientHelloFixtures.curlHTTP2)
        buffer.moveReaderIndex(forwardBy: 2)
        let hello = try #require(ClientHello.parse(buffer).hello)
        #expect(hello == (try parsed(ClientHelloFixtures.curlHTTP2)))
        #expect(buffer.readerIndex == 2)
    }
}

// MARK: - Record fragmentation

@Suite("ClientHello: spread over several records")
struct ClientHelloFragmentationTests {
    @Test(arguments: [1, 2, 3, 4, 5, 7, 64, 100, 300, 511, 16384])
    func refragmentedGivesTheSameHello(fragmentSize: Int) throws {
        let message = ClientHelloFixtures.handshakeMessage(ClientHelloFixtures.curlHTTP2)
        let original = try parsed(ClientHelloFixtures.curlHTTP2)
        let input = ClientHelloFixtures.records(message, fragmentSize: fragmentSize)
        #expect(try parsed(input) == original)
        // Every proper prefix of the fragmented stream still only needs more data.
        for length in stride(from: 0, to: input.count, by: max(1, input.count / 97)) {
            #expect(ClientHello.parse(ByteBuffer(bytes: input.prefix(length))) == .needMoreData)
        }
    }

    @Test func everyTwoRecordSplitGivesTheSameHello() throws {
        let message = ClientHelloFixtures.handshakeMessage(ClientHelloFixtures.opensslSNIALPN)
        let original = try parsed(ClientHelloFixtures.opensslSNIALPN)
        for split in 1..<message.count {
            let input =
                ClientHelloFixtures.records(Array(message[..<split]), fragmentSize: 1 << 14)
                + ClientHelloFixtures.records(Array(message[split...]), fragmentSize: 1 << 14, version: 0x0303)
            #expect(ClientHello.parse(ByteBuffer(bytes: input)) == .clientHello(original), "split at \(split)")
        }
    }

    @Test func anotherRecordTypeInTheMiddleIsMalformed() {
        let message = ClientHelloFixtures.handshakeMessage(ClientHelloFixtures.opensslSNIALPN)
        var input = ClientHelloFixtures.records(message, fragmentSize: 100)
        input[105] = 0x14  // second record becomes change_cipher_spec
        #expect(
            ClientHello.parse(ByteBuffer(bytes: input))
                == .malformed("record 2 has content type 20, expected handshake (22)")
        )
        input[105] = 0x16
        input[106] = 0x02  // SSL 2 record version
        #expect(
            ClientHello.parse(ByteBuffer(bytes: input))
                == .malformed("record 2 has version 0x0201, expected 0x0300-0x0303")
        )
    }

    @Test func emptyRecordIsMalformed() {
        let message = ClientHelloFixtures.handshakeMessage(ClientHelloFixtures.opensslSNIALPN)
        let input =
            ClientHelloFixtures.records(Array(message.prefix(10)), fragmentSize: 100)
            + [0x16, 0x03, 0x01, 0x00, 0x00]
            + ClientHelloFixtures.records(Array(message.dropFirst(10)), fragmentSize: 100)
        #expect(ClientHello.parse(ByteBuffer(bytes: input)) == .malformed("record 2 is empty"))
    }
}

// MARK: - Detection and limits

@Suite("ClientHello: detection and limits")
struct ClientHelloDetectionTests {
    @Test(
        arguments: [
            ([], nil),
            ([0x16], nil),
            ([0x16, 0x03], nil),
            ([0x16, 0x03, 0x01, 0x02, 0x00], nil),
            ([0x16, 0x03, 0x01, 0x02, 0x00, 0x01], true),
            ([0x16, 0x03, 0x00, 0x00, 0x01, 0x01], true),  // SSL 3.0 record version
            ([0x16, 0x03, 0x03, 0xFF, 0xFF, 0x01, 0xEE], true),  // the record length is not judged here
            ([0x17], false),
            ([0x16, 0x02], false),
            ([0x16, 0x03, 0x04], false),
            ([0x16, 0x03, 0x01, 0x02, 0x00, 0x02], false),  // a ServerHello
            ([0x80, 0x2E, 0x01, 0x00, 0x02], false),  // SSLv2-compatible hello
            (Array("GET / HTTP/1.1\r\n".utf8), false),
        ] as [([UInt8], Bool?)]
    )
    func looksLikeTLSClientHello(bytes: [UInt8], expected: Bool?) {
        #expect(ClientHello.looksLikeTLSClientHello(ByteBuffer(bytes: bytes)) == expected)
        let parsed = ClientHello.parse(ByteBuffer(bytes: bytes))
        switch expected {
        case .none: #expect(parsed == .needMoreData)
        case .some(false): #expect(parsed == .notTLS)
        case .some(true): #expect(parsed != .notTLS)
        }
    }

    @Test func hugeHandshakeLengthIsRefusedBeforeItsBytesArrive() {
        // uint24 length 0xFFFFFF in the first fragment; nothing else has arrived.
        let input: [UInt8] = [0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0xFF, 0xFF, 0xFF]
        #expect(
            ClientHello.parse(ByteBuffer(bytes: input))
                == .malformed("ClientHello of 16777219 bytes exceeds the limit of 65536 bytes")
        )
        // Just under the default limit is still plausible: keep waiting.
        let plausible: [UInt8] = [0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0xFF, 0xFC]
        #expect(ClientHello.parse(ByteBuffer(bytes: plausible)) == .needMoreData)
    }

    @Test func handshakeHeaderSplitOverRecordsStillChecksTheLimit() {
        let input: [UInt8] = [0x16, 0x03, 0x01, 0x00, 0x02, 0x01, 0x7F, 0x16, 0x03, 0x01, 0x00, 0x02, 0xFF, 0xFF]
        #expect(
            ClientHello.parse(ByteBuffer(bytes: input))
                == .malformed("ClientHello of 8388611 bytes exceeds the limit of 65536 bytes")
        )
    }

    @Test func oversizedRecordIsMalformed() {
        let input: [UInt8] = [0x16, 0x03, 0x01, 0xFF, 0xFF, 0x01, 0x00, 0x01, 0x00]
        #expect(ClientHello.parse(ByteBuffer(bytes: input)) == .malformed("record 1 length 65535 exceeds 2^14"))
        #expect(
            ClientHello.parse(ByteBuffer(bytes: [0x16, 0x03, 0x01, 0x00, 0x00, 0x01]))
                == .malformed("record 1 is empty")
        )
    }

    @Test func maximumLengthIsConfigurable() {
        let input = ByteBuffer(bytes: ClientHelloFixtures.curlHTTP2)
        #expect(
            ClientHello.parse(input, maximumLength: 511)
                == .malformed("ClientHello of 512 bytes exceeds the limit of 511 bytes")
        )
        #expect(ClientHello.parse(input, maximumLength: 512) == ClientHello.parse(input))
    }

    /// A 60 kB padding extension, in full 16 KiB records and in 60,000 one-byte records (the
    /// worst case a peer can force under the limit: 360 kB of input).
    @Test(arguments: [1 << 14, 1])
    func largeHelloThroughManyRecords(fragmentSize: Int) throws {
        var builder = ClientHelloBuilder()
        builder.extensions = [
            (ClientHello.ExtensionType.serverName, ClientHelloBuilder.sni("big.example")),
            (ClientHello.ExtensionType.padding, Array(repeating: 0, count: 60_000)),
        ]
        let hello = try parsed(ClientHelloFixtures.records(builder.handshake(), fragmentSize: fragmentSize))
        #expect(hello.serverName == "big.example")
        #expect(hello.extensions.last?.data.readableBytes == 60_000)
    }
}

// MARK: - Grammar

@Suite("ClientHello: grammar and extensions")
struct ClientHelloGrammarTests {
    @Test func minimalHelloWithoutExtensionsBlock() throws {
        var builder = ClientHelloBuilder()
        builder.extensions = nil  // RFC 5246 §7.4.1.2: extensions may be absent
        builder.legacyVersion = 0x0301
        let hello = try parsed(builder.record())
        #expect(hello.legacyVersion == 0x0301)
        #expect(hello.extensions == [])
        #expect(hello.serverName == nil)
        #expect(hello.alpnProtocols == [])
        #expect(hello.supportedVersions == [])
        #expect(hello.random == Array(repeating: 0xAB, count: 32))
    }

    @Test func alpnListLongerThanItsExtension() {
        var builder = ClientHelloBuilder()
        builder.extensions = [(16, [0x01, 0x2C] + Array(repeating: 0x61, count: 10))]
        #expect(
            ClientHello.parse(ByteBuffer(bytes: builder.record()))
                == .malformed("ALPN protocol_name_list length 300 exceeds the 10 bytes left")
        )
    }

    @Test(
        arguments: [
            // (extensions, expected reason)
            ([(0, [0x00, 0x05, 0x00, 0x00, 0x02, 0x61])], "SNI server_name_list length 5 exceeds the 4 bytes left"),
            ([(0, [])], "SNI server_name_list length truncated: 0 bytes left"),
            ([(0, [0x00, 0x00])], "SNI server_name_list length 0 is outside 1...65535"),
            ([(0, [0x00, 0x03, 0x00, 0x00, 0x00])], "SNI name length 0 is outside 1...65535"),
            ([(0, [0x00, 0x02, 0x00, 0x00, 0xFF])], "SNI extension has 1 trailing bytes"),
            ([(16, [0x00, 0x00])], "ALPN protocol_name_list length 0 is outside 2...65535"),
            ([(16, [0x00, 0x02, 0x00, 0x61])], "ALPN protocol name length 0 is outside 1...255"),
            ([(16, [0x00, 0x03, 0x05, 0x68, 0x32])], "ALPN protocol name length 5 exceeds the 2 bytes left"),
            ([(43, [0x03, 0x03, 0x04, 0x03])], "supported_versions length 3 is odd"),
            ([(43, [0x00])], "supported_versions length 0 is outside 2...254"),
            ([(43, [0x02, 0x03, 0x04, 0x00])], "supported_versions extension has 1 trailing bytes"),
            ([(10, [0x00]), (10, [0x00])], "duplicate extension 10"),
        ] as [([(UInt16, [UInt8])], String)]
    )
    func malformedExtensions(extensions: [(UInt16, [UInt8])], reason: String) {
        var builder = ClientHelloBuilder()
        builder.extensions = extensions
        #expect(ClientHello.parse(ByteBuffer(bytes: builder.record())) == .malformed(reason))
    }

    @Test func malformedFixedFields() {
        var builder = ClientHelloBuilder()
        builder.sessionID = Array(repeating: 1, count: 33)
        #expect(
            ClientHello.parse(ByteBuffer(bytes: builder.record()))
                == .malformed("legacy_session_id length 33 is outside 0...32")
        )

        builder = ClientHelloBuilder()
        builder.rawCipherSuites = [0x00, 0x03, 0x13, 0x01, 0x13]
        #expect(ClientHello.parse(ByteBuffer(bytes: builder.record())) == .malformed("cipher_suites length 3 is odd"))

        builder.rawCipherSuites = [0xFF, 0xFF, 0x13, 0x01]
        #expect(
            ClientHello.parse(ByteBuffer(bytes: builder.record()))
                == .malformed("cipher_suites length 65535 exceeds the 6 bytes left")
        )

        builder.rawCipherSuites = [0x00, 0x00]
        #expect(
            ClientHello.parse(ByteBuffer(bytes: builder.record()))
                == .malformed("cipher_suites length 0 is outside 2...65534")
        )

        builder = ClientHelloBuilder()
        builder.compressionMethods = []
        #expect(
            ClientHello.parse(ByteBuffer(bytes: builder.record()))
                == .malformed("legacy_compression_methods length 0 is outside 1...255")
        )

        builder = ClientHelloBuilder()
        builder.trailing = [0x00]
        #expect(
            ClientHello.parse(ByteBuffer(bytes: builder.record())) == .malformed("ClientHello has 1 trailing bytes")
        )

        builder = ClientHelloBuilder()
        builder.rawExtensionsLength = 0xFFFF
        #expect(
            ClientHello.parse(ByteBuffer(bytes: builder.record()))
                == .malformed("extensions length 65535 exceeds the 0 bytes left")
        )

        // A declared message length shorter than its fields: the body ends inside `random`.
        let truncated: [UInt8] = [0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04, 0x03, 0x03, 0xAB, 0xAB]
        #expect(
            ClientHello.parse(ByteBuffer(bytes: truncated)) == .malformed("random needs 32 bytes but only 2 are left")
        )
        #expect(
            ClientHello.parse(ByteBuffer(bytes: [0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00]))
                == .malformed("legacy_version truncated: 0 bytes left")
        )
    }

    @Test func extensionLengthClaimingHugeSize() {
        var builder = ClientHelloBuilder()
        builder.extensions = [(0xFFFF, [])]
        var record = builder.record()
        record[record.count - 2] = 0xFF  // the extension's own length: 0xFFFF, 0 bytes follow
        record[record.count - 1] = 0xFF
        #expect(
            ClientHello.parse(ByteBuffer(bytes: record))
                == .malformed("extension 65535 length 65535 exceeds the 0 bytes left")
        )
    }

    @Test func serverNameVariants() throws {
        func serverName(_ entries: [(UInt8, [UInt8])]) throws -> String? {
            var builder = ClientHelloBuilder()
            builder.extensions = [(0, ClientHelloBuilder.serverNameList(entries))]
            return try parsed(builder.record()).serverName
        }
        #expect(try serverName([(0, Array("example.com".utf8))]) == "example.com")
        #expect(try serverName([(0, Array("Example.COM.".utf8))]) == "Example.COM.")
        // An unknown NameType is skipped by its 16-bit length (RFC 6066 §3).
        #expect(try serverName([(7, [1, 2, 3]), (0, Array("a.example".utf8))]) == "a.example")
        // Invalid names are no SNI, as in mitmproxy; the hello itself is fine.
        #expect(try serverName([(0, Array("a.example".utf8)), (0, Array("b.example".utf8))]) == nil)
        #expect(try serverName([(0, Array("bad name".utf8))]) == nil)
        #expect(try serverName([(0, Array("nul\0.example".utf8))]) == nil)
        #expect(try serverName([(0, Array("bücher.example".utf8))]) == nil)
        #expect(try serverName([(0, Array("a..example".utf8))]) == nil)
        #expect(try serverName([(7, Array("x.example".utf8))]) == nil)
        #expect(try serverName([(0, Array("127.0.0.1".utf8))]) == "127.0.0.1")
    }

    @Test(arguments: [
        ("example.com", true), ("EXAMPLE.com.", true), ("_dmarc.example", true), ("xn--bcher-kva.example", true),
        ("localhost", true), ("10.0.0.1", true), ("::1", true), ("2001:db8::1", true),
        ("", false), (".", false), ("a..b", false), (".example", false), ("a b", false), ("exa/mple", false),
        ("::g", false), (String(repeating: "a", count: 64) + ".example", false),
        (String(repeating: "a.", count: 128), false),
    ])
    func hostValidation(host: String, valid: Bool) {
        #expect(ClientHello.isValidHost(Array(host.utf8)) == valid)
    }

    @Test func alpnWithNonUTF8GreaseValue() throws {
        var builder = ClientHelloBuilder()
        builder.extensions = [(16, ClientHelloBuilder.alpn([[0xFA, 0xFA], Array("h2".utf8)]))]
        let hello = try parsed(builder.record())
        #expect(hello.alpnProtocols == ["\u{FFFD}\u{FFFD}", "h2"])
        #expect(Array(hello.extensions[0].data.readableBytesView) == [0x00, 0x06, 0x02, 0xFA, 0xFA, 0x02, 0x68, 0x32])
    }
}

// MARK: - Fuzzing

@Suite("ClientHello: fuzzing")
struct ClientHelloFuzzTests {
    /// Random bytes, bare and behind a plausible record and handshake header.
    @Test func randomBytes() {
        var rng = SplitMix64(seed: 0x5EED_0001)
        for round in 0..<3000 {
            let length = Int.random(in: 0...600, using: &rng)
            var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if round.isMultiple(of: 2) {
                let body = UInt16.random(in: 0...0x4000, using: &rng)
                bytes = [0x16, 0x03, 0x01, UInt8(body >> 8), UInt8(body & 0xFF), 0x01] + bytes
            }
            checkInvariants(bytes)
        }
    }

    /// Real hellos with a few bytes changed, then cut at a random point.
    @Test func mutatedAndTruncatedRealHellos() {
        var rng = SplitMix64(seed: 0x5EED_0002)
        var outcomes: [String: Int] = [:]
        for round in 0..<4000 {
            var bytes = ClientHelloFixtures.all[round % ClientHelloFixtures.all.count].bytes
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let index = Int.random(in: 0..<bytes.count, using: &rng)
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: bytes[index] = UInt8.random(in: 0...255, using: &rng)
                case 1: bytes[index] ^= 1 << UInt8.random(in: 0..<8, using: &rng)
                default: bytes[index] = [0x00, 0xFF, 0x7F, 0x80].randomElement(using: &rng)!
                }
            }
            if Int.random(in: 0..<4, using: &rng) == 0 {
                bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &rng)))
            }
            let result = checkInvariants(bytes, everyPrefix: round < 150)
            switch result {
            case .needMoreData: outcomes["needMoreData", default: 0] += 1
            case .clientHello: outcomes["clientHello", default: 0] += 1
            case .notTLS: outcomes["notTLS", default: 0] += 1
            case .malformed: outcomes["malformed", default: 0] += 1
            }
        }
        // The mutations reach every outcome, so the loop is exercising the parser, not one guard.
        #expect(outcomes.count == 4, "\(outcomes)")
    }

    /// Length fields set to extremes, at every offset of a real hello.
    @Test func extremeLengthAtEveryOffset() {
        let original = ClientHelloFixtures.opensslSNIALPN
        for offset in 0..<(original.count - 1) {
            for value: [UInt8] in [[0xFF, 0xFF], [0x00, 0x00], [0x80, 0x00]] {
                var bytes = original
                bytes[offset] = value[0]
                bytes[offset + 1] = value[1]
                checkInvariants(bytes)
            }
        }
    }

    /// Parsing is deterministic, and once the result is not `needMoreData` more bytes never change it
    /// (what `ByteToMessageDecoderVerifier` checks for decoders).
    @discardableResult
    private func checkInvariants(
        _ bytes: [UInt8],
        everyPrefix: Bool = false,
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> ClientHello.ParseResult {
        let result = ClientHello.parse(ByteBuffer(bytes: bytes))
        #expect(ClientHello.parse(ByteBuffer(bytes: bytes)) == result, sourceLocation: sourceLocation)
        if result != .needMoreData {
            #expect(
                ClientHello.parse(ByteBuffer(bytes: bytes + [0x16, 0x03, 0x01, 0x00, 0x01, 0x00])) == result,
                sourceLocation: sourceLocation
            )
        }
        if case .clientHello(let hello) = result {
            #expect(
                hello.handshakeBytes.readableBytes <= ClientHello.defaultMaximumLength,
                sourceLocation: sourceLocation
            )
        }
        if everyPrefix {
            var decided: ClientHello.ParseResult? = nil
            for length in 0...bytes.count {
                let prefixResult = ClientHello.parse(ByteBuffer(bytes: bytes.prefix(length)))
                if let decided, prefixResult != decided {
                    Issue.record(
                        "prefix \(length): \(prefixResult), expected \(decided)",
                        sourceLocation: sourceLocation
                    )
                    break
                } else if decided == nil, prefixResult != .needMoreData {
                    decided = prefixResult
                }
            }
            #expect((decided ?? .needMoreData) == result, sourceLocation: sourceLocation)
        }
        return result
    }
}

// MARK: - Helpers

/// Parses `bytes` and requires a ClientHello.
private func parsed(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) throws -> ClientHello {
    let result = ClientHello.parse(ByteBuffer(bytes: bytes))
    return try #require(result.hello, "\(result)", sourceLocation: sourceLocation)
}

extension ClientHello.ParseResult {
    fileprivate var hello: ClientHello? {
        if case .clientHello(let hello) = self { hello } else { nil }
    }
}

/// Builds ClientHello wire bytes field by field, so a test can break exactly one of them.
private struct ClientHelloBuilder {
    var legacyVersion: UInt16 = 0x0303
    var random = [UInt8](repeating: 0xAB, count: 32)
    var sessionID: [UInt8] = []
    var cipherSuites: [UInt16] = [0x1301, 0x1302]
    /// Replaces the length-prefixed cipher_suites vector when set.
    var rawCipherSuites: [UInt8]? = nil
    var compressionMethods: [UInt8] = [0]
    /// `nil` omits the extensions block.
    var extensions: [(UInt16, [UInt8])]? = []
    /// Replaces the extensions block's length when set.
    var rawExtensionsLength: UInt16? = nil
    var trailing: [UInt8] = []

    func handshake() -> [UInt8] {
        var body = u16(legacyVersion) + random + [UInt8(sessionID.count)] + sessionID
        body += rawCipherSuites ?? (u16(UInt16(cipherSuites.count * 2)) + cipherSuites.flatMap(u16))
        body += [UInt8(compressionMethods.count)] + compressionMethods
        if let extensions {
            let block = extensions.flatMap { u16($0.0) + u16(UInt16($0.1.count)) + $0.1 }
            body += u16(rawExtensionsLength ?? UInt16(block.count)) + block
        }
        body += trailing
        return [0x01, UInt8(body.count >> 16), UInt8((body.count >> 8) & 0xFF), UInt8(body.count & 0xFF)] + body
    }

    func record() -> [UInt8] { ClientHelloFixtures.records(handshake(), fragmentSize: 1 << 14) }

    static func serverNameList(_ entries: [(UInt8, [UInt8])]) -> [UInt8] {
        let list = entries.flatMap { [$0.0] + u16(UInt16($0.1.count)) + $0.1 }
        return u16(UInt16(list.count)) + list
    }

    static func sni(_ host: String) -> [UInt8] { serverNameList([(0, Array(host.utf8))]) }

    static func alpn(_ names: [[UInt8]]) -> [UInt8] {
        let list = names.flatMap { [UInt8($0.count)] + $0 }
        return u16(UInt16(list.count)) + list
    }
}

private func u16(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xFF)] }

// MARK: - Fixtures

/// ClientHellos captured from real clients: a python3 socket server on 127.0.0.1 accepted one
/// connection and hex-dumped everything the client sent before the server said anything. All are
/// TLS 1.3 capable (key_share, supported_versions) unless noted.
enum ClientHelloFixtures {
    /// `openssl s_client -connect 127.0.0.1:PORT -servername example.com -alpn h2,http/1.1` (OpenSSL 3.0.19).
    static let opensslSNIALPN = bytes(
        """
        160301014a01000146030386348abd9047f253f0e28761fa637013c83bba9587f10485766b7221fde65ab020195e11a0
        b844fd31884c9cac473dc7e8fa9e3ec0432c30c916989b7448aaa59f003e130213031301c02cc030009fcca9cca8ccaa
        c02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d003c0035002f00ff010000bf
        00000010000e00000b6578616d706c652e636f6d000b000403000102000a00160014001d0017001e0019001801000101
        010201030104002300000010000e000c02683208687474702f312e310016000000170000000d002a0028040305030603
        080708080809080a080b080408050806040105010601030303010302040205020602002b000908030403030302030100
        2d00020101003300260024001d0020fe146dcc08d73f4e2d29ff24608b1ccc74fc25b8b5a40ad331022ca90c05352b
        """
    )

    /// `openssl s_client -connect 127.0.0.1:PORT -servername example.com`: no ALPN.
    static let opensslNoALPN = bytes(
        """
        160301013801000134030360706cfeabd7342306117d6b115a361a82b8c27ef073f713c198355cec15e25520f90c65e4
        4996b63c31614e630d58a7ae42e3938cbe8c0664681e4f90caf94d32003e130213031301c02cc030009fcca9cca8ccaa
        c02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d003c0035002f00ff010000ad
        00000010000e00000b6578616d706c652e636f6d000b000403000102000a00160014001d0017001e0019001801000101
        010201030104002300000016000000170000000d002a0028040305030603080708080809080a080b0804080508060401
        05010601030303010302040205020602002b0009080304030303020301002d00020101003300260024001d00202e951e
        c1e98dcc0b8fb33ae39b479b5add39f55911fc582581f51f047ae4e62a
        """
    )

    /// `curl --http2 -k --resolve example.com:PORT:127.0.0.1 https://example.com:PORT/`
    /// (curl 7.88.1, OpenSSL 3.0.19), padded to 512 bytes.
    static let curlHTTP2 = bytes(
        """
        1603010200010001fc030347d3724206d1dfedec02438c235be69964269f80c491798db4389751b9822c4c2020511bf9
        3ad250bda091475f0c7d4b6ded6e07c30fed3b5aaaa7d8e857993a3a003e130213031301c02cc030009fcca9cca8ccaa
        c02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d003c0035002f00ff01000175
        00000010000e00000b6578616d706c652e636f6d000b000403000102000a00160014001d0017001e0019001801000101
        0102010301040010000e000c02683208687474702f312e31001600000017000000310000000d002a0028040305030603
        080708080809080a080b080408050806040105010601030303010302040205020602002b000908030403030302030100
        2d00020101003300260024001d00208a6b84b558fa290744cb27b1b88b28d9d51f867c7fd80d083bc343d346e86b5c00
        1500b2000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
        000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
        000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
        00000000000000000000000000000000000000000000000000000000000000000000000000
        """
    )

    /// `curl --http2 -k https://127.0.0.1:PORT/`: an IP literal, so no SNI (RFC 6066 §3).
    static let curlIPLiteral = bytes(
        """
        1603010200010001fc0303a63eb3b14f115579f8db9202533a59402b3174d056fd0922ce016ed66b5028a820b6882b00
        f0bd2dbc6f13cdd62c0cf8f02546949a2ebda83aa33785cb0df66114003e130213031301c02cc030009fcca9cca8ccaa
        c02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d003c0035002f00ff01000175
        000b000403000102000a00160014001d0017001e00190018010001010102010301040010000e000c0268320868747470
        2f312e31001600000017000000310000000d002a0028040305030603080708080809080a080b08040805080604010501
        0601030303010302040205020602002b0009080304030303020301002d00020101003300260024001d00203de1410340
        a36e8cc7adfb3ec5c46374db7a4b16a6f6ff714c0001cf3103093f001500c60000000000000000000000000000000000
        000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
        000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
        000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
        00000000000000000000000000000000000000000000000000000000000000000000000000
        """
    )

    /// `openssl s_client -connect 127.0.0.1:PORT -servername example.org -tls1_2`: no
    /// supported_versions, empty session ID.
    static let opensslTLS12 = bytes(
        """
        16030100cb010000c70303b67b0da727893247fcc04b121e14f020066d5e3cb43d1c57db0dd028a25fcce1000038c02c
        c030009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d003c
        0035002f00ff0100006600000010000e00000b6578616d706c652e6f7267000b000403000102000a000c000a001d0017
        001e00190018002300000016000000170000000d002a0028040305030603080708080809080a080b0804080508060401
        05010601030303010302040205020602
        """
    )

    /// `openssl s_client ... -max_send_frag 512 -cipher 'ALL:COMPLEMENTOFALL:@SECLEVEL=0'` with a
    /// 196-byte server name: one ClientHello in two records (512 + 133 bytes).
    static let opensslTwoRecords = bytes(
        """
        1603010200010002810303436a019abea859560dedeb50c853e4dd9f8d0f6e682a9699da4ad675e402df762005be16fd
        72fcb074950f546994ddbc8a9fce977cede48478c08c32aecedfc65300ba130213031301c02cc03000a3009fcca9cca8
        ccaac0afc0adc0a3c09fc05dc061c057c05300a7c02bc02f00a2009ec0aec0acc0a2c09ec05cc060c056c05200a6c024
        c028006b006ac073c07700c400c3006d00c5c023c02700670040c072c07600be00bd006c00bfc00ac014003900380088
        0087c019003a0089c009c0130033003200450044c01800340046009dc0a1c09dc051009cc0a0c09cc050003d00c0003c
        00ba00350084002f0041c006c010c015003b0002000100ff0100017e000000c900c70000c46161616161616161616161
        616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161
        612e61616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161
        61616161616161616161616161612e616161616161616161616161616161616161616161616161616161616161616161
        6161616161616161616161616161616161616161616161616161612e73706c69742e6578616d706c65000b0004030001
        02000a00160014001d0017001e0019001801000101010201030104002300000010000e000c1603010085026832086874
        74702f312e310016000000170000000d0030002e040305030603080708080809080a080b080408050806040105010601
        030302030301020103020202040205020602002b0009080304030303020301002d00020101003300260024001d0020ea
        305765ee636addf9608fc073ec0cee2fef85b1bda17203b21c1734df445d25
        """
    )

    static let all: [(name: String, bytes: [UInt8])] = [
        ("opensslSNIALPN", opensslSNIALPN), ("opensslNoALPN", opensslNoALPN), ("curlHTTP2", curlHTTP2),
        ("curlIPLiteral", curlIPLiteral), ("opensslTLS12", opensslTLS12), ("opensslTwoRecords", opensslTwoRecords),
    ]

    static func bytes(_ hex: String) -> [UInt8] {
        let digits = Array(hex.utf8.filter { !$0.isASCIIWhitespace })
        return stride(from: 0, to: digits.count, by: 2).map {
            UInt8(String(decoding: digits[$0..<$0 + 2], as: UTF8.self), radix: 16)!
        }
    }

    /// The handshake message inside single-record fixtures: the record minus its 5-byte header.
    static func handshakeMessage(_ record: [UInt8]) -> [UInt8] { Array(record.dropFirst(5)) }

    /// Wraps a handshake message into handshake records of at most `fragmentSize` bytes.
    static func records(_ message: [UInt8], fragmentSize: Int, version: UInt16 = 0x0301) -> [UInt8] {
        stride(from: 0, to: message.count, by: fragmentSize).flatMap { start -> [UInt8] in
            let fragment = message[start..<min(start + fragmentSize, message.count)]
            return [
                0x16, UInt8(version >> 8), UInt8(version & 0xFF), UInt8(fragment.count >> 8),
                UInt8(fragment.count & 0xFF),
            ]
                + fragment
        }
    }
}

extension UInt8 {
    fileprivate var isASCIIWhitespace: Bool { self == 0x20 || self == 0x0A || self == 0x0D || self == 0x09 }
}
