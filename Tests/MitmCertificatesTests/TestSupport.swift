import Foundation
import MitmTestSupport
import MitmCertificates
import SwiftASN1
import Testing
@_spi(FixedExpiryValidationTime) import X509

/// The fixtures of `Fixtures/` (see its README): files real mitmproxy 11.0.2 wrote.
enum Fixtures {
    static var directory: URL {
        Bundle.module.resourceURL!.appendingPathComponent("Fixtures")
    }

    static var confdir: URL {
        self.directory.appendingPathComponent("mitmproxy11-confdir")
    }

    static func data(_ relativePath: String) throws -> Data {
        try Data(contentsOf: self.directory.appendingPathComponent(relativePath))
    }

    static func certificate(_ relativePath: String) throws -> Certificate {
        try Certificate(pemEncoded: String(decoding: try self.data(relativePath), as: UTF8.self))
    }

    /// The CA mitmproxy wrote, loaded once: most tests sign with it and never pay for RSA key generation.
    static let authority: CertificateAuthority = {
        try! CertificateAuthority.load(pemFile: Fixtures.confdir.appendingPathComponent("mitmproxy-ca.pem").path)
    }()

    /// A time inside the validity of the fixture CA (2026-11-20 to 2036-11-19) and its leaves.
    static let referenceTime = Date(timeIntervalSince1970: 1_800_000_000)  // 2027-01-15
}

/// Runs `body` with a fresh empty directory, removed afterwards.
func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("MitmCertificatesTests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: url) }
    return try await body(url.path)
}

/// Copies the fixture confdir to `destination` (the bundle may be read-only).
func copyFixtureConfdir(to destination: String) throws {
    try FileManager.default.copyItem(atPath: Fixtures.confdir.path, toPath: destination)
}

func posixPermissions(_ path: String) throws -> Int {
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    return (attributes[.posixPermissions] as! NSNumber).intValue
}

/// The content of every regular file in `directory`, by name.
func snapshot(_ directory: String) throws -> [String: Data] {
    var result: [String: Data] = [:]
    for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
        result[name] = try Data(contentsOf: URL(fileURLWithPath: directory).appendingPathComponent(name))
    }
    return result
}

func derBytes(_ certificate: Certificate) throws -> [UInt8] {
    var serializer = DER.Serializer()
    try serializer.serialize(certificate)
    return serializer.serializedBytes
}

/// `(oid, critical)` of each extension, in certificate order.
func extensionLayout(_ certificate: Certificate) -> [String] {
    certificate.extensions.map { "\($0.oid)\($0.critical ? " critical" : "")" }
}

/// The attribute types of the subject, in order.
func subjectAttributeTypes(_ name: DistinguishedName) -> [ASN1ObjectIdentifier] {
    name.flatMap { rdn in rdn.map(\.type) }
}

/// Runs the `openssl` command line tool if there is one; `nil` if it isn't installed.
func runOpenSSL(_ arguments: [String]) async throws -> (status: Int32, output: String)? {
    let candidates = ["/usr/bin/openssl", "/usr/local/bin/openssl", "/opt/homebrew/bin/openssl"]
    guard let executable = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        return nil
    }
    let result = try await CommandRunner.run(executable, arguments, timeout: 30)
    return (result.timedOut ? -1 : result.exitCode, result.output + result.errorOutput)
}

/// Whether swift-certificates' RFC 5280 verifier, trusting only `authority`, accepts `leaf` for
/// `hostname` (or `ipAddress`) at `time`.
func verify(
    _ leaf: LeafCertificate,
    against authority: CertificateAuthority,
    hostname: String? = nil,
    ipAddress: String? = nil,
    at time: Date = Date()
) async throws -> Bool {
    var verifier = Verifier(rootCertificates: X509.CertificateStore([authority.certificate])) {
        RFC5280Policy(fixedExpiryValidationTime: time)
        ServerIdentityPolicy(serverHostname: hostname, serverIP: ipAddress)
    }
    let intermediates = try X509.CertificateStore(leaf.chainDER.dropFirst().map { try Certificate(derEncoded: $0) })
    let result = await verifier.validate(leaf: leaf.certificate, intermediates: intermediates)
    switch result {
    case .validCertificate(let chain):
        return Array(chain).first == leaf.certificate && Array(chain).last == authority.certificate
    case .couldNotValidate(let failures):
        Issue.record("chain rejected: \(failures)")
        return false
    }
}

/// The subject's RDNs in certificate order (not RFC 4514's reversed order), like `openssl x509 -subject`:
/// `CN=example.com, O=Example Org`.
func subjectText(_ certificate: Certificate) -> String {
    certificate.subject.map { String(describing: $0) }.joined(separator: ", ")
}
