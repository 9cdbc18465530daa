import Foundation
import X509

/// mitmproxy's confdir (`~/.mitmproxy` by default): where the CA lives, and the file formats users install
/// on their devices.
///
/// | file | content | mode |
/// | --- | --- | --- |
/// | `<basename>-ca.pem` | key (`RSA PRIVATE KEY`) then certificate; the only file read back | 0600 |
/// | `<basename>-ca.p12` | PKCS#12 with key and certificate | 0600 |
/// | `<basename>-ca-cert.pem` | certificate | 0644 |
/// | `<basename>-ca-cert.cer` | the same PEM, under the extension Android wants | 0644 |
/// | `<basename>-ca-cert.p12` | PKCS#12 with the certificate only, for Windows | 0644 |
/// | `<basename>-dhparam.pem` | mitmproxy's fixed 2048-bit DH group | 0644 |
///
/// Modes are as mitmproxy writes them under the usual umask 022: secret files are created `0600` minus the
/// umask, others `0666` minus the umask, and the directory (with any missing parents) `0777` minus the
/// umask. mitmproxy 11 does not make the directory private; the key files are.
extension CertificateAuthority {
    /// The file names mitmproxy uses in its confdir for a basename (`mitmproxy` by default).
    public struct ConfdirFiles: Sendable, Hashable {
        public var basename: String

        public init(basename: String = "mitmproxy") {
            self.basename = basename
        }

        /// Key and certificate, PEM. Its presence alone decides whether the CA is loaded or created.
        public var caPEM: String { "\(self.basename)-ca.pem" }
        /// Key and certificate, PKCS#12.
        public var caP12: String { "\(self.basename)-ca.p12" }
        /// Certificate, PEM.
        public var certificatePEM: String { "\(self.basename)-ca-cert.pem" }
        /// Certificate, PEM, with a `.cer` extension.
        public var certificateCER: String { "\(self.basename)-ca-cert.cer" }
        /// Certificate, PKCS#12.
        public var certificateP12: String { "\(self.basename)-ca-cert.p12" }
        /// Diffie-Hellman parameters.
        public var dhParameters: String { "\(self.basename)-dhparam.pem" }

        /// Every file, in the order mitmproxy writes them.
        public var all: [String] {
            [self.caPEM, self.caP12, self.certificatePEM, self.certificateCER, self.certificateP12, self.dhParameters]
        }
    }

    /// Loads the CA from `confdir`, or creates it there, as mitmproxy's `CertStore.from_store` does.
    ///
    /// If `<confdir>/<basename>-ca.pem` exists it is read (first private key, first certificate as the CA,
    /// any further certificates as its chain) and no existing file is modified; a missing DH parameters file
    /// is written, as mitmproxy's `load_dhparam` does. Otherwise the directory is created if needed and a
    /// new CA is written in all six formats (see ``ConfdirFiles``).
    ///
    /// - Parameters:
    ///   - confdir: the directory; a leading `~` is expanded, as mitmproxy expands it.
    ///   - basename: the file name prefix, also the new CA's CN and O. mitmproxy always uses `mitmproxy`.
    ///   - keySize: RSA key size in bits for a new CA (mitmproxy's `key_size` option).
    public static func loadOrCreate(
        confdir: String,
        basename: String = "mitmproxy",
        keySize: Int = 2048
    ) throws -> CertificateAuthority {
        let directory = NSString(string: confdir).expandingTildeInPath
        let files = ConfdirFiles(basename: basename)
        let caPath = (directory as NSString).appendingPathComponent(files.caPEM)
        let fileManager = FileManager.default

        var isDirectory: ObjCBool = false
        if fileManager.fileExists(atPath: directory, isDirectory: &isDirectory), !isDirectory.boolValue {
            throw CertificateStoreError.confdirUnusable(directory, reason: "exists but is not a directory")
        }

        if fileManager.fileExists(atPath: caPath) {
            let authority = try Self.load(pemFile: caPath)
            let dhPath = (directory as NSString).appendingPathComponent(files.dhParameters)
            if !fileManager.fileExists(atPath: dhPath) {
                // Best effort, as nothing of ours reads the file: a read-only confdir is still usable.
                try? FileIO.write(Self.dhParametersPEM, to: dhPath, mode: FileIO.publicFileMode)
            }
            return authority
        }

        let authority = try Self.generate(commonName: basename, organization: basename, keySize: keySize)
        try authority.write(toConfdir: directory, basename: basename)
        return authority
    }

    /// Loads a CA from a PEM file holding its private key and certificate (mitmproxy's `CertStore.from_files`).
    ///
    /// Key blocks may be `RSA PRIVATE KEY` (PKCS#1), `PRIVATE KEY` (PKCS#8: RSA, P-256/384/521, Ed25519) or
    /// `EC PRIVATE KEY` (SEC 1); the first one is used. The first certificate is the CA; any further
    /// certificates are served after it. Encrypted keys are refused with a clear error.
    public static func load(pemFile path: String) throws -> CertificateAuthority {
        let file = try PEMFile.read(path: path)
        guard let key = file.privateKey else {
            throw CertificateStoreError.missingPrivateKey(
                path,
                reason:
                    "no private key block (\"RSA PRIVATE KEY\", \"PRIVATE KEY\" or \"EC PRIVATE KEY\") found; the CA file must hold the CA's key and certificate"
            )
        }
        let certificate = try file.firstCertificate()
        guard key.publicKey == certificate.publicKey else {
            throw CertificateStoreError.keyMismatch(path)
        }
        do {
            return try CertificateAuthority(
                certificate: certificate,
                privateKey: key,
                additionalChain: Array(file.certificates.dropFirst())
            )
        } catch var error as CertificateStoreError {
            error.path = error.path ?? path
            throw error
        }
    }

    /// Writes the CA to `directory` in all six formats, replacing files of the same names; creates the
    /// directory (and its parents) if needed.
    public func write(toConfdir directory: String, basename: String = "mitmproxy") throws {
        let directory = NSString(string: directory).expandingTildeInPath
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw CertificateStoreError.confdirUnusable(
                directory,
                reason: "can't create directory: \(FileIO.describe(error))"
            )
        }
        let files = ConfdirFiles(basename: basename)
        func path(_ name: String) -> String {
            (directory as NSString).appendingPathComponent(name)
        }

        let certificatePEM = self.certificatePEM
        let keyAndCertificateP12: [UInt8]
        let certificateOnlyP12: [UInt8]
        do {
            keyAndCertificateP12 = try self.pkcs12(includingPrivateKey: true, friendlyName: basename)
            certificateOnlyP12 = try self.pkcs12(includingPrivateKey: false, friendlyName: basename)
        } catch {
            throw CertificateStoreError.signingFailed(error)
        }

        try FileIO.write(self.combinedPEM, to: path(files.caPEM), mode: FileIO.secretFileMode)
        try FileIO.write(keyAndCertificateP12, to: path(files.caP12), mode: FileIO.secretFileMode)
        try FileIO.write(certificatePEM, to: path(files.certificatePEM), mode: FileIO.publicFileMode)
        try FileIO.write(certificatePEM, to: path(files.certificateCER), mode: FileIO.publicFileMode)
        try FileIO.write(certificateOnlyP12, to: path(files.certificateP12), mode: FileIO.publicFileMode)
        try FileIO.write(Self.dhParametersPEM, to: path(files.dhParameters), mode: FileIO.publicFileMode)
    }

    /// The CA as PKCS#12 (unencrypted bags, SHA-256 MAC with the empty password), labelled `friendlyName`:
    /// the content of `mitmproxy-ca.p12` with the key, of `mitmproxy-ca-cert.p12` without.
    public func pkcs12(includingPrivateKey: Bool, friendlyName: String = "mitmproxy") throws -> [UInt8] {
        try PKCS12.serialize(
            certificateDER: self.certificateDER,
            privateKeyPKCS8DER: includingPrivateKey ? self.privateKeyPKCS8DER : nil,
            friendlyName: friendlyName
        )
    }
}
