import Foundation
import X509

extension CertificateAuthority {
    /// mitmproxy's `CERT_EXPIRY`: leaves are valid for 365 days (after two days of back-dating).
    public static let leafValidity: TimeInterval = 365 * 86400

    /// Signs an interception certificate, as mitmproxy 11.0.2's `dummy_cert` does.
    ///
    /// - The leaf's public key is the CA's public key, and ``LeafCertificate/privateKey`` is the CA's key: no
    ///   key is generated per host, so signing costs one signature.
    /// - Issuer is the CA's subject; subject is `CN=<commonName>` (left out when empty or 64 characters or
    ///   longer), then `O=<organization>` when given.
    /// - Serial: random, positive, at most 159 bits. Validity: two days before `now` to 365 days after it.
    /// - Extensions, in this order: extendedKeyUsage serverAuth; subjectAltName (critical when the subject
    ///   has no CN, RFC 5280 §4.2.1.6; left out when there are no names); authorityKeyIdentifier (keyid only).
    ///   No subjectKeyIdentifier: a leaf with the CA's SKI breaks Windows SChannel (mitmproxy issue 6494).
    /// - Signed with SHA-256.
    public func signLeaf(for request: LeafRequest, now: Date = Date()) throws -> LeafCertificate {
        let names = try request.subjectAlternativeNames()
        let commonName = request.effectiveCommonName
        let start = now.truncatedToSeconds
        do {
            var subject: [RelativeDistinguishedName] = []
            if let commonName {
                subject.append(
                    RelativeDistinguishedName(.init(type: .RDNAttributeType.commonName, utf8String: commonName))
                )
            }
            if let organization = request.organization {
                subject.append(
                    RelativeDistinguishedName(.init(type: .RDNAttributeType.organizationName, utf8String: organization))
                )
            }

            var extensions: [Certificate.Extension] = [
                try Certificate.Extension(ExtendedKeyUsage([.serverAuth]), critical: false)
            ]
            if !names.isEmpty {
                extensions.append(
                    try Certificate.Extension(SubjectAlternativeNames(names), critical: commonName == nil)
                )
            }
            extensions.append(
                try Certificate.Extension(AuthorityKeyIdentifier(keyIdentifier: self.keyIdentifier), critical: false)
            )

            let certificate = try Certificate(
                version: .v3,
                serialNumber: .randomPositive159Bit(),
                publicKey: self.certificate.publicKey,
                notValidBefore: start - Self.backdating,
                notValidAfter: start + Self.leafValidity,
                issuer: self.certificate.subject,
                subject: DistinguishedName(subject),
                signatureAlgorithm: self.leafSignatureAlgorithm,
                extensions: try Certificate.Extensions(extensions),
                issuerPrivateKey: self.privateKey
            )
            let der = try certificate.derBytes()
            return LeafCertificate(
                certificate: certificate,
                certificateDER: der,
                chainDER: [der] + self.chainDER,
                privateKey: self.privateKey,
                privateKeyDER: self.privateKeyDER,
                privateKeyPEM: self.privateKeyPEM
            )
        } catch let error as CertificateStoreError {
            throw error
        } catch {
            throw CertificateStoreError.signingFailed(error)
        }
    }
}
