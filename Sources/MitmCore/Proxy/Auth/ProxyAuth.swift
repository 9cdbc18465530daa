import Crypto
import NIOCore

/// mitmproxy's `--proxyauth` option: who may use the proxy.
///
/// The option value (``ProxyAuthSpec``) selects a validator; ``ProxyAuthenticator`` answers
/// "are these credentials good?" for both HTTP Basic (`Proxy-Authorization`, or `Authorization`
/// in reverse mode) and SOCKS5 username/password. Reading the htpasswd file is left to the caller
/// (``ProxyAuthSpec/htpasswdFile(path:)`` carries the path), so everything here is pure.
///
/// mitmproxy's forms, and how this type differs:
///
/// | spec | meaning |
/// | --- | --- |
/// | `any` | every username/password pair is accepted, but the client must send one |
/// | `user:pass` | exactly this pair; we split at the *first* colon, so the password may contain `:` (mitmproxy 12 splits at every colon and refuses such a spec) |
/// | `@path` | an Apache htpasswd file, see ``Htpasswd`` |
/// | `ldap:…`, `ldaps:…` | LDAP bind; not supported here, refused with a clear error |
public enum ProxyAuthSpec: Hashable, Sendable {
    case any
    case singleUser(username: String, password: String)
    case htpasswdFile(path: String)

    /// Why a `proxyauth` value was refused. The message names the value, as an options error should.
    public struct ParseError: Error, Hashable, Sendable, CustomStringConvertible {
        public let description: String
    }

    /// Parses the option value. `nil` or `""` mean "no authentication" in mitmproxy and are the
    /// caller's to handle before calling this; here an empty string is an error.
    public init(parsing spec: String) throws(ParseError) {
        if spec == "any" {
            self = .any
        } else if spec.hasPrefix("@") {
            let path = String(spec.dropFirst())
            guard !path.isEmpty else {
                throw ParseError(
                    description: "Invalid proxyauth specification \"@\": missing htpasswd file path after '@'"
                )
            }
            self = .htpasswdFile(path: path)
        } else if spec.hasPrefix("ldap:") || spec.hasPrefix("ldaps:") {
            throw ParseError(
                description: "Invalid proxyauth specification \"\(spec)\": LDAP authentication is not supported;"
                    + " use \"user:pass\", \"any\" or \"@htpasswd-file\""
            )
        } else if let colon = spec.firstIndex(of: ":") {
            let username = String(spec[..<colon])
            let password = String(spec[spec.index(after: colon)...])
            guard !username.isEmpty else {
                throw ParseError(description: "Invalid proxyauth specification \"\(spec)\": empty username")
            }
            self = .singleUser(username: username, password: password)
        } else if spec.isEmpty {
            throw ParseError(description: "Invalid proxyauth specification \"\": the value is empty")
        } else {
            throw ParseError(
                description: "Invalid proxyauth specification \"\(spec)\": expected \"user:pass\", \"any\","
                    + " \"@htpasswd-file\""
            )
        }
    }
}

/// Checks credentials against a configured ``ProxyAuthSpec``.
public struct ProxyAuthenticator: Sendable {
    enum Validator: Sendable {
        case any
        case singleUser(username: String, password: String)
        case htpasswd(Htpasswd)
    }

    let validator: Validator

    /// Accept any credentials (`proxyauth=any`).
    public static let acceptAny = ProxyAuthenticator(validator: .any)

    /// A single username/password pair.
    public init(username: String, password: String) {
        self.validator = .singleUser(username: username, password: password)
    }

    /// An htpasswd file already parsed.
    public init(htpasswd: Htpasswd) {
        self.validator = .htpasswd(htpasswd)
    }

    init(validator: Validator) {
        self.validator = validator
    }

    /// Builds the authenticator for `spec`, calling `readFile` with the path for `@path` specs.
    /// I/O stays with the caller; errors from `readFile` and from parsing propagate.
    public init(
        spec: ProxyAuthSpec,
        readFile: (String) throws -> String
    ) throws {
        switch spec {
        case .any: self.validator = .any
        case .singleUser(let username, let password):
            self.validator = .singleUser(username: username, password: password)
        case .htpasswdFile(let path): self.validator = .htpasswd(try Htpasswd(parsing: try readFile(path)))
        }
    }

    /// Whether this pair may use the proxy.
    public func verify(username: String, password: String) -> Bool {
        switch self.validator {
        case .any:
            return true
        case .singleUser(let expectedUser, let expectedPassword):
            // Both comparisons always run, so timing does not tell a wrong user from a wrong password.
            let userMatches = constantTimeEquals(Array(username.utf8), Array(expectedUser.utf8))
            let passwordMatches = constantTimeEquals(Array(password.utf8), Array(expectedPassword.utf8))
            return userMatches && passwordMatches
        case .htpasswd(let file):
            return file.checkPassword(username: username, password: password)
        }
    }
}

// MARK: - HTTP Basic

/// Header helpers for HTTP Basic authentication against the proxy (RFC 7617, RFC 7235 §4).
public enum ProxyAuthHeaders {
    /// The realm mitmproxy sends.
    public static let realm = "mitmproxy"

    /// The challenge value mitmproxy sends in `Proxy-Authenticate` (status 407, regular and
    /// upstream mode) and `WWW-Authenticate` (status 401, every other mode, e.g. reverse):
    /// `Basic realm="mitmproxy"`.
    public static let challenge = "Basic realm=\"\(realm)\""

    /// Which request and response headers carry authentication in a mode, and the status code.
    public struct Scheme: Hashable, Sendable {
        /// `Proxy-Authorization` or `Authorization`.
        public var requestHeader: String
        /// `Proxy-Authenticate` or `WWW-Authenticate`.
        public var challengeHeader: String
        /// 407 or 401.
        public var status: Int

        /// mitmproxy acts as a proxy (407) in regular and upstream mode, and as the server
        /// (401) in all others, reverse mode included.
        public static func forMode(actsAsProxy: Bool) -> Scheme {
            actsAsProxy
                ? Scheme(requestHeader: "Proxy-Authorization", challengeHeader: "Proxy-Authenticate", status: 407)
                : Scheme(requestHeader: "Authorization", challengeHeader: "WWW-Authenticate", status: 401)
        }
    }

    /// Parses `Basic <base64(user:pass)>` into its user and password; `nil` for anything else.
    ///
    /// The scheme is case-insensitive and the value may be surrounded or separated by any amount
    /// of spaces and tabs. The user ends at the first colon (RFC 7617 §2: the user-id cannot
    /// contain one), so the password may contain colons; mitmproxy refuses those. Invalid UTF-8
    /// is repaired with U+FFFD as mitmproxy's `decode("utf8", "replace")` does. Bad base64, a
    /// missing colon or extra words give `nil`; nothing traps.
    public static func parseBasic(_ headerValue: String) -> (username: String, password: String)? {
        let words = headerValue.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard words.count == 2, words[0].lowercased() == "basic",
            let decoded = base64Decode(words[1].utf8),
            let colon = decoded.firstIndex(of: UInt8(ascii: ":"))
        else { return nil }
        return (
            String(decoding: decoded[..<colon], as: UTF8.self),
            String(decoding: decoded[(colon + 1)...], as: UTF8.self)
        )
    }

    /// The `Basic …` value for a client sending credentials (to an upstream proxy, in tests).
    public static func basicValue(username: String, password: String) -> String {
        "Basic " + base64Encode(Array("\(username):\(password)".utf8))
    }

    /// Standard base64 (RFC 4648 §4) with padding; padding may be omitted. `nil` on any other
    /// character or an impossible length.
    static func base64Decode(_ text: Substring.UTF8View) -> [UInt8]? {
        var bits: UInt32 = 0
        var bitCount = 0
        var out: [UInt8] = []
        var padding = 0
        var count = 0
        for character in text {
            let value: UInt8
            switch character {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): value = character - UInt8(ascii: "A")
            case UInt8(ascii: "a")...UInt8(ascii: "z"): value = character - UInt8(ascii: "a") + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = character - UInt8(ascii: "0") + 52
            case UInt8(ascii: "+"): value = 62
            case UInt8(ascii: "/"): value = 63
            case UInt8(ascii: "="):
                padding += 1
                count += 1
                continue
            default: return nil
            }
            guard padding == 0 else { return nil }  // data after '='
            count += 1
            bits = (bits << 6) | UInt32(value)
            bitCount += 6
            if bitCount >= 8 {
                bitCount -= 8
                out.append(UInt8(truncatingIfNeeded: bits >> UInt32(bitCount)))
                bits &= (1 << UInt32(bitCount)) - 1
            }
        }
        guard padding <= 2, count % 4 != 1, padding == 0 || count % 4 == 0 else { return nil }
        return out
    }

    static func base64Encode(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var out: [UInt8] = []
        var index = 0
        while index < bytes.count {
            let chunk = bytes[index..<min(index + 3, bytes.count)]
            var value = UInt32(0)
            for (offset, byte) in chunk.enumerated() { value |= UInt32(byte) << UInt32(16 - 8 * offset) }
            for position in 0..<4 {
                if position <= chunk.count {
                    out.append(alphabet[Int((value >> UInt32(18 - 6 * position)) & 0x3F)])
                } else {
                    out.append(UInt8(ascii: "="))
                }
            }
            index += 3
        }
        return String(decoding: out, as: UTF8.self)
    }
}

// MARK: - htpasswd

/// An Apache htpasswd file, read the way mitmproxy 12 reads it (its own small parser, which
/// replaced passlib):
///
/// - one `user:hash` entry per line; surrounding whitespace is stripped; blank lines and lines
///   starting with `#` are skipped;
/// - a line without `:` or with an empty user is an error;
/// - only bcrypt (`$2y$`, `$2b$`, `$2a$`) and `{SHA}` (base64 of the SHA-1 digest) hashes are
///   accepted; anything else — `$apr1$` MD5, `crypt()` DES, plain text — is an error for the
///   whole file, so a typo cannot silently lock a user out or, worse, let plain text through;
/// - anything after a further `:` on the line (htpasswd files sometimes carry extra fields) is
///   ignored when checking;
/// - a user listed twice: the last line wins.
///
/// Errors name the line number and the user, never the hash.
public struct Htpasswd: Sendable, Hashable {
    /// Why a file was refused.
    public struct ParseError: Error, Hashable, Sendable, CustomStringConvertible {
        /// 1-based line number.
        public var line: Int
        public var reason: String

        public var description: String { "htpasswd line \(self.line): \(self.reason)" }
    }

    /// The hash of each user, as written in the file (extra fields stripped).
    public private(set) var entries: [String: String]
    /// How long passwords are treated for bcrypt entries (see ``Bcrypt/LongPasswordPolicy``).
    public var longPasswords: Bcrypt.LongPasswordPolicy = .reject

    public init(parsing contents: String) throws(ParseError) {
        var entries: [String: String] = [:]
        // Split on "\n", "\r\n" and "\r" alike, as Python's splitlines() does for these.
        let lines = contents.split(omittingEmptySubsequences: false, whereSeparator: { $0.isNewline })
        for (index, rawLine) in lines.enumerated() {
            let number = index + 1
            let line = rawLine.trimmingWhitespace()
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let colon = line.firstIndex(of: ":") else {
                throw ParseError(line: number, reason: "expected \"user:hash\", found no ':'")
            }
            let user = String(line[..<colon])
            guard !user.isEmpty else { throw ParseError(line: number, reason: "empty user name") }
            var hash = line[line.index(after: colon)...]
            if let extra = hash.firstIndex(of: ":") { hash = hash[..<extra] }
            guard hash.hasPrefix("{SHA}") || hash.hasPrefix("$2y$") || hash.hasPrefix("$2b$") || hash.hasPrefix("$2a$")
            else {
                throw ParseError(
                    line: number,
                    reason: "unsupported password hash for user \"\(user)\": \(Htpasswd.describeFormat(hash))"
                )
            }
            entries[user] = String(hash)
        }
        self.entries = entries
    }

    /// Names the hash format of an unsupported entry, for the error message.
    static func describeFormat(_ hash: Substring) -> String {
        if hash.hasPrefix("$apr1$") {
            return "$apr1$ (Apache MD5) is not supported; use bcrypt (htpasswd -B) instead"
        }
        if hash.hasPrefix("$") {
            let tag = hash.dropFirst().prefix { $0 != "$" }
            return "$\(tag)$ is not supported; use bcrypt (htpasswd -B) instead"
        }
        return "crypt() or plain-text passwords are not supported; use bcrypt (htpasswd -B) instead"
    }

    /// Whether `password` is the password of `username`.
    public func checkPassword(username: String, password: String) -> Bool {
        guard let hash = self.entries[username] else { return false }
        if hash.hasPrefix("{SHA}") {
            // Apache's {SHA}: base64 of the unsalted SHA-1 digest. Insecure, but it is what
            // `htpasswd -s` writes and mitmproxy accepts it (with a warning).
            let digest = Insecure.SHA1.hash(data: Array(password.utf8))
            let expected = "{SHA}" + ProxyAuthHeaders.base64Encode(Array(digest))
            return constantTimeEquals(Array(expected.utf8), Array(hash.utf8))
        }
        return Bcrypt.verify(password: password, hash: hash, longPasswords: self.longPasswords)
    }

    /// Whether `username` has an unsalted `{SHA}` entry, so the caller can warn as mitmproxy does.
    public func usesInsecureHash(username: String) -> Bool {
        self.entries[username]?.hasPrefix("{SHA}") ?? false
    }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> Substring {
        var result = self
        while let first = result.first, first.isWhitespace { result = result.dropFirst() }
        while let last = result.last, last.isWhitespace { result = result.dropLast() }
        return result
    }
}

/// Compares without an early exit, so timing does not reveal the length of a matching prefix.
/// (Lengths are not hidden; the values compared here are hashes or short secrets.)
func constantTimeEquals(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
    guard lhs.count == rhs.count else { return false }
    var difference: UInt8 = 0
    for index in lhs.indices { difference |= lhs[index] ^ rhs[index] }
    return difference == 0
}
