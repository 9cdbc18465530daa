import Testing

@testable import MitmCore
import MitmTestSupport

@Suite("proxyauth specification")
struct ProxyAuthSpecTests {
    @Test("The accepted forms")
    func forms() throws {
        #expect(try ProxyAuthSpec(parsing: "any") == .any)
        #expect(try ProxyAuthSpec(parsing: "user:pass") == .singleUser(username: "user", password: "pass"))
        #expect(try ProxyAuthSpec(parsing: "user:pa:ss:") == .singleUser(username: "user", password: "pa:ss:"))
        #expect(try ProxyAuthSpec(parsing: "user:") == .singleUser(username: "user", password: ""))
        #expect(try ProxyAuthSpec(parsing: "@/etc/mitm.htpasswd") == .htpasswdFile(path: "/etc/mitm.htpasswd"))
    }

    @Test(
        "Refused specifications name themselves",
        arguments: [
            ("", "Invalid proxyauth specification \"\": the value is empty"),
            (
                "justauser",
                "Invalid proxyauth specification \"justauser\": expected \"user:pass\", \"any\", \"@htpasswd-file\""
            ),
            (":pass", "Invalid proxyauth specification \":pass\": empty username"),
            ("@", "Invalid proxyauth specification \"@\": missing htpasswd file path after '@'"),
            (
                "ldap:localhost:cn=default,dc=cdhdt,dc=com:password:ou=application,dc=cdhdt,dc=com",
                "Invalid proxyauth specification \"ldap:localhost:cn=default,dc=cdhdt,dc=com:password:ou=application,dc=cdhdt,dc=com\": LDAP authentication is not supported; use \"user:pass\", \"any\" or \"@htpasswd-file\""
            ),
        ]
    )
    func refused(spec: String, message: String) {
        #expect(throws: ProxyAuthSpec.ParseError(description: message)) { try ProxyAuthSpec(parsing: spec) }
    }

    @Test("ldaps: is refused too")
    func ldaps() {
        #expect(throws: ProxyAuthSpec.ParseError.self) { try ProxyAuthSpec(parsing: "ldaps:host:1636:cn=a:pw:ou=b") }
    }

    @Test("Authenticators from specifications")
    func authenticators() throws {
        let any = try ProxyAuthenticator(spec: .any) { _ in "" }
        #expect(any.verify(username: "", password: ""))
        let single = try ProxyAuthenticator(spec: try ProxyAuthSpec(parsing: "user:pa:ss")) { _ in "" }
        #expect(single.verify(username: "user", password: "pa:ss"))
        #expect(!single.verify(username: "user", password: "pa"))
        #expect(!single.verify(username: "User", password: "pa:ss"))
        var requested: String?
        let file = try ProxyAuthenticator(spec: .htpasswdFile(path: "/x")) { path in
            requested = path
            return HtpasswdFixture.file
        }
        #expect(requested == "/x")
        #expect(file.verify(username: "alice", password: "wonderland"))
        #expect(!file.verify(username: "alice", password: "Wonderland"))
    }
}

enum HtpasswdFixture {
    /// Hashes from Python: `bcrypt.hashpw` (5.0.0) and base64 of `hashlib.sha1`.
    static let file = """
        # mitmproxy users

        alice:$2b$04$wLf4ceAQWjEkXxathnCSQeKn1sq7sFLYHz2joxFfYHAjrjmUwACRS
          bob:$2y$05$iIoAJQqRd.d6zYODQSCsFeyUuKbI60HxIg00gdDgKf5ZkXu35KvAq  \r
        carol:{SHA}/vNB+F2HQ559kaLUZbmHHvZrXpg=:extra field
        dave:{SHA}l5/jO3DHu6SJl12UvUCHRgci/IU=
        """
}

@Suite("htpasswd files")
struct HtpasswdTests {
    @Test("bcrypt and {SHA} entries, comments, blank lines, whitespace, extra fields")
    func check() throws {
        let file = try Htpasswd(parsing: HtpasswdFixture.file)
        #expect(file.entries.count == 4)
        #expect(file.checkPassword(username: "alice", password: "wonderland"))
        #expect(file.checkPassword(username: "bob", password: "pässwörd"))
        #expect(file.checkPassword(username: "carol", password: "s3cret"))
        #expect(file.checkPassword(username: "dave", password: "ünïcode"))
        #expect(!file.checkPassword(username: "carol", password: "s3cret:extra field"))
        #expect(!file.checkPassword(username: "carol", password: "S3cret"))
        #expect(!file.checkPassword(username: "eve", password: "wonderland"))
        #expect(!file.checkPassword(username: "# mitmproxy users", password: ""))
        #expect(file.usesInsecureHash(username: "carol"))
        #expect(!file.usesInsecureHash(username: "alice"))
    }

    @Test("The last entry for a user wins")
    func duplicate() throws {
        let file = try Htpasswd(parsing: "carol:{SHA}xxxx\ncarol:{SHA}/vNB+F2HQ559kaLUZbmHHvZrXpg=\n")
        #expect(file.checkPassword(username: "carol", password: "s3cret"))
    }

    @Test("An empty file has no users")
    func empty() throws {
        #expect(try Htpasswd(parsing: "").entries.isEmpty)
        #expect(try Htpasswd(parsing: "\n# nothing\n\n").entries.isEmpty)
    }

    @Test(
        "Parse errors name the line",
        arguments: [
            (
                "alice:$2b$04$wLf4ceAQWjEkXxathnCSQeKn1sq7sFLYHz2joxFfYHAjrjmUwACRS\nnocolon\n", 2,
                "expected \"user:hash\", found no ':'"
            ),
            ("# c\n\n:{SHA}abc\n", 3, "empty user name"),
            (
                "u:$apr1$salt$hash\n", 1,
                "unsupported password hash for user \"u\": $apr1$ (Apache MD5) is not supported; use bcrypt (htpasswd -B) instead"
            ),
            (
                "\n\n\nu:plaintext\n", 4,
                "unsupported password hash for user \"u\": crypt() or plain-text passwords are not supported; use bcrypt (htpasswd -B) instead"
            ),
            (
                "u:$6$salt$hash\n", 1,
                "unsupported password hash for user \"u\": $6$ is not supported; use bcrypt (htpasswd -B) instead"
            ),
            (
                "u:$2x$04$abc\n", 1,
                "unsupported password hash for user \"u\": $2x$ is not supported; use bcrypt (htpasswd -B) instead"
            ),
        ]
    )
    func errors(contents: String, line: Int, reason: String) {
        #expect(throws: Htpasswd.ParseError(line: line, reason: reason)) { try Htpasswd(parsing: contents) }
        #expect(Htpasswd.ParseError(line: line, reason: reason).description == "htpasswd line \(line): \(reason)")
    }

    @Test("Long passwords follow the bcrypt policy")
    func longPasswords() throws {
        let password = String(repeating: "p", count: 80)
        let hash = try Bcrypt.hash(password: String(password.prefix(72)), cost: 4, salt: Array("saltsaltsaltsalt".utf8))
        var file = try Htpasswd(parsing: "u:\(hash)")
        #expect(!file.checkPassword(username: "u", password: password))
        file.longPasswords = .truncate
        #expect(file.checkPassword(username: "u", password: password))
    }
}

@Suite("HTTP Basic proxy authentication headers")
struct ProxyAuthHeaderTests {
    @Test("Parsing Basic credentials")
    func parse() throws {
        let value = ProxyAuthHeaders.basicValue(username: "alice", password: "pa:ss")
        #expect(value == "Basic YWxpY2U6cGE6c3M=")
        let parsed = try #require(ProxyAuthHeaders.parseBasic(value))
        #expect(parsed.username == "alice")
        #expect(parsed.password == "pa:ss")
        #expect(
            ProxyAuthHeaders.parseBasic("  bAsIc \t dXNlcjpwYXNz  ").map { [$0.username, $0.password] } == [
                "user", "pass",
            ]
        )
        #expect(
            ProxyAuthHeaders.parseBasic("Basic dXNlcjpwYXNz").map { [$0.username, $0.password] } == ["user", "pass"]
        )
        #expect(ProxyAuthHeaders.parseBasic("Basic dXNlcjo").map { [$0.username, $0.password] } == ["user", ""])
        #expect(ProxyAuthHeaders.parseBasic("Basic Ojo=").map { [$0.username, $0.password] } == ["", ":"])
        let utf8 = ProxyAuthHeaders.basicValue(username: "jürgen", password: "pässwörd")
        #expect(ProxyAuthHeaders.parseBasic(utf8).map { [$0.username, $0.password] } == ["jürgen", "pässwörd"])
    }

    @Test(
        "Garbage is nil",
        arguments: [
            "", "Basic", "Basic ", "Bearer dXNlcjpwYXNz", "Basic dXNlcjpwYXNz extra", "Basic dXNlcnBhc3M=",
            "Basic !!!!", "Basic dXNlcjpwYXNz=", "Basic ====", "Basic d", "Basic dXNlcjpw=YXNz", "Digest username=x",
        ]
    )
    func garbage(value: String) {
        #expect(ProxyAuthHeaders.parseBasic(value) == nil)
    }

    @Test("Random header values never trap (SplitMix64, fixed seed)")
    func fuzz() {
        var generator = SplitMix64(seed: 42)
        let alphabet = Array("Basic basic ABCxyz019+/=: \t\u{0}é".unicodeScalars)
        for _ in 0..<5000 {
            let length = Int(generator.next() % 40)
            var text = ""
            for _ in 0..<length { text.unicodeScalars.append(alphabet[Int(generator.next() % UInt64(alphabet.count))]) }
            _ = ProxyAuthHeaders.parseBasic(text)
        }
    }

    @Test("Challenge as mitmproxy sends it: 407 + Proxy-Authenticate as a proxy, 401 + WWW-Authenticate otherwise")
    func challenge() {
        #expect(ProxyAuthHeaders.challenge == "Basic realm=\"mitmproxy\"")
        let proxy = ProxyAuthHeaders.Scheme.forMode(actsAsProxy: true)
        #expect(
            proxy == .init(requestHeader: "Proxy-Authorization", challengeHeader: "Proxy-Authenticate", status: 407)
        )
        let reverse = ProxyAuthHeaders.Scheme.forMode(actsAsProxy: false)
        #expect(reverse == .init(requestHeader: "Authorization", challengeHeader: "WWW-Authenticate", status: 401))
    }

    @Test("base64 round-trips")
    func base64() {
        var generator = SplitMix64(seed: 9)
        for length in 0..<50 {
            let data = (0..<length).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            let text = ProxyAuthHeaders.base64Encode(data)
            #expect(ProxyAuthHeaders.base64Decode(Substring(text).utf8) == data)
        }
    }
}
