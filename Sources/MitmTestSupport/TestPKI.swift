import Crypto
import Foundation
import NIOSSL
import SwiftASN1
import X509

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A throwaway PKI made in code for tests: a self-signed CA and a server leaf for `localhost` and
/// `127.0.0.1` issued by it (swift-certificates' `RFC5280PolicyTests` `TestPKI` idea). Keys are P-256,
/// so making one costs a millisecond; nothing touches the disk unless you ask (``writeCACertificate(to:)``).
///
/// The CA is deliberately not in any trust store: a client (or the proxy, towards an origin using
/// this PKI) must be given ``caCertificatePEM`` or told not to verify (`ssl_insecure`).
public struct TestPKI: Sendable {
    /// One PKI shared by a test process (every ``LoopbackOrigin`` uses it unless told otherwise).
    public static let shared: TestPKI = {
        do {
            return try TestPKI()
        } catch {
            fatalError("TestPKI: could not create the test CA: \(error)")
        }
    }()

    public let caCertificate: Certificate
    public let caPrivateKey: Certificate.PrivateKey
    public let leafCertificate: Certificate
    public let leafPrivateKey: Certificate.PrivateKey

    /// PEM of the CA certificate: pass it to clients (`curl --cacert`, `requests` `verify=`).
    public let caCertificatePEM: String
    /// PEM of the leaf certificate.
    public let leafCertificatePEM: String
    /// PEM (PKCS#8) of the leaf's private key.
    public let leafPrivateKeyPEM: String

    /// Makes a CA named `caName` and a leaf for `dnsNames` and `ipAddresses` (IPv4 or IPv6 literals).
    public init(
        caName: String = "MitmTestSupport Test CA",
        dnsNames: [String] = ["localhost"],
        ipAddresses: [String] = ["127.0.0.1"],
        now: Date = Date()
    ) throws {
        let caKey = P256.Signing.PrivateKey()
        let caPrivateKey = Certificate.PrivateKey(caKey)
        let caSubject = try DistinguishedName {
            CommonName(caName)
            OrganizationName("swift-mitmproxy tests")
        }
        let caPublicKey = Certificate.PublicKey(caKey.publicKey)
        let ca = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: caPublicKey,
            notValidBefore: now.addingTimeInterval(-3600),
            notValidAfter: now.addingTimeInterval(365 * 86400),
            issuer: caSubject,
            subject: caSubject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: caPublicKey)
            },
            issuerPrivateKey: caPrivateKey
        )

        let leafKey = P256.Signing.PrivateKey()
        let leafPrivateKey = Certificate.PrivateKey(leafKey)
        let leafSubject = try DistinguishedName {
            CommonName(dnsNames.first ?? ipAddresses.first ?? "localhost")
            OrganizationName("swift-mitmproxy tests")
        }
        var names: [GeneralName] = dnsNames.map { .dnsName($0) }
        for ip in ipAddresses {
            guard let bytes = Self.ipBytes(ip) else { throw TestPKIError(message: "not an IP address: \(ip)") }
            names.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes))))
        }
        let leaf = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: Certificate.PublicKey(leafKey.publicKey),
            notValidBefore: now.addingTimeInterval(-3600),
            notValidAfter: now.addingTimeInterval(30 * 86400),
            issuer: caSubject,
            subject: leafSubject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames(names)
                AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: caPublicKey).keyIdentifier)
            },
            issuerPrivateKey: caPrivateKey
        )

        self.caCertificate = ca
        self.caPrivateKey = caPrivateKey
        self.leafCertificate = leaf
        self.leafPrivateKey = leafPrivateKey
        self.caCertificatePEM = try ca.serializeAsPEM().pemString + "\n"
        self.leafCertificatePEM = try leaf.serializeAsPEM().pemString + "\n"
        self.leafPrivateKeyPEM = leafKey.pemRepresentation + "\n"
    }

    /// A NIOSSL server configuration presenting the leaf (and the CA after it), offering `alpn`.
    public func serverTLSConfiguration(alpn: [String]) throws -> TLSConfiguration {
        let leaf = try NIOSSLCertificate(bytes: Array(leafCertificatePEM.utf8), format: .pem)
        let ca = try NIOSSLCertificate(bytes: Array(caCertificatePEM.utf8), format: .pem)
        let key = try NIOSSLPrivateKey(bytes: Array(leafPrivateKeyPEM.utf8), format: .pem)
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(leaf), .certificate(ca)],
            privateKey: .privateKey(key)
        )
        configuration.applicationProtocols = alpn
        return configuration
    }

    /// A NIOSSL client configuration that trusts only this PKI's CA.
    public func clientTLSConfiguration(alpn: [String] = []) throws -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .certificates([try NIOSSLCertificate(bytes: Array(caCertificatePEM.utf8), format: .pem)])
        configuration.applicationProtocols = alpn
        return configuration
    }

    /// Writes the CA certificate PEM to `path` (for `curl --cacert`, `requests` `verify=`) and returns the path.
    @discardableResult
    public func writeCACertificate(to path: String) throws -> String {
        try caCertificatePEM.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static func ipBytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }
}

/// A test PKI could not be made.
public struct TestPKIError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
