import Crypto
import SwiftASN1

/// A minimal PKCS#12 (RFC 7292) writer for the two files mitmproxy puts in its confdir for Windows and
/// other OS certificate importers: a certificate alone (`mitmproxy-ca-cert.p12`) and a certificate with its
/// key (`mitmproxy-ca.p12`).
///
/// The layout is what Python's `cryptography` writes for `serialize_key_and_certificates` with
/// `NoEncryption()`, which is what mitmproxy 11 uses:
///
/// ```
/// PFX { version 3,
///       authSafe data { AuthenticatedSafe {
///           data { SafeContents { certBag (friendlyName, localKeyID?) } },
///           data { SafeContents { keyBag  (friendlyName, localKeyID) } }   -- only with a key
///       } },
///       macData { SHA-256 HMAC, 8-byte salt, 2048 iterations } }
/// ```
///
/// Bags are not encrypted. The MAC uses the empty password, encoded per RFC 7292 Appendix B.1 as a
/// BMPString with its two-byte terminator, and the key derivation of Appendix B.2; importers that insist on
/// a MAC (and `openssl pkcs12 -passin pass:`) then accept the file. `localKeyID` is the SHA-1 of the
/// certificate's DER, as `cryptography` computes it.
enum PKCS12 {
    static let macIterations = 2048
    static let macSaltLength = 8

    /// Serializes a PFX holding `certificateDER` and, if given, `privateKeyPKCS8DER` (a PKCS#8
    /// `PrivateKeyInfo`), both labelled `friendlyName`.
    static func serialize(
        certificateDER: [UInt8],
        privateKeyPKCS8DER: [UInt8]?,
        friendlyName: String,
        salt: [UInt8] = Array(SystemRandomNumberGenerator.randomBytes(count: macSaltLength))
    ) throws -> [UInt8] {
        let localKeyID = privateKeyPKCS8DER == nil ? nil : Array(Insecure.SHA1.hash(data: certificateDER))
        let attributes = try Self.bagAttributes(friendlyName: friendlyName, localKeyID: localKeyID)

        var safes: [[UInt8]] = []
        safes.append(
            try Self.dataContentInfo(
                Self.safeContents(bagID: OID.certBag, attributes: attributes) { coder in
                    // CertBag ::= SEQUENCE { certId x509Certificate, certValue [0] EXPLICIT OCTET STRING }
                    try coder.appendConstructedNode(identifier: .sequence) { coder in
                        try coder.serialize(OID.x509Certificate)
                        try coder.serialize(explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific) { coder in
                            try coder.serialize(ASN1OctetString(contentBytes: certificateDER[...]))
                        }
                    }
                }
            )
        )
        if let privateKeyPKCS8DER {
            safes.append(
                try Self.dataContentInfo(
                    Self.safeContents(bagID: OID.keyBag, attributes: attributes) { coder in
                        coder.serializeRawBytes(privateKeyPKCS8DER)
                    }
                )
            )
        }

        var authenticatedSafe = DER.Serializer()
        authenticatedSafe.appendConstructedNode(identifier: .sequence) { coder in
            for safe in safes {
                coder.serializeRawBytes(safe)
            }
        }
        let authSafeBytes = authenticatedSafe.serializedBytes

        let macKey = Self.deriveKey(
            password: Self.bmpPassword(""),
            salt: salt,
            id: 3,
            iterations: Self.macIterations,
            length: SHA256.byteCount
        )
        let mac = Array(HMAC<SHA256>.authenticationCode(for: authSafeBytes, using: SymmetricKey(data: macKey)))

        var pfx = DER.Serializer()
        try pfx.appendConstructedNode(identifier: .sequence) { coder in
            try coder.serialize(3)
            coder.serializeRawBytes(try Self.dataContentInfo(authSafeBytes))
            // MacData ::= SEQUENCE { mac DigestInfo, macSalt OCTET STRING, iterations INTEGER }
            try coder.appendConstructedNode(identifier: .sequence) { coder in
                try coder.appendConstructedNode(identifier: .sequence) { coder in
                    try coder.appendConstructedNode(identifier: .sequence) { coder in
                        try coder.serialize(OID.sha256)
                        try coder.serialize(ASN1Null())
                    }
                    try coder.serialize(ASN1OctetString(contentBytes: mac[...]))
                }
                try coder.serialize(ASN1OctetString(contentBytes: salt[...]))
                try coder.serialize(Self.macIterations)
            }
        }
        return pfx.serializedBytes
    }

    // MARK: - Building blocks

    /// `ContentInfo { id-data, [0] EXPLICIT OCTET STRING content }`.
    private static func dataContentInfo(_ content: [UInt8]) throws -> [UInt8] {
        var coder = DER.Serializer()
        try coder.appendConstructedNode(identifier: .sequence) { coder in
            try coder.serialize(OID.data)
            try coder.serialize(explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific) { coder in
                try coder.serialize(ASN1OctetString(contentBytes: content[...]))
            }
        }
        return coder.serializedBytes
    }

    /// `SafeContents` with one `SafeBag { bagId, [0] EXPLICIT value, attributes }`.
    private static func safeContents(
        bagID: ASN1ObjectIdentifier,
        attributes: [UInt8],
        value: (inout DER.Serializer) throws -> Void
    ) throws -> [UInt8] {
        var coder = DER.Serializer()
        try coder.appendConstructedNode(identifier: .sequence) { coder in
            try coder.appendConstructedNode(identifier: .sequence) { coder in
                try coder.serialize(bagID)
                try coder.serialize(explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific, value)
                coder.serializeRawBytes(attributes)
            }
        }
        return coder.serializedBytes
    }

    /// `SET OF PKCS12Attribute`, sorted as DER requires for SET OF.
    private static func bagAttributes(friendlyName: String, localKeyID: [UInt8]?) throws -> [UInt8] {
        var attributes = [
            BagAttribute(
                oid: OID.friendlyName,
                value: { try $0.serialize(ASN1BMPString(contentBytes: Self.bmpBytes(friendlyName)[...])) }
            )
        ]
        if let localKeyID {
            attributes.append(
                BagAttribute(
                    oid: OID.localKeyID,
                    value: { try $0.serialize(ASN1OctetString(contentBytes: localKeyID[...])) }
                )
            )
        }
        var coder = DER.Serializer()
        try coder.serializeSetOf(attributes)
        return coder.serializedBytes
    }

    private struct BagAttribute: DERSerializable {
        var oid: ASN1ObjectIdentifier
        var value: (inout DER.Serializer) throws -> Void

        func serialize(into coder: inout DER.Serializer) throws {
            try coder.appendConstructedNode(identifier: .sequence) { coder in
                try coder.serialize(self.oid)
                try coder.appendConstructedNode(identifier: .set) { coder in
                    try self.value(&coder)
                }
            }
        }
    }

    /// UTF-16BE code units; characters outside the BMP are written as surrogate pairs, which importers
    /// tolerate in a friendly name.
    static func bmpBytes(_ string: String) -> [UInt8] {
        string.utf16.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
    }

    /// A password as RFC 7292 Appendix B.1 feeds it to the KDF: BMPString bytes plus a two-byte zero terminator.
    static func bmpPassword(_ password: String) -> [UInt8] {
        self.bmpBytes(password) + [0, 0]
    }

    /// The PKCS#12 key derivation function, RFC 7292 Appendix B.2, with SHA-256 (u = 32, v = 64 bytes).
    /// `id` is 1 for encryption keys, 2 for IVs, 3 for MAC keys.
    static func deriveKey(password: [UInt8], salt: [UInt8], id: UInt8, iterations: Int, length: Int) -> [UInt8] {
        let u = SHA256.byteCount
        let v = SHA256.blockByteCount
        let diversifier = [UInt8](repeating: id, count: v)

        func stretch(_ bytes: [UInt8]) -> [UInt8] {
            guard !bytes.isEmpty else {
                return []
            }
            let count = v * ((bytes.count + v - 1) / v)
            return (0..<count).map { bytes[$0 % bytes.count] }
        }
        var input = stretch(salt) + stretch(password)

        var output: [UInt8] = []
        while output.count < length {
            var a = Array(SHA256.hash(data: diversifier + input))
            for _ in 1..<max(iterations, 1) {
                a = Array(SHA256.hash(data: a))
            }
            output += a
            guard output.count < length else {
                break
            }
            // I_j = (I_j + B + 1) mod 2^(8v) for every v-byte block I_j of I, with B = A repeated to v bytes.
            let b = (0..<v).map { a[$0 % u] }
            for blockStart in stride(from: 0, to: input.count, by: v) {
                var carry: UInt16 = 1
                for index in stride(from: v - 1, through: 0, by: -1) {
                    let sum = UInt16(input[blockStart + index]) + UInt16(b[index]) + carry
                    input[blockStart + index] = UInt8(sum & 0xFF)
                    carry = sum >> 8
                }
            }
        }
        return Array(output.prefix(length))
    }

    private enum OID {
        static let data: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 7, 1]
        static let keyBag: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 12, 10, 1, 1]
        static let certBag: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 12, 10, 1, 3]
        static let x509Certificate: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 9, 22, 1]
        static let friendlyName: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 9, 20]
        static let localKeyID: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 9, 21]
        static let sha256: ASN1ObjectIdentifier = [2, 16, 840, 1, 101, 3, 4, 2, 1]
    }
}

extension SystemRandomNumberGenerator {
    static func randomBytes(count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in generator.next() }
    }
}
