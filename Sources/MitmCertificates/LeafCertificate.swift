import X509

/// A certificate to present to a client, with the chain to send after it and the private key to use.
///
/// For a generated certificate the key is the CA's own key, as in mitmproxy (no key is generated per
/// host), and the chain is the CA's chain. For a user-supplied certificate (`--certs`) both come from
/// the user's PEM file.
public struct LeafCertificate: Sendable {
    /// The certificate itself.
    public let certificate: Certificate
    /// DER of ``certificate``.
    public let certificateDER: [UInt8]
    /// The certificates to send, leaf first: the leaf, then the CA certificate (and any further CA file
    /// certificates). For user certificates: every certificate of the user's PEM file, in file order.
    public let chainDER: [[UInt8]]
    /// The private key matching ``certificate``.
    public let privateKey: Certificate.PrivateKey
    /// DER of ``privateKey``: PKCS#1 `RSAPrivateKey` for RSA keys, PKCS#8 for EC and Ed25519 keys.
    public let privateKeyDER: [UInt8]
    /// PEM of ``privateKey`` (`RSA PRIVATE KEY` or `PRIVATE KEY`), ending in a newline.
    public let privateKeyPEM: String

    public init(
        certificate: Certificate,
        certificateDER: [UInt8],
        chainDER: [[UInt8]],
        privateKey: Certificate.PrivateKey,
        privateKeyDER: [UInt8],
        privateKeyPEM: String
    ) {
        self.certificate = certificate
        self.certificateDER = certificateDER
        self.chainDER = chainDER
        self.privateKey = privateKey
        self.privateKeyDER = privateKeyDER
        self.privateKeyPEM = privateKeyPEM
    }

    /// PEM of ``certificate``, ending in a newline.
    public var certificatePEM: String {
        CertificateAuthority.pem(label: "CERTIFICATE", der: self.certificateDER)
    }

    /// PEM of every certificate of ``chainDER``, leaf first: what a TLS server loads as its chain file.
    public var chainPEM: String {
        self.chainDER.map { CertificateAuthority.pem(label: "CERTIFICATE", der: $0) }.joined()
    }
}
