import Foundation
import SwiftASN1
import X509

/// User-supplied certificates (mitmproxy's `--certs`), by the names they serve. Not thread-safe: lives
/// inside ``CertificateStore``'s lock.
struct CustomCertificates {
    /// Lower-cased name (`example.com`, `*.example.com`, `10.0.0.1`, `*`) to certificate. A later
    /// registration of the same name replaces an earlier one, as in mitmproxy's dictionary.
    private var byName: [String: LeafCertificate] = [:]

    var isEmpty: Bool { self.byName.isEmpty }

    mutating func add(_ leaf: LeafCertificate, names: [String]) {
        for name in names where !name.isEmpty {
            self.byName[Self.normalize(name)] = leaf
        }
    }

    /// The first of `keys` that has a certificate, then `*`.
    func match(keys: [String]) -> LeafCertificate? {
        for key in keys {
            if let leaf = self.byName[Self.normalize(key)] {
                return leaf
            }
        }
        return self.byName["*"]
    }

    private static func normalize(_ name: String) -> String {
        if let address = HostNames.ipAddressBytes(name) {
            return HostNames.ipAddressText(address)
        }
        return name.lowercased()
    }

    /// Reads a user certificate file, as mitmproxy's `add_cert_file` does: the first certificate is the
    /// leaf, every certificate is the chain, the first private key is the key; without a key, the CA's key
    /// is used if it fits the certificate. Returns the leaf and the names it registers itself under
    /// (its CN and its DNS and IP SANs).
    static func load(
        pemFile rawPath: String,
        authority: CertificateAuthority
    ) throws -> (
        leaf: LeafCertificate, names: [String]
    ) {
        let path = NSString(string: rawPath).expandingTildeInPath
        guard FileManager.default.fileExists(atPath: path) else {
            throw CertificateStoreError.fileNotFound(path)
        }
        let file = try PEMFile.read(path: path)
        let certificate = try file.firstCertificate()
        let key: Certificate.PrivateKey
        if let fileKey = file.privateKey {
            guard fileKey.publicKey == certificate.publicKey else {
                throw CertificateStoreError.keyMismatch(path)
            }
            key = fileKey
        } else if certificate.publicKey == authority.privateKey.publicKey {
            key = authority.privateKey
        } else {
            throw CertificateStoreError.missingPrivateKey(
                path,
                reason:
                    "no private key block (\"RSA PRIVATE KEY\", \"PRIVATE KEY\" or \"EC PRIVATE KEY\") found, and the certificate is not for the CA's key; append the key to the file"
            )
        }

        let leaf: LeafCertificate
        do {
            let keyDocument = try key.serializeAsPEM()
            leaf = LeafCertificate(
                certificate: certificate,
                certificateDER: try certificate.derBytes(),
                chainDER: try file.certificates.map { try $0.derBytes() },
                privateKey: key,
                privateKeyDER: keyDocument.derBytes,
                privateKeyPEM: CertificateAuthority.pem(label: keyDocument.discriminator, der: keyDocument.derBytes)
            )
        } catch {
            throw CertificateStoreError.unsupportedKey(path, reason: "can't serialize the certificate or key: \(error)")
        }

        var names: [String] = []
        for rdn in certificate.subject {
            for attribute in rdn where attribute.type == .RDNAttributeType.commonName {
                if let value = String(attribute.value) {
                    names.append(value)
                }
            }
        }
        if let sans = try? certificate.extensions.subjectAlternativeNames {
            for san in sans {
                switch san {
                case .dnsName(let name):
                    names.append(name)
                case .ipAddress(let octets):
                    names.append(HostNames.ipAddressText(octets.bytes))
                default:
                    continue
                }
            }
        }
        return (leaf, names)
    }
}
