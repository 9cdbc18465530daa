import Crypto
import Foundation
import SwiftASN1
import X509
import _CryptoExtras

/// The certificate authority that signs mitmproxy's interception certificates.
///
/// It holds the CA certificate, its private key, and the chain served after each leaf (the CA certificate,
/// followed by any further certificates mitmproxy found in the CA file). Create one with
/// ``loadOrCreate(confdir:basename:keySize:)``, which reads or writes the same confdir files as
/// mitmproxy 11, or in memory with ``generate(commonName:organization:keySize:now:)``.
///
/// A new CA matches what mitmproxy 11.0.2's `create_ca` makes: an RSA key (65537, 2048 bits by default),
/// subject and issuer `CN=<basename>, O=<basename>` (UTF8String), a random 159-bit serial, valid from two days
/// ago for 3650 days, signed with SHA-256, and the extensions, in this order:
/// basicConstraints `CA:TRUE` (critical), extendedKeyUsage serverAuth, keyUsage keyCertSign + cRLSign
/// (critical), subjectKeyIdentifier (SHA-1 of the public key, RFC 5280 §4.2.1.2 method 1).
public struct CertificateAuthority: Sendable {
    /// mitmproxy's `CA_EXPIRY`: ten years of 365 days.
    public static let validity: TimeInterval = 3650 * 86400
    /// mitmproxy back-dates both its CA and its leaves by two days to tolerate clients with slow clocks.
    public static let backdating: TimeInterval = 2 * 86400

    /// The CA certificate.
    public let certificate: Certificate
    /// The CA's private key; leaves use it too (see ``signLeaf(for:now:)``).
    public let privateKey: Certificate.PrivateKey
    /// The certificates served after a leaf: ``certificate`` first, then any other certificates of the CA file.
    public let chain: [Certificate]

    /// DER of ``certificate``.
    public let certificateDER: [UInt8]
    /// DER of each certificate of ``chain``.
    public let chainDER: [[UInt8]]
    /// DER of ``privateKey`` in the form it is written to PEM: PKCS#1 for RSA, PKCS#8 for EC keys.
    public let privateKeyDER: [UInt8]
    /// PEM of ``privateKey`` (`RSA PRIVATE KEY` for RSA keys, as mitmproxy writes it), ending in a newline.
    public let privateKeyPEM: String
    /// DER of ``privateKey`` as PKCS#8 `PrivateKeyInfo`, the form PKCS#12 key bags carry.
    let privateKeyPKCS8DER: [UInt8]

    /// PEM of ``certificate``, ending in a newline.
    public var certificatePEM: String {
        Self.pem(label: "CERTIFICATE", der: self.certificateDER)
    }

    /// Key then certificate, the content of a new `mitmproxy-ca.pem`.
    public var combinedPEM: String {
        self.privateKeyPEM + self.certificatePEM
    }

    /// The key identifier that leaves carry in their authorityKeyIdentifier.
    let keyIdentifier: ArraySlice<UInt8>
    /// The signature algorithm used for leaves: SHA-256 with the CA key's type.
    let leafSignatureAlgorithm: Certificate.SignatureAlgorithm

    /// Pairs a CA certificate with its private key.
    ///
    /// - Parameters:
    ///   - certificate: the CA certificate.
    ///   - privateKey: its private key; must match the certificate's public key.
    ///   - additionalChain: further certificates to serve after the CA certificate (mitmproxy serves every
    ///     certificate of its CA file).
    public init(
        certificate: Certificate,
        privateKey: Certificate.PrivateKey,
        additionalChain: [Certificate] = []
    )
        throws
    {
        guard privateKey.publicKey == certificate.publicKey else {
            throw CertificateStoreError.keyMismatch(nil)
        }
        self.certificate = certificate
        self.privateKey = privateKey
        self.chain = [certificate] + additionalChain
        do {
            self.certificateDER = try certificate.derBytes()
            self.chainDER = try self.chain.map { try $0.derBytes() }
            let keyDocument = try privateKey.serializeAsPEM()
            self.privateKeyDER = keyDocument.derBytes
            self.privateKeyPEM = Self.pem(label: keyDocument.discriminator, der: keyDocument.derBytes)
            self.privateKeyPKCS8DER = try Self.pkcs8(privateKey, document: keyDocument)
        } catch {
            throw CertificateStoreError.unsupportedKey(nil, reason: "can't serialize the CA: \(error)")
        }
        // RFC 5280 §4.2.1.1: a leaf's authorityKeyIdentifier must equal its issuer's subjectKeyIdentifier.
        // mitmproxy recomputes it from the public key, which gives the same bytes for every CA it creates;
        // taking the CA's own extension first also keeps chains intact for imported CAs that hash differently.
        let ski = try? certificate.extensions.subjectKeyIdentifier
        self.keyIdentifier = ski?.keyIdentifier ?? SubjectKeyIdentifier(hash: certificate.publicKey).keyIdentifier
        self.leafSignatureAlgorithm = try Self.sha256SignatureAlgorithm(for: privateKey)
    }

    /// Makes a new CA in memory, as mitmproxy's `create_ca` does.
    ///
    /// - Parameters:
    ///   - commonName: subject CN; mitmproxy uses its basename, `mitmproxy`.
    ///   - organization: subject O; mitmproxy uses its basename too.
    ///   - keySize: RSA modulus size in bits (mitmproxy's `key_size` option, 2048 by default). Sizes from 1024 are
    ///     accepted, as mitmproxy accepts them; below 2048 is not recommended.
    ///   - now: the creation time; validity runs from two days before it to 3650 days after it.
    public static func generate(
        commonName: String = "mitmproxy",
        organization: String = "mitmproxy",
        keySize: Int = 2048,
        now: Date = Date()
    ) throws -> CertificateAuthority {
        guard keySize >= 1024 else {
            throw CertificateStoreError.unsupportedKey(nil, reason: "RSA key size \(keySize) is below 1024 bits")
        }
        let rsaKey: _RSA.Signing.PrivateKey
        do {
            rsaKey = try _RSA.Signing.PrivateKey(unsafeKeySize: .init(bitCount: keySize))
        } catch {
            throw CertificateStoreError.unsupportedKey(
                nil,
                reason: "generating a \(keySize)-bit RSA key failed: \(error)"
            )
        }
        let key = Certificate.PrivateKey(rsaKey)
        let name = try DistinguishedName {
            CommonName(commonName)
            OrganizationName(organization)
        }
        let start = now.truncatedToSeconds
        do {
            let certificate = try Certificate(
                version: .v3,
                serialNumber: .randomPositive159Bit(),
                publicKey: key.publicKey,
                notValidBefore: start - Self.backdating,
                notValidAfter: start + Self.validity,
                issuer: name,
                subject: name,
                signatureAlgorithm: .sha256WithRSAEncryption,
                extensions: Certificate.Extensions {
                    Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                    try ExtendedKeyUsage([.serverAuth])
                    Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                    SubjectKeyIdentifier(hash: key.publicKey)
                },
                issuerPrivateKey: key
            )
            return try CertificateAuthority(certificate: certificate, privateKey: key)
        } catch let error as CertificateStoreError {
            throw error
        } catch {
            throw CertificateStoreError.signingFailed(error)
        }
    }

    /// Whether the CA certificate has expired at `now`. mitmproxy only warns about this, and so do we: the
    /// caller decides whether to log it.
    public func isExpired(now: Date = Date()) -> Bool {
        now > self.certificate.notValidAfter
    }

    // MARK: - Serialization helpers

    /// `-----BEGIN label-----`, base64 in 64-character lines, `-----END label-----`, and a final newline,
    /// byte-for-byte the layout OpenSSL and Python's `cryptography` write.
    static func pem(label: String, der: [UInt8]) -> String {
        PEMDocument(type: label, derBytes: der).pemString + "\n"
    }

    private static func pkcs8(_ key: Certificate.PrivateKey, document: PEMDocument) throws -> [UInt8] {
        if document.discriminator == "PRIVATE KEY" {
            return document.derBytes
        }
        if document.discriminator == "RSA PRIVATE KEY" {
            let rsa = try _RSA.Signing.PrivateKey(unsafeDERRepresentation: document.derBytes)
            return Array(rsa.pkcs8DERRepresentation)
        }
        throw CertificateStoreError.unsupportedKey(nil, reason: "no PKCS#8 form for a \(document.discriminator)")
    }

    /// SHA-256 with the key's algorithm, as mitmproxy signs with `hashes.SHA256()` whatever the key type.
    static func sha256SignatureAlgorithm(for key: Certificate.PrivateKey) throws -> Certificate.SignatureAlgorithm {
        let supported = key.supportedSignatureAlgorithms
        for candidate in [Certificate.SignatureAlgorithm.sha256WithRSAEncryption, .ecdsaWithSHA256, .ed25519]
        where supported.contains(candidate) {
            return candidate
        }
        throw CertificateStoreError.unsupportedKey(nil, reason: "no SHA-256 signature algorithm for \(key)")
    }
}

extension Certificate {
    func derBytes() throws -> [UInt8] {
        var coder = DER.Serializer()
        try coder.serialize(self)
        return coder.serializedBytes
    }
}

extension Certificate.SerialNumber {
    /// A random positive serial of at most 159 bits, as `cryptography`'s `random_serial_number()` makes
    /// (20 random bytes shifted right by one): never more than 20 DER content bytes, as RFC 5280 §4.1.2.2 allows.
    static func randomPositive159Bit() -> Self {
        var bytes = SystemRandomNumberGenerator.randomBytes(count: 20)
        bytes[0] &= 0x7F
        // A zero first byte would be normalised away, leaving a first byte with its high bit set:
        // keep the leading byte non-zero so the serial is positive in every reading of its bytes.
        if bytes[0] == 0 {
            bytes[0] = 1
        }
        return Self(bytes: bytes)
    }
}

extension Date {
    /// X.509 times carry whole seconds; truncate first so what we sign and what we report agree.
    var truncatedToSeconds: Date {
        Date(timeIntervalSince1970: self.timeIntervalSince1970.rounded(.down))
    }
}
