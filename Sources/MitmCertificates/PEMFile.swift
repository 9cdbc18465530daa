import Crypto
import Foundation
import SwiftASN1
import X509
import _CryptoExtras

/// The certificates and the first private key of a PEM file, the way mitmproxy reads its CA file and
/// `--certs` files: every `CERTIFICATE` block in order, and the first private key block of any kind.
///
/// Parsing is lenient about what surrounds the blocks (comments, `openssl pkcs12` "Bag Attributes" lines,
/// CRLF line ends, short lines), and strict about the blocks themselves: each must decode, and each error
/// names the file and the block.
struct PEMFile {
    /// One `-----BEGIN label-----` … `-----END label-----` block.
    struct Block {
        var label: String
        var headers: [String]
        var der: [UInt8]
        /// 1-based position in the file, for error messages.
        var ordinal: Int
    }

    /// Private key labels we can decode, and the encrypted ones we recognise to report them clearly.
    static let privateKeyLabels: Set<String> = ["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY"]
    static let encryptedKeyLabels: Set<String> = ["ENCRYPTED PRIVATE KEY"]

    var path: String?
    var certificates: [Certificate]
    var privateKey: Certificate.PrivateKey?

    /// Reads and parses the file at `path`.
    static func read(path: String) throws -> PEMFile {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw CertificateStoreError.fileUnreadable(path, reason: FileIO.describe(error))
        }
        guard let text = String(data: data, encoding: .utf8) ?? String(data: data, encoding: .isoLatin1) else {
            throw CertificateStoreError.invalidPEM(path, reason: "the file is not text")
        }
        return try PEMFile(text: text, path: path)
    }

    /// Parses PEM `text`; `path` only names the source in errors.
    init(text: String, path: String?) throws {
        self.path = path
        let blocks = try Self.blocks(in: text, path: path)
        guard !blocks.isEmpty else {
            throw CertificateStoreError.invalidPEM(path, reason: "no \"-----BEGIN ...-----\" block found")
        }
        self.certificates = try blocks.filter { $0.label == "CERTIFICATE" }.map { block in
            do {
                return try Certificate(derEncoded: block.der)
            } catch {
                throw CertificateStoreError.invalidPEM(
                    path,
                    reason: "block \(block.ordinal) (CERTIFICATE) is not a valid X.509 certificate: \(error)"
                )
            }
        }
        let keyBlock = blocks.first {
            Self.privateKeyLabels.contains($0.label) || Self.encryptedKeyLabels.contains($0.label)
        }
        self.privateKey = try keyBlock.map { try Self.decodePrivateKey($0, path: path) }
    }

    /// The first certificate, or a `missingCertificate` error naming the file.
    func firstCertificate() throws -> Certificate {
        guard let first = self.certificates.first else {
            throw CertificateStoreError.missingCertificate(self.path)
        }
        return first
    }

    static func decodePrivateKey(_ block: Block, path: String?) throws -> Certificate.PrivateKey {
        let isEncrypted =
            Self.encryptedKeyLabels.contains(block.label)
            || block.headers.contains {
                $0.uppercased().hasPrefix("PROC-TYPE:") && $0.uppercased().contains("ENCRYPTED")
            }
        if isEncrypted {
            throw CertificateStoreError.encryptedPrivateKey(path)
        }
        do {
            switch block.label {
            case "RSA PRIVATE KEY":
                // Like mitmproxy (any `--key-size`), accept RSA keys below 2048 bits when loading.
                return Certificate.PrivateKey(try _RSA.Signing.PrivateKey(unsafeDERRepresentation: block.der))
            case "PRIVATE KEY":
                return try Self.decodePKCS8(block.der)
            default:
                return try Certificate.PrivateKey(pemDocument: PEMDocument(type: block.label, derBytes: block.der))
            }
        } catch let error as CertificateStoreError {
            throw error
        } catch {
            throw CertificateStoreError.unsupportedKey(
                path,
                reason: "block \(block.ordinal) (\(block.label)) is not a usable private key: \(error)"
            )
        }
    }

    /// PKCS#8 keys: RSA of any size from 1024 bits (swift-certificates' own decoder requires 2048), and
    /// everything else swift-certificates decodes (P-256, P-384, P-521, Ed25519).
    private static func decodePKCS8(_ der: [UInt8]) throws -> Certificate.PrivateKey {
        do {
            return try Certificate.PrivateKey(derBytes: der)
        } catch {
            // The RSA size check of swift-certificates' decoder is the one failure we can recover from.
            guard let key = try? _RSA.Signing.PrivateKey(unsafeDERRepresentation: der) else {
                throw error
            }
            return Certificate.PrivateKey(key)
        }
    }

    /// Splits `text` into PEM blocks.
    static func blocks(in text: String, path: String?) throws -> [Block] {
        var blocks: [Block] = []
        var current: (label: String, headers: [String], base64: String, startLine: Int)?
        var lineNumber = 0
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNumber += 1
            let line = rawLine.trimmingCharacters(in: .whitespacesAndNewlines)
            if var block = current {
                if line.hasPrefix("-----END "), line.hasSuffix("-----") {
                    let label = String(line.dropFirst("-----END ".count).dropLast("-----".count))
                    guard label == block.label else {
                        throw CertificateStoreError.invalidPEM(
                            path,
                            reason:
                                "line \(lineNumber): \"-----END \(label)-----\" closes a \"\(block.label)\" block begun on line \(block.startLine)"
                        )
                    }
                    guard let data = Data(base64Encoded: block.base64), !data.isEmpty else {
                        throw CertificateStoreError.invalidPEM(
                            path,
                            reason:
                                "the \"\(block.label)\" block on lines \(block.startLine)-\(lineNumber) is not valid base64"
                        )
                    }
                    blocks.append(
                        Block(label: block.label, headers: block.headers, der: Array(data), ordinal: blocks.count + 1)
                    )
                    current = nil
                } else if line.hasPrefix("-----BEGIN ") {
                    throw CertificateStoreError.invalidPEM(
                        path,
                        reason:
                            "line \(lineNumber): a new block begins before the \"\(block.label)\" block of line \(block.startLine) ends"
                    )
                } else if line.contains(":") {
                    block.headers.append(line)
                    current = block
                } else {
                    block.base64 += line
                    current = block
                }
            } else if line.hasPrefix("-----BEGIN "), line.hasSuffix("-----") {
                let label = String(line.dropFirst("-----BEGIN ".count).dropLast("-----".count))
                current = (label, [], "", lineNumber)
            }
        }
        if let block = current {
            throw CertificateStoreError.invalidPEM(
                path,
                reason:
                    "the \"\(block.label)\" block begun on line \(block.startLine) has no \"-----END \(block.label)-----\" line"
            )
        }
        return blocks
    }
}
