import Foundation
import MitmCertificates
import SwiftASN1
import Testing
import X509

/// Compatibility with what real mitmproxy 11.0.2 wrote (see `Fixtures/README.md`).
@Suite("mitmproxy 11 fixtures")
struct MitmproxyFixtureTests {
    @Test("a confdir written by mitmproxy is reused unchanged")
    func reusesMitmproxyConfdir() async throws {
        try await withTemporaryDirectory { root in
            let confdir = root + "/confdir"
            try copyFixtureConfdir(to: confdir)
            let before = try snapshot(confdir)

            let authority = try CertificateAuthority.loadOrCreate(confdir: confdir)

            #expect(try snapshot(confdir) == before)
            let fixtureCertificate = try Fixtures.certificate("mitmproxy11-confdir/mitmproxy-ca-cert.pem")
            #expect(authority.certificate == fixtureCertificate)
            #expect(authority.chain == [fixtureCertificate])
            #expect(authority.combinedPEM.utf8.elementsEqual(before["mitmproxy-ca.pem"]!))
            #expect(authority.certificatePEM.utf8.elementsEqual(before["mitmproxy-ca-cert.pem"]!))
            #expect(authority.privateKeyPEM.hasPrefix("-----BEGIN RSA PRIVATE KEY-----\n"))
            #expect(!authority.isExpired(now: Fixtures.referenceTime))
        }
    }

    @Test("a mitmproxy confdir without its DH parameters file gets it back, as mitmproxy's loader does")
    func restoresMissingDHParameters() async throws {
        try await withTemporaryDirectory { root in
            let confdir = root + "/confdir"
            try copyFixtureConfdir(to: confdir)
            try FileManager.default.removeItem(atPath: confdir + "/mitmproxy-dhparam.pem")
            _ = try CertificateAuthority.loadOrCreate(confdir: confdir)
            #expect(
                try Data(contentsOf: URL(fileURLWithPath: confdir + "/mitmproxy-dhparam.pem"))
                    == Fixtures.data("mitmproxy11-confdir/mitmproxy-dhparam.pem")
            )
        }
    }

    @Test("a leaf signed by mitmproxy's CA chains to it, for swift-certificates and for openssl")
    func leafChainsToMitmproxyCA() async throws {
        let authority = Fixtures.authority
        let request = LeafRequest(commonName: "example.com", dnsNames: ["example.com"], ipAddresses: ["10.0.0.1"])
        let leaf = try authority.signLeaf(for: request, now: Fixtures.referenceTime)

        #expect(try await verify(leaf, against: authority, hostname: "example.com", at: Fixtures.referenceTime))
        #expect(try await verify(leaf, against: authority, ipAddress: "10.0.0.1", at: Fixtures.referenceTime))
        #expect(leaf.chainDER == [leaf.certificateDER, authority.certificateDER])

        try await withTemporaryDirectory { root in
            try leaf.certificatePEM.write(toFile: root + "/leaf.pem", atomically: true, encoding: .utf8)
            let arguments = [
                "verify", "-CAfile", Fixtures.confdir.appendingPathComponent("mitmproxy-ca-cert.pem").path,
                "-purpose", "sslserver", "-attime", "\(Int(Fixtures.referenceTime.timeIntervalSince1970) + 3600)",
                "-verify_hostname", "example.com", root + "/leaf.pem",
            ]
            if let result = try await runOpenSSL(arguments) {
                #expect(result.status == 0, "\(result.output)")
                #expect(result.output.contains("OK"), "\(result.output)")
            }
        }
    }

    @Test("our leaf has the shape of mitmproxy's leaf for the same request")
    func leafLooksLikeMitmproxyLeaf() throws {
        let authority = Fixtures.authority
        let theirs = try Fixtures.certificate("mitmproxy11-leaf-example.com.pem")
        let ours = try authority.signLeaf(
            for: LeafRequest(
                commonName: "example.com",
                dnsNames: ["example.com"],
                ipAddresses: ["10.0.0.1"],
                organization: "Example Org"
            )
        )
        let certificate = ours.certificate

        #expect(certificate.version == theirs.version)
        #expect(certificate.issuer == theirs.issuer)
        #expect(certificate.subject == theirs.subject)  // CN=example.com, O=Example Org, as UTF8String
        #expect(certificate.publicKey == theirs.publicKey)  // the CA's own key
        #expect(certificate.publicKey == authority.certificate.publicKey)
        #expect(certificate.signatureAlgorithm == theirs.signatureAlgorithm)
        #expect(
            certificate.notValidAfter.timeIntervalSince(certificate.notValidBefore)
                == theirs.notValidAfter.timeIntervalSince(theirs.notValidBefore)
        )
        #expect(extensionLayout(certificate) == extensionLayout(theirs))
        // Same extension bytes: EKU, SAN (DNS then IP) and AKI do not depend on randomness.
        #expect(certificate.extensions.map(\.value) == theirs.extensions.map(\.value))
        #expect(certificate.serialNumber.bytes.count <= 20)
    }

    @Test("a leaf without a usable CN has an empty subject and a critical SAN, as mitmproxy's")
    func leafWithoutCommonNameLooksLikeMitmproxyLeaf() throws {
        let theirs = try Fixtures.certificate("mitmproxy11-leaf-no-cn.pem")
        let longName = String(repeating: "a", count: 70) + ".example"
        let ours = try Fixtures.authority.signLeaf(for: LeafRequest(commonName: nil, dnsNames: [longName]))
        #expect(ours.certificate.subject == theirs.subject)
        #expect(ours.certificate.subject.isEmpty)
        #expect(extensionLayout(ours.certificate) == extensionLayout(theirs))
        #expect(ours.certificate.extensions.map(\.value) == theirs.extensions.map(\.value))

        // A CN of 64 characters or more is left out in the same way.
        let tooLong = try Fixtures.authority.signLeaf(for: .host(longName))
        #expect(tooLong.certificate.subject.isEmpty)
        #expect(extensionLayout(tooLong.certificate) == extensionLayout(theirs))
    }
}
