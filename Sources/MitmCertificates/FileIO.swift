import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// File writing with an explicit creation mode, so a private key is never readable by others, not even
/// for a moment between creation and `chmod`.
///
/// mitmproxy writes its secret files under `umask | 0o077` and the others under the plain umask; creating
/// with mode `0o600` or `0o666` and letting the kernel apply the process umask gives the same permissions.
enum FileIO {
    /// Mode for files holding a private key (`mitmproxy-ca.pem`, `mitmproxy-ca.p12`), before the umask.
    static let secretFileMode: mode_t = 0o600
    /// Mode for public files (certificates, DH parameters), before the umask.
    static let publicFileMode: mode_t = 0o666

    /// Creates or truncates `path` and writes `bytes` to it.
    static func write(_ bytes: [UInt8], to path: String, mode: mode_t) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else {
            throw CertificateStoreError.fileUnwritable(path, reason: Self.lastErrorDescription())
        }
        defer { _ = close(fd) }
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { buffer in
                posixWrite(fd, buffer.baseAddress! + written, buffer.count - written)
            }
            if result < 0 {
                if errno == EINTR {
                    continue
                }
                throw CertificateStoreError.fileUnwritable(path, reason: Self.lastErrorDescription())
            }
            written += result
        }
    }

    static func write(_ text: String, to path: String, mode: mode_t) throws {
        try self.write(Array(text.utf8), to: path, mode: mode)
    }

    static func lastErrorDescription() -> String {
        String(cString: strerror(errno))
    }

    /// The operating system's words for a Foundation file error ("No such file or directory"), rather than
    /// Foundation's generic "The operation could not be completed".
    static func describe(_ error: any Error) -> String {
        if let posix = error as? POSIXError {
            return String(cString: strerror(posix.code.rawValue))
        }
        let nsError = error as NSError
        if nsError.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(nsError.code)))
        }
        if let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? any Error {
            return self.describe(underlying)
        }
        return nsError.localizedDescription
    }
}

// `write` is shadowed by `FileIO.write` inside the enum.
private func posixWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    write(fd, buffer, count)
}
