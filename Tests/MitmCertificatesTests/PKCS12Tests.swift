import Crypto
import Foundation
import SwiftASN1
import Testing
import X509

@testable import MitmCertificates

@Suite("PKCS#12")
struct PKCS12Tests {
    @Test("our key derivation reproduces the MAC cryptography wrote into mitmproxy's .p12 files")
    func macMatchesFixtures() throws {
        for name in ["mitmproxy-ca.p12", "mitmproxy-ca-cert.p12"] {
            let pfx = try PFX(der: Array(Fixtures.data("mitmproxy11-confdir/" + name)))
            #expect(pfx.macIsValidForEmptyPassword, "\(name)")
        }
    }

    @Test("RFC 7292 password encoding: BMPString with a two-byte terminator")
    func passwordEncoding() {
        #expect(PKCS12.bmpPassword("") == [0, 0])
        #expect(PKCS12.bmpPassword("ab") == [0, 0x61, 0, 0x62, 0, 0])
    }

    @Test("a key longer than one hash block exercises the I_j update of RFC 7292 B.2")
    func longKeyDerivation() {
        let salt: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]
        let short = PKCS12.deriveKey(password: [0, 0], salt: salt, id: 1, iterations: 3, length: 32)
        let long = PKCS12.deriveKey(password: [0, 0], salt: salt, id: 1, iterations: 3, length: 80)
        #expect(long.count == 80)
        #expect(Array(long.prefix(32)) == short)
        #expect(long[32..<64] != long[0..<32])
    }

    @Test("the fixture CA exported to PKCS#12 has cryptography's layout and the same key and certificate")
    func exportFixtureAuthority() throws {
        let authority = Fixtures.authority
        let ours = try PFX(der: try authority.pkcs12(includingPrivateKey: true))
        let theirs = try PFX(der: Array(Fixtures.data("mitmproxy11-confdir/mitmproxy-ca.p12")))
        #expect(ours.layout == theirs.layout)
        #expect(ours.macIsValidForEmptyPassword)
        #expect(ours.certificates == theirs.certificates)
        // Same PKCS#8 bytes as cryptography wrote for the same key.
        #expect(ours.privateKeys == theirs.privateKeys)
        #expect(ours.localKeyIDs == theirs.localKeyIDs)
        // Both bags carry the SHA-1 of the certificate as their localKeyID.
        let certificateHash = Array(Insecure.SHA1.hash(data: authority.certificateDER))
        #expect(ours.localKeyIDs == [certificateHash, certificateHash])
    }
}

/// A reader for the PKCS#12 files under test: just enough of RFC 7292 to compare layouts and check MACs.
struct PFX {
    var authenticatedSafe: [UInt8]
    var macAlgorithm: ASN1ObjectIdentifier
    var mac: [UInt8]
    var salt: [UInt8]
    var iterations: Int
    /// Each SafeContents' bags: bag type and attribute types.
    var bags: [[(type: ASN1ObjectIdentifier, attributes: [ASN1ObjectIdentifier])]] = []
    var certificates: [[UInt8]] = []
    var privateKeys: [[UInt8]] = []
    var localKeyIDs: [[UInt8]] = []
    var friendlyNames: [[UInt8]] = []

    init(der: [UInt8]) throws {
        let root = try DER.parse(der)
        var rootNodes = try Self.children(root)
        let version = try Int(derEncoded: rootNodes.removeFirst())
        #expect(version == 3)
        self.authenticatedSafe = try Self.dataContent(rootNodes.removeFirst())
        let macData = try Self.children(rootNodes.removeFirst())
        let digestInfo = try Self.children(macData[0])
        self.macAlgorithm = try ASN1ObjectIdentifier(derEncoded: try Self.children(digestInfo[0])[0])
        self.mac = Array(try ASN1OctetString(derEncoded: digestInfo[1]).bytes)
        self.salt = Array(try ASN1OctetString(derEncoded: macData[1]).bytes)
        self.iterations = try Int(derEncoded: macData[2])

        for contentInfo in try Self.children(try DER.parse(self.authenticatedSafe)) {
            var safe: [(ASN1ObjectIdentifier, [ASN1ObjectIdentifier])] = []
            for bag in try Self.children(try DER.parse(try Self.dataContent(contentInfo))) {
                let parts = try Self.children(bag)
                let type = try ASN1ObjectIdentifier(derEncoded: parts[0])
                let value = try Self.children(parts[1])[0]
                var attributeTypes: [ASN1ObjectIdentifier] = []
                if parts.count > 2 {
                    for attribute in try Self.children(parts[2]) {
                        let attributeParts = try Self.children(attribute)
                        let attributeType = try ASN1ObjectIdentifier(derEncoded: attributeParts[0])
                        attributeTypes.append(attributeType)
                        let attributeValue = try Self.children(attributeParts[1])[0]
                        if attributeType == [1, 2, 840, 113_549, 1, 9, 21] {
                            self.localKeyIDs.append(Array(try ASN1OctetString(derEncoded: attributeValue).bytes))
                        } else if attributeType == [1, 2, 840, 113_549, 1, 9, 20] {
                            self.friendlyNames.append(Array(try ASN1BMPString(derEncoded: attributeValue).bytes))
                        }
                    }
                }
                if type == [1, 2, 840, 113_549, 1, 12, 10, 1, 3] {
                    let certBag = try Self.children(value)
                    let certificate = try Self.children(certBag[1])[0]
                    self.certificates.append(Array(try ASN1OctetString(derEncoded: certificate).bytes))
                } else if type == [1, 2, 840, 113_549, 1, 12, 10, 1, 1] {
                    self.privateKeys.append(Array(value.encodedBytes))
                }
                safe.append((type, attributeTypes))
            }
            self.bags.append(safe)
        }
    }

    /// Everything but the random parts (salt value, MAC) and the payloads.
    var layout: String {
        let bags = self.bags.map { safe in
            safe.map { "\($0.type) \($0.attributes)" }.joined(separator: ", ")
        }
        let names = self.friendlyNames.map { String(decoding: $0.filter { $0 != 0 }, as: UTF8.self) }
        return "\(bags) names=\(names) mac=\(self.macAlgorithm) salt=\(self.salt.count) iterations=\(self.iterations)"
    }

    var macIsValidForEmptyPassword: Bool {
        let key = PKCS12.deriveKey(
            password: PKCS12.bmpPassword(""),
            salt: self.salt,
            id: 3,
            iterations: self.iterations,
            length: 32
        )
        let expected = HMAC<SHA256>.authenticationCode(for: self.authenticatedSafe, using: SymmetricKey(data: key))
        return self.macAlgorithm == [2, 16, 840, 1, 101, 3, 4, 2, 1] && Array(expected) == self.mac
    }

    private static func children(_ node: ASN1Node) throws -> [ASN1Node] {
        guard case .constructed(let nodes) = node.content else {
            throw ASN1Error.invalidASN1Object(reason: "expected a constructed node")
        }
        return Array(nodes)
    }

    /// The content of a `ContentInfo { id-data, [0] { OCTET STRING } }`.
    private static func dataContent(_ contentInfo: ASN1Node) throws -> [UInt8] {
        let parts = try self.children(contentInfo)
        #expect(try ASN1ObjectIdentifier(derEncoded: parts[0]) == [1, 2, 840, 113_549, 1, 7, 1])
        let octets = try self.children(parts[1])[0]
        return Array(try ASN1OctetString(derEncoded: octets).bytes)
    }
}
