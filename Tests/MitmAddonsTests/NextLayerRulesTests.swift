import MitmCore
import NIOCore
import Testing

@testable import MitmAddons

@Suite("NextLayerRules: ignore_hosts, allow_hosts, tcp_hosts, rawtcp")
struct NextLayerRulesTests {
    static let server = Address(host: "example.com", port: 443)

    func rules(ignore: [String] = [], allow: [String] = [], tcp: [String] = [], rawTCP: Bool = true) throws -> NextLayerRules {
        var options = ProxyOptions()
        options.ignoreHosts = ignore
        options.allowHosts = allow
        options.tcpHosts = tcp
        options.rawTCP = rawTCP
        return try NextLayerRules(options: options)
    }

    func decide(_ rules: NextLayerRules, _ text: String, server: Address = server, inTunnel: Bool = true) -> NextLayerRules.Decision {
        rules.decide(firstBytes: ByteBuffer(string: text), server: server, inTunnel: inTunnel)
    }

    /// `openssl s_client -servername example.com` (no ALPN), the same fixture as the ClientHello tests.
    static let helloForExampleCom: [UInt8] = hex(
        "160301013801000134030360706cfeabd7342306117d6b115a361a82b8c27ef073f713c198355cec15e25520f90c65e4"
            + "4996b63c31614e630d58a7ae42e3938cbe8c0664681e4f90caf94d32003e130213031301c02cc030009fcca9cca8ccaa"
            + "c02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d003c0035002f00ff010000ad"
            + "00000010000e00000b6578616d706c652e636f6d000b000403000102000a00160014001d0017001e0019001801000101"
            + "010201030104002300000016000000170000000d002a0028040305030603080708080809080a080b0804080508060401"
            + "05010601030303010302040205020602002b0009080304030303020301002d00020101003300260024001d00202e951e"
            + "c1e98dcc0b8fb33ae39b479b5add39f55911fc582581f51f047ae4e62a"
    )

    static func hex(_ text: String) -> [UInt8] {
        var bytes: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(index, offsetBy: 2)
            bytes.append(UInt8(text[index..<next], radix: 16) ?? 0)
            index = next
        }
        return bytes
    }

    // MARK: - Patterns

    @Test func patternsAreSearchedAnywhereIgnoringCase() throws {
        let patterns = try HostPatterns(option: "ignore_hosts", ["EXAMPLE\\.com", "^10\\.0\\.0\\.1:"])
        #expect(patterns.matches("www.example.com:443"))
        #expect(patterns.matches("notexample.com:80"))
        #expect(patterns.matches("10.0.0.1:22"))
        #expect(!patterns.matches("110.0.0.1:22"))
        #expect(!patterns.matches("example.org:443"))
    }

    @Test func aBadPatternNamesItsOption() {
        #expect(throws: HostPatternError(option: "tcp_hosts", pattern: "(", reason: "not a valid regular expression")) {
            try rules(tcp: ["("])
        }
        let error = HostPatternError(option: "allow_hosts", pattern: "a[", reason: "not a valid regular expression")
        #expect(error.description == "Invalid allow_hosts pattern 'a[': not a valid regular expression")
    }

    // MARK: - ignore_hosts and allow_hosts

    @Test func ignoreAndAllowFollowMitmproxysRule() throws {
        let ignoring = try rules(ignore: ["example\\.com"])
        #expect(ignoring.ignores(hostnames: ["example.com:443"]))
        #expect(!ignoring.ignores(hostnames: ["example.org:443"]))

        let allowing = try rules(allow: ["example\\.com"])
        #expect(!allowing.ignores(hostnames: ["example.com:443"]))
        #expect(allowing.ignores(hostnames: ["example.org:443"]))
        // One allowed name among several is enough.
        #expect(!allowing.ignores(hostnames: ["93.184.215.14:443", "example.com:443"]))

        // Both set (mitmproxy 11 accepts this): allowed and not ignored.
        let both = try rules(ignore: [":22$"], allow: ["example\\.com"])
        #expect(!both.ignores(hostnames: ["example.com:443"]))
        #expect(both.ignores(hostnames: ["example.com:22"]))
        #expect(both.ignores(hostnames: ["example.org:443"]))

        #expect(!allowing.ignores(hostnames: []))
    }

    @Test func theServerAddressDecidesBeforeAnyByteIsParsed() throws {
        let rules = try rules(ignore: ["^example\\.com:443$"])
        #expect(decide(rules, "\u{1}binary") == .ignore)
        #expect(decide(rules, "\u{1}binary", server: Address(host: "example.com", port: 8443)) == .tcp)
    }

    @Test func theSNIIsMatchedWithTheServersPort() throws {
        let rules = try rules(ignore: ["^example\\.com:8443$"])
        let hello = ByteBuffer(bytes: Self.helloForExampleCom)
        let server = Address(host: "10.1.2.3", port: 8443)
        #expect(rules.decide(firstBytes: hello, server: server, inTunnel: true) == .ignore)
        // Half a ClientHello: wait for the SNI.
        let half = ByteBuffer(bytes: Self.helloForExampleCom.prefix(100))
        #expect(rules.decide(firstBytes: half, server: server, inTunnel: true) == .needMoreData)
        // Not ignored: TLS is intercepted.
        let other = try self.rules(ignore: ["^example\\.org"])
        guard case .tls(let parsed) = other.decide(firstBytes: hello, server: server, inTunnel: true) else {
            Issue.record("expected TLS")
            return
        }
        #expect(parsed.serverName == "example.com")
    }

    @Test func theHostHeaderCountsForHTTP() throws {
        let rules = try rules(allow: ["^api\\.example\\.com:80$"])
        let server = Address(host: "10.1.2.3", port: 80)
        #expect(decide(rules, "GET / HTTP/1.1\r\nAccept: */*\r\n", server: server) == .needMoreData)
        #expect(decide(rules, "GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n", server: server) == .http1)
        #expect(decide(rules, "GET / HTTP/1.1\r\nhost:  api.example.com:80 \r\n", server: server) == .http1)
        #expect(decide(rules, "GET / HTTP/1.1\r\nHost: other.example.com\r\n\r\n", server: server) == .ignore)
        #expect(decide(rules, "GET / HTTP/1.1\r\n\r\n", server: server) == .ignore)
    }

    @Test func hostHeaderParsing() {
        func parse(_ text: String) -> NextLayerRules.HostHeader { NextLayerRules.hostHeader(ByteBuffer(string: text)) }
        #expect(parse("GET / HTTP/1.1\r\nHost: a.b\r\n") == .found("a.b"))
        #expect(parse("GET / HTTP/1.1\r\nX: y\r\nHOST:\ta.b:81\r\n") == .found("a.b:81"))
        #expect(parse("GET / HTTP/1.1\r\nHost: a.b") == .needMoreData)
        #expect(parse("GET / HTTP/1.1\r\nX-Host: a\r\n\r\nHost: b\r\n") == .absent)
        #expect(NextLayerRules.withPort("a.b", 443) == "a.b:443")
        #expect(NextLayerRules.withPort("a.b:8443", 443) == "a.b:8443")
    }

    // MARK: - tcp_hosts and rawtcp

    @Test func tcpHostsMatchTheHostAndComeAfterTLS() throws {
        let rules = try rules(tcp: ["^example\\.com$"])
        #expect(decide(rules, "GET / HTTP/1.1\r\n") == .tcp)
        #expect(decide(rules, "GET / HTTP/1.1\r\n", server: Address(host: "example.org", port: 443)) == .http1)
        // TLS is intercepted first; the decrypted stream is decided after the handshake.
        let hello = ByteBuffer(bytes: Self.helloForExampleCom)
        if case .tls = rules.decide(firstBytes: hello, server: Self.server, inTunnel: true) {} else {
            Issue.record("expected TLS")
        }
        #expect(rules.decideAfterClientTLS(server: Self.server, sni: nil, alpn: "h2", inTunnel: true) == .tcp)
        let byIP = Address(host: "10.1.2.3", port: 443)
        #expect(rules.decideAfterClientTLS(server: byIP, sni: "example.com", alpn: "h2", inTunnel: true) == .tcp)
        #expect(rules.decideAfterClientTLS(server: byIP, sni: "example.org", alpn: "h2", inTunnel: true) == .http2)
        #expect(rules.decideAfterClientTLS(server: byIP, sni: nil, alpn: "http/1.1", inTunnel: true) == .http1)
        #expect(rules.decideAfterClientTLS(server: byIP, sni: nil, alpn: nil, inTunnel: true) == .peek)
        // Reverse mode: HTTP by the ALPN, whatever the rules.
        #expect(rules.decideAfterClientTLS(server: Self.server, sni: nil, alpn: nil, inTunnel: false) == .http1)
    }

    @Test func rawTCPDecidesWhatIsNotHTTP() throws {
        let on = try rules()
        let off = try rules(rawTCP: false)
        for text in ["SSH-2.0-OpenSSH_9.6\r\n", "\u{0}\u{1}binary", "hello\n", "get / http/1.1\r\n"] {
            #expect(decide(on, text) == .tcp, "\(text)")
            // mitmproxy hands it to its HTTP layer, which answers with an error.
            #expect(decide(off, text) == .http1, "\(text)")
            #expect(decide(on, text, inTunnel: false) == .unrecognized, "\(text)")
        }
        #expect(decide(on, "GET / HTTP/1.1\r\n") == .http1)
        #expect(decide(on, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") == .http2)
        #expect(decide(on, "GE") == .needMoreData)
        #expect(on.decideDecrypted(ByteBuffer(string: "* OK IMAP4rev1 ready\r\n")) == .tcp)
        #expect(on.decideDecrypted(ByteBuffer(string: "GET / HTTP/1.1\r\n")) == .http1)
        #expect(off.decideDecrypted(ByteBuffer(string: "\u{0}")) == .http1)
    }
}
