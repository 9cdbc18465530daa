import Foundation
import MitmCertificates
import SwiftASN1
import Testing
import X509
import _CryptoExtras

/// Creating a confdir: one RSA key generation for the whole suite, so every check of the new CA lives in
/// this one test, split into helpers.
@Suite("Confdir")
struct ConfdirTests {
    @Test("a new confdir holds what mitmproxy 11 writes, and loading it again changes nothing")
    func createsConfdirLikeMitmproxyAndReusesIt() async throws {
        try await withTemporaryDirectory { root in
            // A missing parent too: mitmproxy creates parents.
            let confdir = root + "/nested/.mitmproxy"
            let before = Date()
            let created = try CertificateAuthority.loadOrCreate(confdir: confdir)
            let after = Date()

            try self.checkFiles(in: confdir, root: root, authority: created)
            try self.checkCertificate(created.certificate, createdBetween: before, and: after)
            try await self.checkPKCS12Files(in: confdir, authority: created)

            // Loading again reuses the CA and touches no file.
            let snapshotBefore = try snapshot(confdir)
            let modesBefore = try snapshotBefore.keys.map { try posixPermissions(confdir + "/" + $0) }
            let reloaded = try CertificateAuthority.loadOrCreate(confdir: confdir)
            #expect(reloaded.certificate == created.certificate)
            #expect(reloaded.privateKey == created.privateKey)
            #expect(reloaded.combinedPEM == created.combinedPEM)
            #expect(try snapshot(confdir) == snapshotBefore)
            #expect(try snapshotBefore.keys.map { try posixPermissions(confdir + "/" + $0) } == modesBefore)

            // A leaf from the new CA chains to it.
            let leaf = try reloaded.signLeaf(for: .host("example.com"))
            #expect(try await verify(leaf, against: reloaded, hostname: "example.com"))
        }
    }

    private func checkFiles(in confdir: String, root: String, authority: CertificateAuthority) throws {
        let files = CertificateAuthority.ConfdirFiles()
        #expect(
            Set(try FileManager.default.contentsOfDirectory(atPath: confdir))
                == [
                    "mitmproxy-ca.pem", "mitmproxy-ca.p12", "mitmproxy-ca-cert.pem", "mitmproxy-ca-cert.cer",
                    "mitmproxy-ca-cert.p12", "mitmproxy-dhparam.pem",
                ]
        )
        #expect(Set(files.all) == Set(try FileManager.default.contentsOfDirectory(atPath: confdir)))

        // Modes: what the kernel gives 0o666 / 0o777 under this process's umask, and 0o600 for secrets.
        let probeFile = root + "/probe"
        #expect(FileManager.default.createFile(atPath: probeFile, contents: Data()))
        let publicMode = try posixPermissions(probeFile)
        let probeDirectory = root + "/probe-dir"
        try FileManager.default.createDirectory(atPath: probeDirectory, withIntermediateDirectories: false)
        #expect(try posixPermissions(confdir) == posixPermissions(probeDirectory))
        for name in [files.caPEM, files.caP12] {
            #expect(try posixPermissions(confdir + "/" + name) == 0o600 & publicMode, "\(name)")
        }
        for name in [files.certificatePEM, files.certificateCER, files.certificateP12, files.dhParameters] {
            #expect(try posixPermissions(confdir + "/" + name) == publicMode, "\(name)")
        }

        func text(_ name: String) throws -> String {
            String(decoding: try Data(contentsOf: URL(fileURLWithPath: confdir + "/" + name)), as: UTF8.self)
        }
        // Key then certificate, the key as PKCS#1 like cryptography's TraditionalOpenSSL format.
        let combined = try text(files.caPEM)
        #expect(combined.hasPrefix("-----BEGIN RSA PRIVATE KEY-----\n"))
        #expect(combined == authority.privateKeyPEM + authority.certificatePEM)
        #expect(combined.hasSuffix("-----END CERTIFICATE-----\n"))
        #expect(try text(files.certificatePEM) == authority.certificatePEM)
        #expect(try text(files.certificateCER) == authority.certificatePEM)
        #expect(try Certificate(pemEncoded: text(files.certificatePEM)) == authority.certificate)
        // PEM layout identical to cryptography's: 64-character lines.
        let fixtureLines = try String(
            decoding: Fixtures.data("mitmproxy11-confdir/mitmproxy-ca-cert.pem"),
            as: UTF8.self
        )
        .split(separator: "\n").map(\.count)
        let ourLines = try text(files.certificatePEM).split(separator: "\n").map(\.count)
        #expect(ourLines.dropFirst().dropLast(2).allSatisfy { $0 == 64 })
        #expect(fixtureLines.dropFirst().dropLast(2).allSatisfy { $0 == 64 })
        // The DH parameters file is byte-for-byte mitmproxy's.
        #expect(
            try Data(contentsOf: URL(fileURLWithPath: confdir + "/" + files.dhParameters))
                == Fixtures.data("mitmproxy11-confdir/mitmproxy-dhparam.pem")
        )
    }

    private func checkCertificate(_ certificate: Certificate, createdBetween before: Date, and after: Date) throws {
        let fixture = try Fixtures.certificate("mitmproxy11-confdir/mitmproxy-ca-cert.pem")

        #expect(certificate.version == .v3)
        #expect(certificate.subject == certificate.issuer)
        #expect(certificate.subject == fixture.subject)  // CN=mitmproxy, O=mitmproxy, both UTF8String
        #expect(certificate.signatureAlgorithm == .sha256WithRSAEncryption)
        #expect(certificate.signatureAlgorithm == fixture.signatureAlgorithm)
        let rsaKey = try #require(_RSA.Signing.PublicKey(certificate.publicKey))
        #expect(rsaKey.keySizeInBits == 2048)
        #expect(try rsaKey.getKeyPrimitives().publicExponent == Data([0x01, 0x00, 0x01]))

        // Serial: positive, at most 20 bytes (159 random bits).
        let serial = Array(certificate.serialNumber.bytes)
        #expect(serial.count <= 20)
        #expect(serial[0] & 0x80 == 0)

        // Validity: two days back, ten years (3650 days) forward, whole seconds.
        let day: TimeInterval = 86400
        let notBefore = certificate.notValidBefore
        #expect(notBefore >= before.addingTimeInterval(-2 * day - 1) && notBefore <= after.addingTimeInterval(-2 * day))
        #expect(certificate.notValidAfter.timeIntervalSince(notBefore) == 3652 * day)
        #expect(
            fixture.notValidAfter.timeIntervalSince(fixture.notValidBefore)
                == certificate.notValidAfter.timeIntervalSince(notBefore)
        )

        // Extensions: same kinds, order and criticality as mitmproxy's CA.
        #expect(extensionLayout(certificate) == extensionLayout(fixture))
        #expect(
            extensionLayout(certificate) == [
                "\(ASN1ObjectIdentifier.X509ExtensionID.basicConstraints) critical",
                "\(ASN1ObjectIdentifier.X509ExtensionID.extendedKeyUsage)",
                "\(ASN1ObjectIdentifier.X509ExtensionID.keyUsage) critical",
                "\(ASN1ObjectIdentifier.X509ExtensionID.subjectKeyIdentifier)",
            ]
        )
        let extensions = certificate.extensions
        #expect(try extensions.basicConstraints == .isCertificateAuthority(maxPathLength: nil))
        #expect(try extensions.extendedKeyUsage == ExtendedKeyUsage([.serverAuth]))
        #expect(try extensions.keyUsage == KeyUsage(keyCertSign: true, cRLSign: true))
        #expect(try extensions.subjectKeyIdentifier == SubjectKeyIdentifier(hash: certificate.publicKey))
        // The extension values encode exactly as mitmproxy's (the SKI aside, which depends on the key).
        for (ours, theirs) in zip(extensions, fixture.extensions)
        where ours.oid != .X509ExtensionID.subjectKeyIdentifier {
            #expect(ours.value == theirs.value, "\(ours.oid)")
        }
        // And the fixture's SKI follows the same rule.
        #expect(try fixture.extensions.subjectKeyIdentifier == SubjectKeyIdentifier(hash: fixture.publicKey))
    }

    private func checkPKCS12Files(in confdir: String, authority: CertificateAuthority) async throws {
        let withKey = try PFX(der: Array(Data(contentsOf: URL(fileURLWithPath: confdir + "/mitmproxy-ca.p12"))))
        let certificateOnly = try PFX(
            der: Array(Data(contentsOf: URL(fileURLWithPath: confdir + "/mitmproxy-ca-cert.p12")))
        )
        let fixtureWithKey = try PFX(der: Array(Fixtures.data("mitmproxy11-confdir/mitmproxy-ca.p12")))
        let fixtureCertificateOnly = try PFX(der: Array(Fixtures.data("mitmproxy11-confdir/mitmproxy-ca-cert.p12")))

        // Same layout as cryptography's: bag kinds, attributes, MAC algorithm, salt size and iterations.
        #expect(withKey.layout == fixtureWithKey.layout)
        #expect(certificateOnly.layout == fixtureCertificateOnly.layout)
        #expect(withKey.macIsValidForEmptyPassword)
        #expect(certificateOnly.macIsValidForEmptyPassword)

        #expect(withKey.certificates == [authority.certificateDER])
        #expect(certificateOnly.certificates == [authority.certificateDER])
        #expect(certificateOnly.privateKeys.isEmpty)
        let keyDER = try #require(withKey.privateKeys.first)
        #expect(try Certificate.PrivateKey(derBytes: keyDER) == authority.privateKey)

        // OpenSSL, as OS importers do, checks the MAC with the empty password and finds both items.
        for (name, expectsKey) in [("mitmproxy-ca.p12", true), ("mitmproxy-ca-cert.p12", false)] {
            guard
                let result = try await runOpenSSL([
                    "pkcs12", "-in", confdir + "/" + name, "-info", "-passin", "pass:", "-nodes",
                ])
            else {
                continue
            }
            #expect(result.status == 0, "\(result.output)")
            #expect(result.output.contains("MAC: sha256, Iteration 2048"), "\(result.output)")
            #expect(result.output.contains("friendlyName: mitmproxy"), "\(result.output)")
            #expect(result.output.contains("-----BEGIN CERTIFICATE-----"), "\(result.output)")
            #expect(result.output.contains("-----BEGIN PRIVATE KEY-----") == expectsKey, "\(result.output)")
        }
    }
}
