import Crypto
import Foundation
import NIOSSL
import SwiftASN1
import X509

/// The certificate pathod presents on TLS connections: its own self-signed one, made at start
/// (P-256, so it takes milliseconds), or one loaded from a PEM file with `--cert`.
public struct PathodCertificate: Sendable {
    public var chain: [NIOSSLCertificate]
    public var key: NIOSSLPrivateKey
    /// The leaf in PEM form, for clients that want to trust it.
    public var certificatePEM: String
    /// The private key in PEM form, when pathod made it (nil for a loaded certificate).
    public var privateKeyPEM: String?

    /// A self-signed certificate for `commonName` (pathod used `pathod.net`) with `localhost` and
    /// `127.0.0.1` as subject alternative names.
    public static func selfSigned(commonName: String = "pathod.net", now: Date = Date()) throws -> PathodCertificate {
        let key = P256.Signing.PrivateKey()
        let privateKey = Certificate.PrivateKey(key)
        let name = try DistinguishedName {
            CommonName(commonName)
            OrganizationName("pathod")
        }
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: privateKey.publicKey,
            notValidBefore: now - 2 * 86400,
            notValidAfter: now + 365 * 86400,
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames([.dnsName(commonName), .dnsName("localhost"), .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))])
            },
            issuerPrivateKey: privateKey
        )
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        let der = serializer.serializedBytes
        let pem = try certificate.serializeAsPEM().pemString
        return PathodCertificate(
            chain: [try NIOSSLCertificate(bytes: der, format: .der)],
            key: try NIOSSLPrivateKey(bytes: Array(key.derRepresentation), format: .der),
            certificatePEM: pem,
            privateKeyPEM: key.pemRepresentation
        )
    }

    /// A certificate chain and private key from one PEM file (or two: `keyPath` defaults to `path`).
    public static func load(path: String, keyPath: String? = nil) throws -> PathodCertificate {
        let chain = try NIOSSLCertificate.fromPEMFile(path)
        guard !chain.isEmpty else { throw PathodConfigurationError("no certificate in \(path)") }
        let key = try NIOSSLPrivateKey(file: keyPath ?? path, format: .pem)
        let pem = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return PathodCertificate(chain: chain, key: key, certificatePEM: pem, privateKeyPEM: nil)
    }

    /// A server context offering `protocols` by ALPN.
    func serverContext(protocols: [String] = ["http/1.1"]) throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) },
            privateKey: .privateKey(key)
        )
        configuration.applicationProtocols = protocols
        return try NIOSSLContext(configuration: configuration)
    }
}

/// A pathod configuration it cannot start with: a bad anchor, an unreadable certificate.
public struct PathodConfigurationError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
