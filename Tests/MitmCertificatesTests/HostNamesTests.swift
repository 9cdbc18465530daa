import Testing

@testable import MitmCertificates

@Suite("Host names")
struct HostNamesTests {
    @Test(
        "IPv4 and IPv6 parsing follows Python's ipaddress",
        arguments: [
            ("127.0.0.1", [127, 0, 0, 1]),
            ("0.0.0.0", [0, 0, 0, 0]),
            ("255.255.255.255", [255, 255, 255, 255]),
            ("::", [UInt8](repeating: 0, count: 16)),
            ("::1", [UInt8](repeating: 0, count: 15) + [1]),
            ("1::", [0, 1] + [UInt8](repeating: 0, count: 14)),
            ("2001:db8::8:800:200c:417a", [0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 8, 8, 0, 0x20, 0x0C, 0x41, 0x7A]),
            ("::ffff:192.0.2.1", [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF, 192, 0, 2, 1]),
            ("fe80::1%eth0", [0xFE, 0x80] + [UInt8](repeating: 0, count: 13) + [1]),
            ("1:2:3:4:5:6:7:8", [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8]),
        ] as [(String, [UInt8])]
    )
    func validAddresses(text: String, bytes: [UInt8]) {
        #expect(HostNames.ipAddressBytes(text) == bytes)
    }

    @Test(
        "strings that are not addresses",
        arguments: [
            "", "example.com", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.1.1.1", "1.2.3.-4", " 1.2.3.4",
            "1:2:3:4:5:6:7:8:9",
            "1::2::3", ":::", "12345::", "g::1", "1:2:3:4:5:6:7::8:9", "::1%", "1.2.3.4:80", "[::1]",
        ]
    )
    func invalidAddresses(text: String) {
        #expect(HostNames.ipAddressBytes(text) == nil)
    }

    @Test("canonical address text (RFC 5952)")
    func addressText() {
        for text in ["127.0.0.1", "::", "::1", "1::", "2001:db8::1", "2001:db8:0:1:1:1:1:1", "1:0:0:2::3"] {
            #expect(HostNames.ipAddressText(HostNames.ipAddressBytes(text)!) == text)
        }
        #expect(
            HostNames.ipAddressText(HostNames.ipAddressBytes("2001:0DB8:0000:0000:0000:0000:0000:0001")!)
                == "2001:db8::1"
        )
    }

    @Test("Punycode, RFC 3492 section 7.1 samples and common names")
    func punycode() throws {
        #expect(Punycode.encode("bücher") == "bcher-kva")
        #expect(Punycode.encode("münchen") == "mnchen-3ya")
        #expect(Punycode.encode("他们为什么不说中文") == "ihqwcrb4cv8a8dqg056pqjye")
        #expect(Punycode.encode("ü") == "tda")
        #expect(try HostNames.asciiDNSName("www.bücher.example") == "www.xn--bcher-kva.example")
        // ASCII is kept as given, like Python's idna codec.
        #expect(try HostNames.asciiDNSName("Example.COM") == "Example.COM")
    }

    @Test("asterisk forms, most specific first, as mitmproxy's CertStore.asterisk_forms")
    func asteriskForms() {
        #expect(HostNames.asteriskForms("www.example.com") == ["www.example.com", "*.example.com", "*.com"])
        #expect(HostNames.asteriskForms("localhost") == ["localhost"])
        #expect(HostNames.asteriskForms("10.0.0.1") == ["10.0.0.1"])
    }
}
