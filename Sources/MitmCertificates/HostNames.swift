import Foundation

/// Host name and IP address helpers for certificate names.
///
/// mitmproxy turns each name into a SAN with `_ip_or_dns_name`: a string Python's
/// `ipaddress.ip_address` accepts becomes an `iPAddress` SAN, anything else an IDNA-encoded `dNSName`.
/// These functions make the same decisions without Python's codecs.
enum HostNames {
    /// The packed network-order bytes of an IPv4 (4 bytes) or IPv6 (16 bytes) address in textual form,
    /// or `nil` if `text` is not one.
    ///
    /// IPv4 must be four dotted decimal octets without leading zeros (as `ipaddress` requires since Python 3.9.5).
    /// IPv6 follows RFC 4291 §2.2: up to eight groups of one to four hex digits, one `::`, an optional
    /// dotted IPv4 tail; a `%zone` suffix is accepted and dropped, since a certificate has no room for it.
    static func ipAddressBytes(_ text: String) -> [UInt8]? {
        if let v4 = self.ipv4Bytes(Substring(text)) {
            return v4
        }
        return self.ipv6Bytes(text)
    }

    /// The canonical text of packed address bytes: dotted quad for 4 bytes, RFC 5952 for 16 bytes.
    static func ipAddressText(_ bytes: some Collection<UInt8>) -> String {
        let bytes = Array(bytes)
        if bytes.count == 4 {
            return bytes.map(String.init).joined(separator: ".")
        }
        guard bytes.count == 16 else {
            return bytes.map { String($0, radix: 16) }.joined(separator: ":")
        }
        let groups = (0..<8).map { UInt16(bytes[2 * $0]) << 8 | UInt16(bytes[2 * $0 + 1]) }
        // RFC 5952 §4.2: compress the longest run (of at least two) of zero groups, the first one on a tie.
        var bestStart = -1
        var bestLength = 0
        var index = 0
        while index < 8 {
            guard groups[index] == 0 else {
                index += 1
                continue
            }
            let start = index
            while index < 8, groups[index] == 0 {
                index += 1
            }
            if index - start > bestLength {
                bestStart = start
                bestLength = index - start
            }
        }
        let hex = groups.map { String($0, radix: 16) }
        guard bestLength >= 2 else {
            return hex.joined(separator: ":")
        }
        let head = hex[..<bestStart].joined(separator: ":")
        let tail = hex[(bestStart + bestLength)...].joined(separator: ":")
        return head + "::" + tail
    }

    private static func ipv4Bytes(_ text: Substring) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else {
            return nil
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(4)
        for part in parts {
            guard (1...3).contains(part.utf8.count),
                part.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
                part.utf8.count == 1 || part.utf8.first != UInt8(ascii: "0"),
                let value = UInt8(part)
            else {
                return nil
            }
            bytes.append(value)
        }
        return bytes
    }

    private static func ipv6Bytes(_ text: String) -> [UInt8]? {
        var address = Substring(text)
        if let percent = address.firstIndex(of: "%") {
            guard address.index(after: percent) != address.endIndex else {
                return nil
            }
            address = address[..<percent]
        }
        guard address.contains(":") else {
            return nil
        }

        // Split around the one allowed "::".
        let halves = address.components(separatedBy: "::")
        guard halves.count <= 2 else {
            return nil
        }

        func groups(_ part: String, allowIPv4Tail: Bool) -> [UInt16]? {
            if part.isEmpty {
                return []
            }
            let fields = part.split(separator: ":", omittingEmptySubsequences: false)
            var result: [UInt16] = []
            for (index, field) in fields.enumerated() {
                if allowIPv4Tail, index == fields.count - 1, field.contains(".") {
                    guard let v4 = self.ipv4Bytes(field) else {
                        return nil
                    }
                    result.append(UInt16(v4[0]) << 8 | UInt16(v4[1]))
                    result.append(UInt16(v4[2]) << 8 | UInt16(v4[3]))
                    continue
                }
                guard (1...4).contains(field.utf8.count), field.utf8.allSatisfy({ $0.isASCIIHexDigit }),
                    let value = UInt16(field, radix: 16)
                else {
                    return nil
                }
                result.append(value)
            }
            return result
        }

        let allGroups: [UInt16]
        if halves.count == 2 {
            guard let head = groups(halves[0], allowIPv4Tail: false),
                let tail = groups(halves[1], allowIPv4Tail: true),
                head.count + tail.count <= 7
            else {
                return nil
            }
            allGroups = head + Array(repeating: 0, count: 8 - head.count - tail.count) + tail
        } else {
            guard let all = groups(halves[0], allowIPv4Tail: true), all.count == 8 else {
                return nil
            }
            allGroups = all
        }
        return allGroups.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
    }

    /// The ASCII (IDNA "ToASCII") form of a DNS name for a `dNSName` SAN.
    ///
    /// ASCII labels are kept as they are, as Python's `idna` codec keeps them. Other labels are
    /// lower-cased, NFKC-normalised (an approximation of IDNA 2003 nameprep) and Punycode-encoded
    /// with the `xn--` prefix (RFC 3490 §4.1, RFC 3492).
    static func asciiDNSName(_ name: String) throws -> String {
        guard !name.isEmpty else {
            throw CertificateStoreError.invalidName(name, reason: "empty host name")
        }
        if name.utf8.allSatisfy({ $0 < 0x80 }) {
            return name
        }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false).map { label -> String in
            if label.utf8.allSatisfy({ $0 < 0x80 }) {
                return String(label)
            }
            let prepared = label.lowercased().precomposedStringWithCompatibilityMapping
            return "xn--" + Punycode.encode(prepared)
        }
        let result = labels.joined(separator: ".")
        guard result.utf8.allSatisfy({ $0 < 0x80 }) else {
            throw CertificateStoreError.invalidName(name, reason: "can't be converted to an ASCII host name")
        }
        return result
    }

    /// The names a certificate registered under `name` may serve, most specific first:
    /// `www.example.com`, `*.example.com`, `*.com`. The lone wildcard `*` is left to the caller.
    /// IP addresses have no wildcard forms.
    static func asteriskForms(_ name: String) -> [String] {
        if self.ipAddressBytes(name) != nil {
            return [name]
        }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        var forms = [name]
        if labels.count > 1 {
            for start in 1..<labels.count {
                forms.append("*." + labels[start...].joined(separator: "."))
            }
        }
        return forms
    }
}

extension UInt8 {
    fileprivate var isASCIIHexDigit: Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(self)
            || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(self)
    }
}

/// Punycode encoding, RFC 3492 §6.3, with the parameters of §5.
enum Punycode {
    private static let base = 36
    private static let tMin = 1
    private static let tMax = 26
    private static let skew = 38
    private static let damp = 700
    private static let initialBias = 72
    private static let initialN = 128

    static func encode(_ input: String) -> String {
        let codePoints = input.unicodeScalars.map { Int($0.value) }
        var output = codePoints.filter { $0 < 0x80 }.map { Character(Unicode.Scalar(UInt8($0))) }
        let basicCount = output.count
        var handled = basicCount
        if basicCount > 0 {
            output.append("-")
        }

        var n = self.initialN
        var delta = 0
        var bias = self.initialBias
        while handled < codePoints.count {
            let m = codePoints.filter { $0 >= n }.min()!
            delta += (m - n) * (handled + 1)
            n = m
            for c in codePoints {
                if c < n {
                    delta += 1
                }
                if c == n {
                    var q = delta
                    var k = self.base
                    while true {
                        let t = k <= bias ? self.tMin : (k >= bias + self.tMax ? self.tMax : k - bias)
                        if q < t {
                            break
                        }
                        output.append(self.digit(t + (q - t) % (self.base - t)))
                        q = (q - t) / (self.base - t)
                        k += self.base
                    }
                    output.append(self.digit(q))
                    bias = self.adapt(delta: delta, points: handled + 1, first: handled == basicCount)
                    delta = 0
                    handled += 1
                }
            }
            delta += 1
            n += 1
        }
        return String(output)
    }

    private static func digit(_ value: Int) -> Character {
        // 0..25 -> a..z, 26..35 -> 0..9
        let scalar = value < 26 ? 0x61 + value : 0x30 + value - 26
        return Character(Unicode.Scalar(UInt8(scalar)))
    }

    private static func adapt(delta: Int, points: Int, first: Bool) -> Int {
        var delta = first ? delta / self.damp : delta / 2
        delta += delta / points
        var k = 0
        while delta > ((self.base - self.tMin) * self.tMax) / 2 {
            delta /= self.base - self.tMin
            k += self.base
        }
        return k + (self.base - self.tMin + 1) * delta / (delta + self.skew)
    }
}
