import NIOCore
import MitmTestSupport
import Testing

@testable import MitmCore

@Suite("ProtocolSniffer")
struct ProtocolSnifferTests {
    @Test(arguments: ClientHelloFixtures.all.map(\.name))
    func realClientHellosAreTLS(name: String) {
        let bytes = ClientHelloFixtures.all.first { $0.name == name }!.bytes
        #expect(sniff(bytes) == .tls)
        #expect(sniff(Array(bytes.prefix(6))) == .tls)
        for length in 0..<6 {
            #expect(sniff(Array(bytes.prefix(length))) == .needMoreData)
        }
    }

    @Test func http2PrefaceWaitsForAll24Bytes() {
        let preface = ProtocolSniffer.http2Preface
        #expect(preface.count == 24)
        for length in 0..<preface.count {
            #expect(sniff(Array(preface.prefix(length))) == .needMoreData, "prefix \(length)")
        }
        #expect(sniff(preface) == .http2Preface)
        // Followed by the client's SETTINGS frame.
        #expect(sniff(preface + [0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00]) == .http2Preface)
        // Diverging from the preface after "PRI " is an HTTP/1 request with method PRI.
        #expect(sniff("PRI * HTTP/1.1\r\n") == .http1)
        #expect(sniff("PRI * HTTP/2.1") == .http1)
    }

    @Test(arguments: [
        "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "CONNECT example.com:443 HTTP/1.1\r\n",
        "POST /upload HTTP/1.1\r\n",
        "OPTIONS * HTTP/1.1\r\n",
        "M-SEARCH * HTTP/1.1\r\n",  // SSDP
        "VERSION-CONTROL /x HTTP/1.1\r\n",  // WebDAV, RFC 3253
        "UPDATEREDIRECTREF /x HTTP/1.1\r\n",
        "GET ",
        "PRIX / HTTP/1.1",
    ])
    func http1RequestLines(line: String) {
        #expect(sniff(line) == .http1)
    }

    @Test(arguments: ["", "G", "GE", "GET", "CONNEC", "M-SEARCH", "SSH-", "P", "PRI", "PRI * HTTP/2.0\r\n"])
    func prefixesNeedMoreData(prefix: String) {
        #expect(sniff(prefix) == .needMoreData)
    }

    @Test(arguments: [
        "get / HTTP/1.1\r\n",  // methods are case-sensitive
        "GE / HTTP/1.1\r\n",  // shorter than three letters, as mitmproxy requires
        " GET /",
        "-GET /",
        "GET\t/",
        "GET/",
        "SSH-2.0-OpenSSH_9.2\r\n",
        "220 smtp.example ESMTP\r\n",
        "\u{0}\u{0}\u{0}",
        "ABCDEFGHIJKLMNOPQRSTUVWXY",  // 25 letters: longer than any method
    ])
    func unknownProtocols(text: String) {
        #expect(sniff(text) == .unknown)
    }

    @Test func longestMethodStillCounts() {
        let method = String(repeating: "A", count: ProtocolSniffer.maximumMethodLength)
        #expect(sniff(method) == .needMoreData)
        #expect(sniff(method + " / HTTP/1.1") == .http1)
        #expect(sniff(method + "A") == .unknown)
    }

    @Test(
        arguments: [
            ([0x16, 0x03, 0x04], ProtocolSniffer.Verdict.unknown),  // no such record version
            ([0x16, 0x03, 0x03, 0x00, 0x30, 0x02], .unknown),  // a ServerHello
            ([0x16, 0x03, 0x01, 0x00], .needMoreData),
            ([0x17, 0x03, 0x03, 0x00, 0x10, 0x00], .unknown),  // application data
            ([0x80, 0x2E, 0x01, 0x03, 0x01], .unknown),  // SSLv2-compatible hello
        ] as [([UInt8], ProtocolSniffer.Verdict)]
    )
    func tlsLookalikes(bytes: [UInt8], expected: ProtocolSniffer.Verdict) {
        #expect(sniff(bytes) == expected)
    }

    @Test func readerIndexIsRespected() {
        var buffer = ByteBuffer(string: "xxGET / HTTP/1.1\r\n")
        buffer.moveReaderIndex(forwardBy: 2)
        #expect(ProtocolSniffer.sniff(buffer) == .http1)
        #expect(buffer.readerIndex == 2)
    }

    /// Once the verdict is not `needMoreData`, more bytes never change it; random input never traps.
    @Test func verdictIsStableUnderRandomInput() {
        var rng = SplitMix64(seed: 0x5EED_0003)
        let starts: [[UInt8]] = [[], Array("GET".utf8), Array("PRI * HTTP/2".utf8), [0x16, 0x03], [0x16]]
        for round in 0..<2000 {
            let tail = (0..<Int.random(in: 0...40, using: &rng)).map { _ -> UInt8 in
                // Bias towards bytes the rules care about.
                Bool.random(using: &rng)
                    ? UInt8.random(in: 0...255, using: &rng)
                    : Array("ABCZ -_*\r\n\u{16}\u{3}\u{1}".utf8).randomElement(using: &rng)!
            }
            let bytes = starts[round % starts.count] + tail
            var decided: ProtocolSniffer.Verdict? = nil
            for length in 0...bytes.count {
                let verdict = sniff(Array(bytes.prefix(length)))
                if let decided, verdict != decided {
                    Issue.record("\(bytes), prefix \(length): \(verdict), expected \(decided)")
                    break
                } else if decided == nil, verdict != .needMoreData {
                    decided = verdict
                }
            }
        }
    }

    private func sniff(_ bytes: [UInt8]) -> ProtocolSniffer.Verdict {
        ProtocolSniffer.sniff(ByteBuffer(bytes: bytes))
    }

    private func sniff(_ text: String) -> ProtocolSniffer.Verdict {
        ProtocolSniffer.sniff(ByteBuffer(string: text))
    }
}
