import Foundation
import MitmCertificates
import SwiftASN1
import Testing
import X509

@Suite("Leaf certificates")
struct LeafCertificateTests {
    private func sans(_ request: LeafRequest) throws -> [GeneralName] {
        let leaf = try Fixtures.authority.signLeaf(for: request)
        return Array(try #require(try leaf.certificate.extensions.subjectAlternativeNames))
    }

    private func ip(_ bytes: [UInt8]) -> GeneralName {
        .ipAddress(ASN1OctetString(contentBytes: bytes[...]))
    }

    @Test("DNS names and IPv4/IPv6 addresses become dNSName and iPAddress SANs, in order, once each")
    func subjectAlternativeNames() throws {
        let request = LeafRequest(
            commonName: "example.com",
            dnsNames: ["example.com", "*.example.com", "example.com"],
            ipAddresses: ["192.0.2.7", "2001:db8::1", "2001:0db8:0:0:0:0:0:1"]
        )
        #expect(
            try self.sans(request) == [
                .dnsName("example.com"),
                .dnsName("*.example.com"),
                self.ip([192, 0, 2, 7]),
                self.ip([0x20, 0x01, 0x0D, 0xB8] + Array(repeating: 0, count: 11) + [1]),
            ]
        )
    }

    @Test("a host in dnsNames that parses as an IP address becomes an iPAddress SAN, as mitmproxy's _ip_or_dns_name")
    func ipLookingHostBecomesIPSAN() async throws {
        let leaf = try Fixtures.authority.signLeaf(for: .host("10.1.2.3"), now: Fixtures.referenceTime)
        #expect(
            Array(try #require(try leaf.certificate.extensions.subjectAlternativeNames)) == [self.ip([10, 1, 2, 3])]
        )
        // The CN stays as given, as mitmproxy's does.
        #expect(subjectText(leaf.certificate) == "CN=10.1.2.3")
        #expect(try await verify(leaf, against: Fixtures.authority, ipAddress: "10.1.2.3", at: Fixtures.referenceTime))

        #expect(try self.sans(.host("::1")) == [self.ip(Array(repeating: 0, count: 15) + [1])])
        // Not addresses: leading zeros (rejected by Python's ipaddress too) and five octets.
        #expect(try self.sans(.host("01.2.3.4")) == [.dnsName("01.2.3.4")])
        #expect(try self.sans(.host("1.2.3.4.5")) == [.dnsName("1.2.3.4.5")])
    }

    @Test("non-ASCII host names are IDNA-encoded")
    func idna() throws {
        #expect(try self.sans(LeafRequest(dnsNames: ["bücher.example"])) == [.dnsName("xn--bcher-kva.example")])
        #expect(try self.sans(LeafRequest(dnsNames: ["München.de"])) == [.dnsName("xn--mnchen-3ya.de")])
    }

    @Test("subject: CN then O; no CN when too long, and the SAN is then critical")
    func subject() throws {
        let withOrganization = try Fixtures.authority.signLeaf(for: .host("example.com", organization: "Example Org"))
        #expect(subjectText(withOrganization.certificate) == "CN=example.com, O=Example Org")
        let san = try #require(withOrganization.certificate.extensions[oid: .X509ExtensionID.subjectAlternativeName])
        #expect(!san.critical)

        let name63 = String(repeating: "b", count: 59) + ".com"
        let name64 = String(repeating: "b", count: 60) + ".com"
        let kept = try Fixtures.authority.signLeaf(for: .host(name63))
        #expect(subjectText(kept.certificate) == "CN=\(name63)")
        let dropped = try Fixtures.authority.signLeaf(for: .host(name64, organization: "Org"))
        #expect(subjectText(dropped.certificate) == "O=Org")
        #expect(try #require(dropped.certificate.extensions[oid: .X509ExtensionID.subjectAlternativeName]).critical)
    }

    @Test("validity: two days back, 365 days forward; serverAuth only; AKI is the CA's SKI; no SKI")
    func validityAndExtensions() throws {
        let now = Fixtures.referenceTime.addingTimeInterval(0.75)
        let leaf = try Fixtures.authority.signLeaf(for: .host("example.com"), now: now)
        let certificate = leaf.certificate
        #expect(certificate.notValidBefore == Fixtures.referenceTime.addingTimeInterval(-2 * 86400))
        #expect(certificate.notValidAfter == Fixtures.referenceTime.addingTimeInterval(365 * 86400))
        #expect(try certificate.extensions.extendedKeyUsage == ExtendedKeyUsage([.serverAuth]))
        #expect(
            try certificate.extensions.authorityKeyIdentifier?.keyIdentifier
                == Fixtures.authority.certificate.extensions.subjectKeyIdentifier?.keyIdentifier
        )
        #expect(try certificate.extensions.subjectKeyIdentifier == nil)
        #expect(try certificate.extensions.basicConstraints == nil)
        #expect(certificate.signatureAlgorithm == .sha256WithRSAEncryption)
    }

    @Test("the leaf uses the CA's key and carries the chain leaf-first")
    func keyAndChain() throws {
        let authority = Fixtures.authority
        let leaf = try authority.signLeaf(for: .host("example.com"))
        #expect(leaf.privateKey == authority.privateKey)
        #expect(leaf.privateKeyDER == authority.privateKeyDER)
        #expect(leaf.privateKeyPEM.hasPrefix("-----BEGIN RSA PRIVATE KEY-----\n"))
        #expect(try Certificate.PrivateKey(pemEncoded: leaf.privateKeyPEM) == authority.privateKey)
        #expect(leaf.chainDER == [leaf.certificateDER, authority.certificateDER])
        #expect(try derBytes(leaf.certificate) == leaf.certificateDER)
        #expect(leaf.chainPEM == leaf.certificatePEM + authority.certificatePEM)
        // Two signings of one request differ in serial only (and the signature).
        let again = try authority.signLeaf(for: .host("example.com"))
        #expect(again.certificate.serialNumber != leaf.certificate.serialNumber)
    }

    @Test("an IP address that does not parse is a readable error")
    func invalidIPAddress() throws {
        let error = try #require(throws: CertificateStoreError.self) {
            try Fixtures.authority.signLeaf(for: LeafRequest(ipAddresses: ["300.1.1.1"]))
        }
        #expect(error.code == .invalidName)
        #expect(error.description.contains("300.1.1.1"))
    }
}
