/// An error thrown while loading, creating or using a certificate authority or a certificate store.
///
/// Only ``code`` decides equality, so tests can compare against a freshly made error
/// (`#expect(throws: CertificateStoreError(code: .missingPrivateKey))`). ``path`` names the file or
/// directory concerned, ``reason`` says what is wrong with it, and ``description`` combines both with the
/// source location that threw.
public struct CertificateStoreError: Error, Hashable, CustomStringConvertible, Sendable {
    /// What kind of failure this is.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Backing: String, Hashable, Sendable {
            case confdirUnusable
            case fileUnreadable
            case fileUnwritable
            case fileNotFound
            case invalidPEM
            case missingCertificate
            case missingPrivateKey
            case encryptedPrivateKey
            case unsupportedKey
            case keyMismatch
            case invalidSpec
            case invalidName
            case signingFailed
        }

        private let backing: Backing

        private init(_ backing: Backing) {
            self.backing = backing
        }

        /// The configuration directory can't be created or listed.
        public static let confdirUnusable = Code(.confdirUnusable)
        /// A file exists but can't be read.
        public static let fileUnreadable = Code(.fileUnreadable)
        /// A file can't be written.
        public static let fileUnwritable = Code(.fileUnwritable)
        /// A file named by the user does not exist.
        public static let fileNotFound = Code(.fileNotFound)
        /// A file is not valid PEM, or one of its PEM blocks does not hold what its label says.
        public static let invalidPEM = Code(.invalidPEM)
        /// A PEM file holds no `CERTIFICATE` block.
        public static let missingCertificate = Code(.missingCertificate)
        /// A PEM file holds no private key, and none we have fits its certificate.
        public static let missingPrivateKey = Code(.missingPrivateKey)
        /// The private key is encrypted; passphrases are not supported.
        public static let encryptedPrivateKey = Code(.encryptedPrivateKey)
        /// The key type or size can't be used.
        public static let unsupportedKey = Code(.unsupportedKey)
        /// The private key does not belong to the certificate next to it.
        public static let keyMismatch = Code(.keyMismatch)
        /// A `--certs` specification can't be parsed.
        public static let invalidSpec = Code(.invalidSpec)
        /// A host name or IP address in a ``LeafRequest`` can't be put in a certificate.
        public static let invalidName = Code(.invalidName)
        /// Building or signing a certificate failed.
        public static let signingFailed = Code(.signingFailed)

        public var description: String { self.backing.rawValue }
    }

    /// The kind of failure; the only field that takes part in equality.
    public var code: Code
    /// The file or directory concerned, if any.
    public var path: String?
    /// A human-readable explanation of what is wrong.
    public var reason: String
    /// Where the error was thrown (`#fileID`).
    public var file: String
    /// Where the error was thrown (`#line`).
    public var line: UInt

    /// Makes an error. Prefer the static factories, which phrase ``reason`` consistently.
    public init(
        code: Code,
        path: String? = nil,
        reason: String = "",
        file: String = #fileID,
        line: UInt = #line
    ) {
        self.code = code
        self.path = path
        self.reason = reason
        self.file = file
        self.line = line
    }

    public var description: String {
        var text = "CertificateStoreError.\(self.code): "
        if let path = self.path {
            text += "\(path): "
        }
        text += self.reason
        text += " (\(self.file):\(self.line))"
        return text
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.code == rhs.code
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.code)
    }
}

extension CertificateStoreError {
    static func confdirUnusable(
        _ path: String,
        reason: String,
        file: String = #fileID,
        line: UInt = #line
    ) -> Self {
        Self(code: .confdirUnusable, path: path, reason: reason, file: file, line: line)
    }

    static func fileUnreadable(_ path: String, reason: String, file: String = #fileID, line: UInt = #line) -> Self {
        Self(code: .fileUnreadable, path: path, reason: "can't read file: \(reason)", file: file, line: line)
    }

    static func fileUnwritable(_ path: String, reason: String, file: String = #fileID, line: UInt = #line) -> Self {
        Self(code: .fileUnwritable, path: path, reason: "can't write file: \(reason)", file: file, line: line)
    }

    static func fileNotFound(_ path: String, file: String = #fileID, line: UInt = #line) -> Self {
        Self(code: .fileNotFound, path: path, reason: "certificate file does not exist", file: file, line: line)
    }

    static func invalidPEM(_ path: String?, reason: String, file: String = #fileID, line: UInt = #line) -> Self {
        Self(code: .invalidPEM, path: path, reason: "invalid PEM: \(reason)", file: file, line: line)
    }

    static func missingCertificate(_ path: String?, file: String = #fileID, line: UInt = #line) -> Self {
        Self(
            code: .missingCertificate,
            path: path,
            reason: "no \"-----BEGIN CERTIFICATE-----\" block found",
            file: file,
            line: line
        )
    }

    static func missingPrivateKey(_ path: String?, reason: String, file: String = #fileID, line: UInt = #line) -> Self {
        Self(code: .missingPrivateKey, path: path, reason: reason, file: file, line: line)
    }

    static func encryptedPrivateKey(_ path: String?, file: String = #fileID, line: UInt = #line) -> Self {
        Self(
            code: .encryptedPrivateKey,
            path: path,
            reason: "the private key is encrypted; passphrase-protected keys are not supported, store it unencrypted",
            file: file,
            line: line
        )
    }

    static func unsupportedKey(_ path: String?, reason: String, file: String = #fileID, line: UInt = #line) -> Self {
        Self(code: .unsupportedKey, path: path, reason: reason, file: file, line: line)
    }

    static func keyMismatch(_ path: String?, file: String = #fileID, line: UInt = #line) -> Self {
        Self(
            code: .keyMismatch,
            path: path,
            reason: "the private key does not match the certificate's public key",
            file: file,
            line: line
        )
    }

    static func invalidSpec(_ spec: String, reason: String, file: String = #fileID, line: UInt = #line) -> Self {
        Self(code: .invalidSpec, reason: "invalid certificate spec \"\(spec)\": \(reason)", file: file, line: line)
    }

    static func invalidName(_ name: String, reason: String, file: String = #fileID, line: UInt = #line) -> Self {
        Self(code: .invalidName, reason: "can't use \"\(name)\" in a certificate: \(reason)", file: file, line: line)
    }

    static func signingFailed(_ error: any Error, file: String = #fileID, line: UInt = #line) -> Self {
        Self(code: .signingFailed, reason: "building the certificate failed: \(error)", file: file, line: line)
    }
}
