/// bcrypt password hashes (Provos and Mazières, "A Future-Adaptable Password Scheme", 1999), as
/// OpenBSD's `bcrypt(3)` and the Python `bcrypt` package compute them, for checking the `$2y$`,
/// `$2b$` and `$2a$` entries of an htpasswd file (``Htpasswd``).
///
/// No Swift package on hand implements bcrypt, so this is written from the published algorithm:
///
/// ```
/// state = EksBlowfishSetup(cost, salt, key)       // key = password bytes + NUL, at most 72 bytes
///     InitState(); ExpandKey(state, salt, key)
///     repeat 2^cost: ExpandKey(state, 0, key); ExpandKey(state, 0, salt)
/// ctext = "OrpheanBeholderScryDoubt"               // three 64-bit blocks
/// repeat 64: ctext = EncryptECB(state, ctext)
/// hash = "$2b$" + two-digit cost + "$" + base64(salt, 16 bytes) + base64(ctext[0..<23])
/// ```
///
/// The variants differ only in how old implementations treated unusual passwords: `2a` is the
/// original tag, `2b` marks OpenBSD's fix for passwords over 255 bytes (irrelevant here: we never
/// use more than 72), and `2y` is crypt_blowfish's tag for its fixed sign-extension bug. Every
/// modern implementation, Python's `bcrypt` included, computes the same bytes for all three and
/// writes the tag it was given back into the result. `2x` (crypt_blowfish's "buggy" compatibility
/// mode) is rejected rather than silently computed the fixed way.
///
/// Password length: bcrypt only ever reads 72 bytes of key. Python `bcrypt` up to 4.x silently
/// truncated longer passwords; since 5.0 `checkpw` and `hashpw` raise `ValueError` instead, and
/// mitmproxy 12 (which calls `checkpw` and treats any exception as "not authenticated") therefore
/// rejects such passwords. ``LongPasswordPolicy`` selects between the two; the default matches
/// `bcrypt` 5.
public enum Bcrypt {
    /// What to do with a password longer than ``maximumPasswordLength`` bytes.
    public enum LongPasswordPolicy: Sendable, Hashable {
        /// Refuse it: ``verify(password:hash:longPasswords:)`` answers `false` and
        /// ``hash(password:cost:salt:variant:longPasswords:)`` throws. Python `bcrypt` ≥ 5.0.
        case reject
        /// Use its first 72 bytes, as Python `bcrypt` ≤ 4.x, OpenBSD and Apache's `htpasswd` do.
        case truncate
    }

    /// The version tags accepted in a hash string.
    public enum Variant: String, Sendable, Hashable, CaseIterable {
        case a = "2a"
        case b = "2b"
        case y = "2y"
    }

    /// Why ``hash(password:cost:salt:variant:longPasswords:)`` refused its arguments.
    public struct HashError: Error, Hashable, Sendable, CustomStringConvertible {
        public let description: String
    }

    /// bcrypt keys Blowfish with at most this many bytes of the (NUL-terminated) password.
    public static let maximumPasswordLength = 72
    /// The work factor range: 2^cost rounds of the expensive key schedule.
    public static let costRange: ClosedRange<Int> = 4...31
    /// The salt is 16 random bytes.
    public static let saltLength = 16

    /// Whether `password` (as UTF-8) matches `hash`, a 60-character `$2a$`/`$2b$`/`$2y$` string.
    ///
    /// A malformed hash (wrong tag, cost outside 4...31, bad length or alphabet) is simply `false`:
    /// this runs on behalf of a remote client and must not trap on whatever a config file holds.
    /// The comparison, like Python's `checkpw`, recomputes the whole string and compares it in
    /// constant time, so a salt with non-canonical trailing bits does not verify either.
    public static func verify(
        password: String,
        hash: String,
        longPasswords: LongPasswordPolicy = .reject
    ) -> Bool {
        self.verify(password: Array(password.utf8), hash: hash, longPasswords: longPasswords)
    }

    /// ``verify(password:hash:longPasswords:)`` for a password given as raw bytes.
    public static func verify(
        password: [UInt8],
        hash: String,
        longPasswords: LongPasswordPolicy = .reject
    ) -> Bool {
        guard let parsed = ParsedHash(hash) else { return false }
        guard
            let computed = try? self.hash(
                password: password,
                cost: parsed.cost,
                salt: parsed.salt,
                variant: parsed.variant,
                longPasswords: longPasswords
            )
        else { return false }
        return constantTimeEquals(Array(computed.utf8), Array(hash.utf8))
    }

    /// Computes the bcrypt hash string of `password` (UTF-8) with an explicit salt.
    ///
    /// Meant for tests and for writing htpasswd fixtures; a caller creating real password hashes
    /// must pass 16 bytes from a cryptographically secure generator.
    public static func hash(
        password: String,
        cost: Int,
        salt: [UInt8],
        variant: Variant = .b,
        longPasswords: LongPasswordPolicy = .reject
    ) throws(HashError) -> String {
        try self.hash(
            password: Array(password.utf8),
            cost: cost,
            salt: salt,
            variant: variant,
            longPasswords: longPasswords
        )
    }

    /// ``hash(password:cost:salt:variant:longPasswords:)`` for a password given as raw bytes.
    public static func hash(
        password: [UInt8],
        cost: Int,
        salt: [UInt8],
        variant: Variant = .b,
        longPasswords: LongPasswordPolicy = .reject
    ) throws(HashError) -> String {
        guard self.costRange.contains(cost) else {
            throw HashError(description: "bcrypt cost \(cost) is outside \(self.costRange)")
        }
        guard salt.count == self.saltLength else {
            throw HashError(description: "bcrypt salt must be \(self.saltLength) bytes, got \(salt.count)")
        }
        if password.count > self.maximumPasswordLength, longPasswords == .reject {
            throw HashError(
                description:
                    "bcrypt password is \(password.count) bytes; bcrypt uses at most \(self.maximumPasswordLength)"
            )
        }
        // The key is the password and its terminating NUL, cut to 72 bytes: a 72-byte password
        // loses the NUL, and NUL bytes inside the password are key bytes like any other.
        let key = Array((password + [0]).prefix(self.maximumPasswordLength))
        let digest = self.rawHash(key: key, salt: salt, cost: cost)
        let costString = cost < 10 ? "0\(cost)" : "\(cost)"
        return "$\(variant.rawValue)$\(costString)$"
            + BcryptBase64.encode(salt) + BcryptBase64.encode(Array(digest.prefix(23)))
    }

    /// EksBlowfish followed by 64 encryptions of "OrpheanBeholderScryDoubt": 24 bytes.
    static func rawHash(key: [UInt8], salt: [UInt8], cost: Int) -> [UInt8] {
        var cipher = Blowfish()
        cipher.expandKey(key, salt: salt)
        let rounds = 1 << cost
        var round = 0
        while round < rounds {
            cipher.expandKey(key, salt: nil)
            cipher.expandKey(salt, salt: nil)
            round += 1
        }
        var text = Blowfish.words(of: Array("OrpheanBeholderScryDoubt".utf8))
        for _ in 0..<64 {
            for block in 0..<3 {
                (text[2 * block], text[2 * block + 1]) = cipher.encrypt(text[2 * block], text[2 * block + 1])
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(24)
        for word in text {
            out += [
                UInt8(truncatingIfNeeded: word >> 24), UInt8(truncatingIfNeeded: word >> 16),
                UInt8(truncatingIfNeeded: word >> 8), UInt8(truncatingIfNeeded: word),
            ]
        }
        return out
    }
}

// MARK: - Hash strings

extension Bcrypt {
    /// The pieces of `$2b$12$` + 22 salt characters + 31 digest characters.
    struct ParsedHash {
        var variant: Variant
        var cost: Int
        var salt: [UInt8]

        init?(_ string: String) {
            let bytes = Array(string.utf8)
            guard bytes.count == 60, bytes[0] == UInt8(ascii: "$"), bytes[3] == UInt8(ascii: "$"),
                bytes[6] == UInt8(ascii: "$")
            else { return nil }
            guard let tag = String(validating: bytes[1..<3], as: UTF8.self), let variant = Variant(rawValue: tag)
            else { return nil }
            let digits = bytes[4..<6]
            guard digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return nil }
            let cost = Int(digits[4] - UInt8(ascii: "0")) * 10 + Int(digits[5] - UInt8(ascii: "0"))
            guard Bcrypt.costRange.contains(cost) else { return nil }
            guard let salt = BcryptBase64.decode(bytes[7..<29], count: Bcrypt.saltLength),
                BcryptBase64.decode(bytes[29..<60], count: 23) != nil
            else { return nil }
            self.variant = variant
            self.cost = cost
            self.salt = salt
        }
    }
}

/// bcrypt's own base64: alphabet `./A-Za-z0-9`, no padding, bits taken most significant first.
/// It is not RFC 4648 base64, so Foundation's coder cannot be used.
enum BcryptBase64 {
    static let alphabet = Array("./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        var index = 0
        while index < bytes.count {
            let b0 = bytes[index]
            out.append(alphabet[Int(b0 >> 2)])
            var carry = (b0 & 0x03) << 4
            guard index + 1 < bytes.count else {
                out.append(alphabet[Int(carry)])
                break
            }
            let b1 = bytes[index + 1]
            out.append(alphabet[Int(carry | (b1 >> 4))])
            carry = (b1 & 0x0F) << 2
            guard index + 2 < bytes.count else {
                out.append(alphabet[Int(carry)])
                break
            }
            let b2 = bytes[index + 2]
            out.append(alphabet[Int(carry | (b2 >> 6))])
            out.append(alphabet[Int(b2 & 0x3F)])
            index += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes `characters` into exactly `count` bytes; `nil` for a character outside the alphabet
    /// or too few characters. Trailing bits beyond `count` bytes are ignored here (the caller's
    /// re-encoding comparison rejects non-canonical ones).
    static func decode(_ characters: ArraySlice<UInt8>, count: Int) -> [UInt8]? {
        var bits: UInt32 = 0
        var bitCount = 0
        var out: [UInt8] = []
        out.reserveCapacity(count)
        for character in characters {
            guard let value = self.value(of: character) else { return nil }
            bits = (bits << 6) | UInt32(value)
            bitCount += 6
            if bitCount >= 8 {
                bitCount -= 8
                if out.count < count { out.append(UInt8(truncatingIfNeeded: bits >> UInt32(bitCount))) }
                bits &= (1 << UInt32(bitCount)) - 1
            }
        }
        return out.count == count ? out : nil
    }

    private static func value(of character: UInt8) -> UInt8? {
        switch character {
        case UInt8(ascii: "."): 0
        case UInt8(ascii: "/"): 1
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): character - UInt8(ascii: "A") + 2
        case UInt8(ascii: "a")...UInt8(ascii: "z"): character - UInt8(ascii: "a") + 28
        case UInt8(ascii: "0")...UInt8(ascii: "9"): character - UInt8(ascii: "0") + 54
        default: nil
        }
    }
}

// MARK: - Blowfish

/// Blowfish (Schneier, 1993) with the extra "salted" key expansion bcrypt needs. Internal: it is
/// only here for bcrypt, and a 64-bit block cipher should not be used for anything new.
struct Blowfish {
    /// The 18 subkeys P1...P18.
    var p: [UInt32]
    /// The four S-boxes, 4 × 256 words back to back.
    var s: [UInt32]

    /// The initial state: P and S filled with the digits of pi, no key yet.
    init() {
        self.p = Blowfish.initialP
        self.s = Blowfish.initialS
    }

    /// Plain Blowfish keyed with `key` (1...56 bytes in the specification; any length works).
    init(key: [UInt8]) {
        self.init()
        self.expandKey(key, salt: nil)
    }

    /// Big-endian 32-bit words of `bytes` (whose count is a multiple of 4).
    static func words(of bytes: [UInt8]) -> [UInt32] {
        stride(from: 0, to: bytes.count - 3, by: 4).map { index in
            let high = UInt32(bytes[index]) << 24 | UInt32(bytes[index + 1]) << 16
            return high | UInt32(bytes[index + 2]) << 8 | UInt32(bytes[index + 3])
        }
    }

    /// The next 32 bits of `data`, read cyclically from `position` (OpenBSD's `Blowfish_stream2word`).
    @inline(__always)
    private static func streamWord(_ data: UnsafeBufferPointer<UInt8>, _ position: inout Int) -> UInt32 {
        var word: UInt32 = 0
        for _ in 0..<4 {
            if position >= data.count { position = 0 }
            word = (word << 8) | UInt32(data[position])
            position += 1
        }
        return word
    }

    /// Encrypts one 64-bit block given as two big-endian halves.
    func encrypt(_ left: UInt32, _ right: UInt32) -> (UInt32, UInt32) {
        self.p.withUnsafeBufferPointer { p in
            self.s.withUnsafeBufferPointer { s in
                Blowfish.encrypt(left, right, p: p, s: s)
            }
        }
    }

    @inline(__always)
    private static func encrypt(
        _ left: UInt32,
        _ right: UInt32,
        p: UnsafeBufferPointer<UInt32>,
        s: UnsafeBufferPointer<UInt32>
    ) -> (UInt32, UInt32) {
        @inline(__always)
        func f(_ x: UInt32) -> UInt32 {
            let a: UInt32 = s[Int(x >> 24)]
            let b: UInt32 = s[256 &+ Int((x >> 16) & 0xFF)]
            let c: UInt32 = s[512 &+ Int((x >> 8) & 0xFF)]
            let d: UInt32 = s[768 &+ Int(x & 0xFF)]
            return ((a &+ b) ^ c) &+ d
        }
        var l = left ^ p[0]
        var r = right
        var round = 1
        while round < 17 {
            r ^= f(l) ^ p[round]
            l ^= f(r) ^ p[round + 1]
            round += 2
        }
        return (r ^ p[17], l)
    }

    /// Blowfish's key schedule, with bcrypt's salt: XOR the key into P, then replace P and the
    /// S-boxes pairwise by encrypting a running block that is XORed with the salt before each
    /// step. With `salt == nil` this is the ordinary Blowfish key schedule (OpenBSD's
    /// `Blowfish_expand0state`); with a salt it is `Blowfish_expandstate`.
    mutating func expandKey(_ key: [UInt8], salt: [UInt8]?) {
        key.withUnsafeBufferPointer { key in
            let saltBytes = salt ?? []
            saltBytes.withUnsafeBufferPointer { saltPointer in
                self.p.withUnsafeMutableBufferPointer { p in
                    self.s.withUnsafeMutableBufferPointer { s in
                        var position = 0
                        if key.count > 0 {
                            for index in 0..<18 { p[index] ^= Blowfish.streamWord(key, &position) }
                        }
                        let salted = salt != nil && saltPointer.count > 0
                        var left: UInt32 = 0
                        var right: UInt32 = 0
                        position = 0
                        /// Replaces `table` pairwise with the running block, P first, then the S-boxes.
                        func refill(_ table: UnsafeMutableBufferPointer<UInt32>) {
                            var index = 0
                            while index < table.count {
                                if salted {
                                    left ^= Blowfish.streamWord(saltPointer, &position)
                                    right ^= Blowfish.streamWord(saltPointer, &position)
                                }
                                (left, right) = Blowfish.encrypt(
                                    left,
                                    right,
                                    p: UnsafeBufferPointer(p),
                                    s: UnsafeBufferPointer(s)
                                )
                                table[index] = left
                                table[index + 1] = right
                                index += 2
                            }
                        }
                        refill(p)
                        refill(s)
                    }
                }
            }
        }
    }
}
