import Crypto
import Foundation
import MitmCertificates
import SwiftASN1
import Testing
import X509

@Suite("Certificate store")
struct CertificateStoreTests {
    private func makeStore(
        capacity: Int = MitmCertificates.CertificateStore.defaultCapacity
    )
        -> MitmCertificates.CertificateStore
    {
        MitmCertificates.CertificateStore(authority: Fixtures.authority, capacity: capacity)
    }

    // MARK: - Cache

    @Test("a repeated host costs no signing")
    func cacheHit() async throws {
        let store = self.makeStore()
        #expect(store.cachedLeaf(for: .host("example.com")) == nil)

        let first = try await store.leaf(for: .host("example.com"))
        #expect(store.signedLeafCount == 1)
        let second = try await store.leaf(for: .host("example.com"))
        let third = try store.leafNow(for: .host("example.com"))
        let cached = try #require(store.cachedLeaf(for: .host("example.com")))
        #expect(store.signedLeafCount == 1)
        #expect(second.certificateDER == first.certificateDER)
        #expect(third.certificateDER == first.certificateDER)
        #expect(cached.certificateDER == first.certificateDER)

        _ = try await store.leaf(for: .host("other.example"))
        #expect(store.signedLeafCount == 2)
        #expect(store.cachedLeafCount == 2)
    }

    @Test("20 concurrent first requests for one host sign once")
    func concurrentRequestsSignOnce() async throws {
        let store = self.makeStore()
        let request = LeafRequest.host("concurrent.example")
        let leaves = try await withThrowingTaskGroup(of: [UInt8].self) { group in
            for _ in 0..<20 {
                group.addTask { try await store.leaf(for: request).certificateDER }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(leaves.count == 20)
        #expect(Set(leaves).count == 1)
        #expect(store.signedLeafCount == 1)
    }

    @Test("concurrent requests for different hosts each sign once")
    func concurrentRequestsForManyHosts() async throws {
        let store = self.makeStore()
        let hosts = (0..<5).map { "host\($0).example" }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for host in hosts {
                for _ in 0..<4 {
                    group.addTask { _ = try await store.leaf(for: .host(host)) }
                }
            }
            try await group.waitForAll()
        }
        #expect(store.signedLeafCount == hosts.count)
    }

    @Test("a failed signing reaches every waiter and is not cached")
    func failuresAreNotCached() async throws {
        let store = self.makeStore()
        let request = LeafRequest(ipAddresses: ["not-an-address"])
        await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<5 {
                group.addTask {
                    do {
                        _ = try await store.leaf(for: request)
                        return false
                    } catch {
                        return (error as? CertificateStoreError)?.code == .invalidName
                    }
                }
            }
            for await failedAsExpected in group {
                #expect(failedAsExpected)
            }
        }
        #expect(store.signedLeafCount == 0)
        #expect(store.cachedLeaf(for: request) == nil)
    }

    @Test("the cache is bounded and evicts the least recently used certificate")
    func leastRecentlyUsedEviction() async throws {
        let store = self.makeStore(capacity: 2)
        _ = try await store.leaf(for: .host("a.example"))
        _ = try await store.leaf(for: .host("b.example"))
        _ = store.cachedLeaf(for: .host("a.example"))  // a is now more recent than b
        _ = try await store.leaf(for: .host("c.example"))
        #expect(store.cachedLeafCount == 2)
        #expect(store.cachedLeaf(for: .host("a.example")) != nil)
        #expect(store.cachedLeaf(for: .host("b.example")) == nil)
        #expect(store.cachedLeaf(for: .host("c.example")) != nil)
        #expect(store.signedLeafCount == 3)
    }

    // MARK: - User certificates

    /// Writes a certificate for `names` (CN = first name) signed by the fixture CA, with its own P-256 key.
    private func writeUserCertificate(
        names: [String],
        to path: String,
        includeKey: Bool = true,
        useCAKey: Bool = false
    ) throws -> Certificate {
        let authority = Fixtures.authority
        let key = useCAKey ? authority.privateKey : Certificate.PrivateKey(P256.Signing.PrivateKey())
        let certificate = try Certificate(
            version: .v3,
            serialNumber: .init(),
            publicKey: key.publicKey,
            notValidBefore: Date().addingTimeInterval(-3600),
            notValidAfter: Date().addingTimeInterval(86400),
            issuer: authority.certificate.subject,
            subject: try DistinguishedName { CommonName(names[0]) },
            signatureAlgorithm: .sha256WithRSAEncryption,
            extensions: try Certificate.Extensions {
                SubjectAlternativeNames(names.map { GeneralName.dnsName($0) })
            },
            issuerPrivateKey: authority.privateKey
        )
        var pem = try certificate.serializeAsPEM().pemString + "\n" + authority.certificatePEM
        if includeKey {
            pem += try key.serializeAsPEM().pemString + "\n"
        }
        try pem.write(toFile: path, atomically: true, encoding: .utf8)
        return certificate
    }

    @Test("user certificates match by exact name, wildcard forms and *, case-insensitively")
    func customCertificateMatching() async throws {
        try await withTemporaryDirectory { root in
            let store = self.makeStore()
            let exact = try self.writeUserCertificate(names: ["exact.test"], to: root + "/exact.pem")
            let wildcard = try self.writeUserCertificate(names: ["wild.test"], to: root + "/wild.pem")
            try store.addCustomCertificate(spec: "exact.test=\(root)/exact.pem")
            try store.addCustomCertificate(spec: "*.example.org=\(root)/wild.pem")

            #expect(store.customCertificate(forHost: "exact.test")?.certificate == exact)
            #expect(store.customCertificate(forHost: "EXACT.test")?.certificate == exact)
            #expect(store.customCertificate(forHost: "www.example.org")?.certificate == wildcard)
            #expect(store.customCertificate(forHost: "a.b.example.org")?.certificate == wildcard)
            // Also registered under its own CN and SANs, as mitmproxy's add_cert does.
            #expect(store.customCertificate(forHost: "wild.test")?.certificate == wildcard)
            #expect(store.customCertificate(forHost: "example.org") == nil)
            #expect(store.customCertificate(forHost: "other.test") == nil)

            // The chain is the file's certificates in order; the key is the file's.
            let custom = try #require(store.customCertificate(forHost: "exact.test"))
            #expect(custom.chainDER == [try derBytes(exact), Fixtures.authority.certificateDER])
            #expect(custom.privateKey.publicKey == exact.publicKey)
            #expect(custom.privateKeyPEM.hasPrefix("-----BEGIN PRIVATE KEY-----\n"))

            // leaf(for:) prefers user certificates and signs nothing for them.
            #expect(try await store.leaf(for: .host("www.example.org")).certificate == wildcard)
            #expect(try store.leafNow(for: .host("exact.test")).certificate == exact)
            #expect(store.cachedLeaf(for: .host("exact.test"))?.certificate == exact)
            #expect(store.signedLeafCount == 0)
            _ = try await store.leaf(for: .host("generated.test"))
            #expect(store.signedLeafCount == 1)

            // A bare path serves every host.
            let catchAll = try self.writeUserCertificate(names: ["all.test"], to: root + "/all.pem")
            try store.addCustomCertificate(spec: root + "/all.pem")
            #expect(store.customCertificate(forHost: "anything.else")?.certificate == catchAll)
            #expect(store.customCertificate(forHost: "exact.test")?.certificate == exact)
        }
    }

    @Test("a user certificate without a key may use the CA's key, as in mitmproxy")
    func customCertificateWithCAKey() async throws {
        try await withTemporaryDirectory { root in
            let store = self.makeStore()
            let certificate = try self.writeUserCertificate(
                names: ["ca-key.test"],
                to: root + "/cert.pem",
                includeKey: false,
                useCAKey: true
            )
            try store.addCustomCertificate(spec: "ca-key.test=\(root)/cert.pem")
            let custom = try #require(store.customCertificate(forHost: "ca-key.test"))
            #expect(custom.certificate == certificate)
            #expect(custom.privateKey == Fixtures.authority.privateKey)
        }
    }

    // MARK: - Errors

    @Test("a user certificate without its key is refused with a message naming the file")
    func customCertificateMissingKey() async throws {
        try await withTemporaryDirectory { root in
            let store = self.makeStore()
            _ = try self.writeUserCertificate(names: ["nokey.test"], to: root + "/nokey.pem", includeKey: false)
            let error = try #require(throws: CertificateStoreError.self) {
                try store.addCustomCertificate(spec: "nokey.test=\(root)/nokey.pem")
            }
            #expect(error.code == .missingPrivateKey)
            #expect(error.description.contains("\(root)/nokey.pem"))
            #expect(error.description.contains("no private key"))
        }
    }

    @Test("bad PEM gives a readable error naming the file and the problem")
    func badPEM() async throws {
        try await withTemporaryDirectory { root in
            let store = self.makeStore()
            let garbage = root + "/garbage.pem"
            try "this is not a certificate\n".write(toFile: garbage, atomically: true, encoding: .utf8)
            let noBlocks = try #require(throws: CertificateStoreError.self) {
                try store.addCustomCertificate(spec: garbage)
            }
            #expect(noBlocks.code == .invalidPEM)
            #expect(noBlocks.path == garbage)
            #expect(noBlocks.description.contains(garbage))
            #expect(noBlocks.description.contains("no \"-----BEGIN ...-----\" block found"))

            let truncated = root + "/truncated.pem"
            try "-----BEGIN CERTIFICATE-----\nMIIB\n".write(toFile: truncated, atomically: true, encoding: .utf8)
            let unterminated = try #require(throws: CertificateStoreError.self) {
                try store.addCustomCertificate(spec: "x.test=\(truncated)")
            }
            #expect(unterminated.code == .invalidPEM)
            #expect(unterminated.description.contains("has no \"-----END CERTIFICATE-----\" line"))

            let notDER = root + "/notder.pem"
            try "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
                .write(toFile: notDER, atomically: true, encoding: .utf8)
            let badCertificate = try #require(throws: CertificateStoreError.self) {
                try store.addCustomCertificate(spec: notDER)
            }
            #expect(badCertificate.code == .invalidPEM)
            #expect(badCertificate.description.contains("block 1 (CERTIFICATE) is not a valid X.509 certificate"))

            let missing = try #require(throws: CertificateStoreError.self) {
                try store.addCustomCertificate(spec: "x.test=\(root)/does-not-exist.pem")
            }
            #expect(missing.code == .fileNotFound)
            #expect(missing.description.contains("does-not-exist.pem"))

            let directory = try #require(throws: CertificateStoreError.self) {
                try store.addCustomCertificate(spec: "x.test=\(root)")
            }
            #expect(directory.code == .fileUnreadable)
            #expect(directory.description.contains("\(root): can't read file"))

            #expect(throws: CertificateStoreError(code: .invalidSpec)) {
                try store.addCustomCertificate(spec: "=\(garbage)")
            }
        }
    }

    @Test("a broken CA file is reported, never silently replaced")
    func brokenCAFile() async throws {
        try await withTemporaryDirectory { root in
            let confdir = root + "/confdir"
            try FileManager.default.createDirectory(atPath: confdir, withIntermediateDirectories: false)
            let caPath = confdir + "/mitmproxy-ca.pem"
            try Fixtures.data("mitmproxy11-confdir/mitmproxy-ca-cert.pem").write(to: URL(fileURLWithPath: caPath))
            let error = try #require(throws: CertificateStoreError.self) {
                try CertificateAuthority.loadOrCreate(confdir: confdir)
            }
            #expect(error.code == .missingPrivateKey)
            #expect(error.description.contains(caPath))
            #expect(try FileManager.default.contentsOfDirectory(atPath: confdir) == ["mitmproxy-ca.pem"])

            try "-----BEGIN RSA PRIVATE KEY-----\nnot base64!\n-----END RSA PRIVATE KEY-----\n"
                .write(toFile: caPath, atomically: true, encoding: .utf8)
            #expect(throws: CertificateStoreError(code: .invalidPEM)) {
                try CertificateAuthority.loadOrCreate(confdir: confdir)
            }

            let encrypted = """
                -----BEGIN ENCRYPTED PRIVATE KEY-----
                AAAA
                -----END ENCRYPTED PRIVATE KEY-----

                """
            try encrypted.write(toFile: caPath, atomically: true, encoding: .utf8)
            let encryptedError = try #require(throws: CertificateStoreError.self) {
                try CertificateAuthority.loadOrCreate(confdir: confdir)
            }
            #expect(encryptedError.code == .encryptedPrivateKey)
            #expect(encryptedError.description.contains("encrypted"))

            // A CA file whose key belongs to another certificate.
            let otherKey = try Certificate.PrivateKey(P256.Signing.PrivateKey()).serializeAsPEM().pemString
            try (otherKey + "\n" + Fixtures.authority.certificatePEM).write(
                toFile: caPath,
                atomically: true,
                encoding: .utf8
            )
            #expect(throws: CertificateStoreError(code: .keyMismatch)) {
                try CertificateAuthority.loadOrCreate(confdir: confdir)
            }
        }
    }

    @Test("a confdir path that is a file is reported")
    func confdirIsAFile() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/file"
            #expect(FileManager.default.createFile(atPath: path, contents: Data("x".utf8)))
            let error = try #require(throws: CertificateStoreError.self) {
                try CertificateAuthority.loadOrCreate(confdir: path)
            }
            #expect(error.code == .confdirUnusable)
            #expect(error.description.contains("not a directory"))
        }
    }

    @Test("other key formats load: PKCS#8 RSA and SEC 1 EC CA files")
    func otherKeyFormats() async throws {
        try await withTemporaryDirectory { root in
            // The fixture key re-encoded as PKCS#8 ("PRIVATE KEY").
            let pkcs8 = root + "/pkcs8.pem"
            let rsa = try _RSAKeyPEM.pkcs8(Fixtures.authority)
            try (rsa + Fixtures.authority.certificatePEM).write(toFile: pkcs8, atomically: true, encoding: .utf8)
            let fromPKCS8 = try CertificateAuthority.load(pemFile: pkcs8)
            #expect(fromPKCS8.privateKey == Fixtures.authority.privateKey)

            // An EC CA: leaves are then signed with ECDSA-SHA256 and carry the CA's EC key.
            let ecKey = P256.Signing.PrivateKey()
            let key = Certificate.PrivateKey(ecKey)
            let name = try DistinguishedName { CommonName("ec ca") }
            let ecCertificate = try Certificate(
                version: .v3,
                serialNumber: .init(),
                publicKey: key.publicKey,
                notValidBefore: Date().addingTimeInterval(-86400),
                notValidAfter: Date().addingTimeInterval(86400),
                issuer: name,
                subject: name,
                signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                    Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                },
                issuerPrivateKey: key
            )
            let sec1 =
                "-----BEGIN EC PRIVATE KEY-----\n"
                + ecKey.derRepresentationSEC1.base64EncodedString(options: [
                    .lineLength64Characters, .endLineWithLineFeed,
                ])
                + "\n-----END EC PRIVATE KEY-----\n"
            let ecPath = root + "/ec.pem"
            try (sec1 + (try ecCertificate.serializeAsPEM().pemString) + "\n")
                .write(toFile: ecPath, atomically: true, encoding: .utf8)
            let ecAuthority = try CertificateAuthority.load(pemFile: ecPath)
            let leaf = try ecAuthority.signLeaf(for: .host("ec.test"))
            #expect(leaf.certificate.signatureAlgorithm == .ecdsaWithSHA256)
            #expect(leaf.certificate.publicKey == key.publicKey)
            #expect(try await verify(leaf, against: ecAuthority, hostname: "ec.test"))
        }
    }
}

/// Key re-encodings the tests need.
private enum _RSAKeyPEM {
    static func pkcs8(_ authority: CertificateAuthority) throws -> String {
        let pfx = try PFX(der: try authority.pkcs12(includingPrivateKey: true))
        let der = try #require(pfx.privateKeys.first)
        return "-----BEGIN PRIVATE KEY-----\n"
            + Data(der).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed])
            + "\n-----END PRIVATE KEY-----\n"
    }
}

extension P256.Signing.PrivateKey {
    /// SEC 1 `ECPrivateKey` DER, for the `EC PRIVATE KEY` PEM label (the key's x963 form wrapped by hand).
    fileprivate var derRepresentationSEC1: Data {
        // ECPrivateKey ::= SEQUENCE { version 1, privateKey OCTET STRING, [0] prime256v1, [1] publicKey BIT STRING }
        let privateKey = Array(self.rawRepresentation)
        let publicKey = Array(self.publicKey.x963Representation)
        var der: [UInt8] = [0x02, 0x01, 0x01, 0x04, UInt8(privateKey.count)] + privateKey
        der += [0xA0, 0x0A, 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07]
        der += [0xA1, UInt8(publicKey.count + 3), 0x03, UInt8(publicKey.count + 1), 0x00] + publicKey
        return Data([0x30, UInt8(der.count)] + der)
    }
}
