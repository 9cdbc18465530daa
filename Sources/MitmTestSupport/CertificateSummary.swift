import Crypto
import Foundation
import SwiftASN1
import X509

/// The parts of a certificate a proxy test asserts on, read from PEM (as `openssl s_client
/// -showcerts` prints it), so tests need not import X509 themselves.
public struct CertificateSummary: Sendable, Hashable, CustomStringConvertible {
    public var subjectCommonName: String?
    public var issuerCommonName: String?
    public var issuerOrganization: String?
    public var dnsNames: [String]
    /// IP address SANs, as text (`127.0.0.1`, `::1`).
    public var ipAddresses: [String]
    public var isCertificateAuthority: Bool

    public init(_ certificate: Certificate) {
        subjectCommonName = Self.attribute(.RDNAttributeType.commonName, in: certificate.subject)
        issuerCommonName = Self.attribute(.RDNAttributeType.commonName, in: certificate.issuer)
        issuerOrganization = Self.attribute(.RDNAttributeType.organizationName, in: certificate.issuer)
        var dns: [String] = []
        var ips: [String] = []
        if let sans = try? certificate.extensions.subjectAlternativeNames {
            for san in sans {
                switch san {
                case .dnsName(let name): dns.append(name)
                case .ipAddress(let octets): ips.append(Self.ipText(Array(octets.bytes)))
                default: break
                }
            }
        }
        dnsNames = dns
        ipAddresses = ips
        if let constraints = try? certificate.extensions.basicConstraints, case .isCertificateAuthority = constraints {
            isCertificateAuthority = true
        } else {
            isCertificateAuthority = false
        }
    }

    /// Every `CERTIFICATE` PEM block in `text`, in order (unparsable blocks are skipped).
    public static func all(inPEMText text: String) -> [CertificateSummary] {
        var result: [CertificateSummary] = []
        var rest = Substring(text)
        let begin = "-----BEGIN CERTIFICATE-----"
        let end = "-----END CERTIFICATE-----"
        while let start = rest.range(of: begin), let stop = rest.range(of: end, range: start.upperBound..<rest.endIndex) {
            let pem = String(rest[start.lowerBound..<stop.upperBound])
            if let certificate = try? Certificate(pemEncoded: pem) {
                result.append(CertificateSummary(certificate))
            }
            rest = rest[stop.upperBound...]
        }
        return result
    }

    public var description: String {
        "subject CN=\(subjectCommonName ?? "-"), issuer CN=\(issuerCommonName ?? "-") O=\(issuerOrganization ?? "-"), "
            + "DNS \(dnsNames), IP \(ipAddresses)\(isCertificateAuthority ? ", CA" : "")"
    }

    private static func attribute(_ type: ASN1ObjectIdentifier, in name: DistinguishedName) -> String? {
        for rdn in name {
            for attribute in rdn where attribute.type == type {
                return attribute.value.description
            }
        }
        return nil
    }

    private static func ipText(_ bytes: [UInt8]) -> String {
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        if bytes.count == 16 {
            return stride(from: 0, to: 16, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
                .joined(separator: ":")
        }
        return bytes.map { String($0, radix: 16) }.joined(separator: ":")
    }
}

/// SHA-256 digests for comparing large bodies without holding two copies in assertions.
public enum TestDigest {
    public static func sha256Hex(_ bytes: some DataProtocol) -> String {
        SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }

    public static func sha256Hex(fileAt path: String) throws -> String {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        var hasher = SHA256()
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            hasher.update(data: chunk)
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
}
