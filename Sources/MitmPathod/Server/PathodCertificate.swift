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

    /// A certificate chain (leaf first) from a PEM file, with the private key in the same file or,
    /// when it has none, in `keyPath`.
    public static func load(path: String, keyPath: String? = nil) throws -> PathodCertificate {
        let chain = try NIOSSLCertificate.fromPEMFile(path)
        guard !chain.isEmpty else { throw PathodConfigurationError("no certificate in \(path)") }
        let pem = try String(contentsOfFile: path, encoding: .utf8)
        let key: NIOSSLPrivateKey
        if pem.contains("PRIVATE KEY-----") {
            key = try NIOSSLPrivateKey(file: path, format: .pem)
        } else if let keyPath {
            key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
        } else {
            throw PathodConfigurationError("no private key in \(path): add it to the file or give --cert-key")
        }
        return PathodCertificate(chain: chain, key: key, certificatePEM: pem, privateKeyPEM: nil)
    }

    /// A server context offering `protocols` by ALPN, presenting this certificate unless one of
    /// `domainCertificates` is for the name the client asks for (SNI).
    func serverContext(
        protocols: [String] = ["http/1.1"],
        domainCertificates: [PathodDomainCertificate] = []
    ) throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) },
            privateKey: .privateKey(key)
        )
        configuration.applicationProtocols = protocols
        if !domainCertificates.isEmpty {
            configuration.sslContextCallback = { values, promise in
                guard let chosen = PathodDomainCertificate.match(values.serverHostname, in: domainCertificates) else {
                    promise.succeed(.noChanges)
                    return
                }
                var override = NIOSSLContextConfigurationOverride()
                override.certificateChain = chosen.chain.map { .certificate($0) }
                override.privateKey = .privateKey(chosen.key)
                promise.succeed(override)
            }
        }
        return try NIOSSLContext(configuration: configuration)
    }
}

/// A certificate for the server names matching `pattern`: pathod's `--cert domain=path`.
public struct PathodDomainCertificate: Sendable {
    /// A name (`www.example.com`) or a wildcard (`*.example.com`, `*`).
    public var pattern: String
    public var certificate: PathodCertificate

    public init(pattern: String, certificate: PathodCertificate) {
        self.pattern = pattern
        self.certificate = certificate
    }

    /// The certificate for `serverName`: the exact name first, then wildcards from the most specific
    /// (`*.b.example` before `*.example`) to `*`; nil when none matches (or there is no name and no `*`).
    static func match(_ serverName: String?, in certificates: [PathodDomainCertificate]) -> PathodCertificate? {
        guard let pattern = matchingPattern(serverName, in: certificates) else { return nil }
        return certificates.first { $0.pattern.lowercased() == pattern }?.certificate
    }

    /// The pattern (lowercased) of the certificate ``match(_:in:)`` chooses.
    static func matchingPattern(_ serverName: String?, in certificates: [PathodDomainCertificate]) -> String? {
        let patterns = Set(certificates.map { $0.pattern.lowercased() })
        return candidates(for: serverName).first { patterns.contains($0) }
    }

    /// `www.b.example` → `www.b.example`, `*.b.example`, `*.example`, `*`.
    static func candidates(for serverName: String?) -> [String] {
        guard let name = serverName?.lowercased(), !name.isEmpty else { return ["*"] }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        var result = [name]
        if labels.count > 1 {
            for start in 1..<labels.count {
                result.append("*." + labels[start...].joined(separator: "."))
            }
        }
        result.append("*")
        return result
    }
}

/// A pathod configuration it cannot start with: a bad anchor, an unreadable certificate.
public struct PathodConfigurationError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
