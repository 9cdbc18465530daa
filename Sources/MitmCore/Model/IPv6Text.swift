/// IPv6 addresses as text.
public enum IPv6Text {
    /// RFC 5952 text of 16 address bytes: lower-case hex without leading zeros, the first longest
    /// run of two or more zero groups as `::` (as Python's `ipaddress` and `inet_ntop` write it,
    /// IPv4-mapped addresses aside, which callers treat as they need). Empty for other lengths.
    public static func compressed(_ bytes: [UInt8]) -> String {
        guard bytes.count == 16 else { return "" }
        let groups = (0..<8).map { Int(bytes[2 * $0]) << 8 | Int(bytes[2 * $0 + 1]) }
        var bestStart = -1
        var bestLength = 0
        var index = 0
        while index < 8 {
            guard groups[index] == 0 else {
                index += 1
                continue
            }
            var end = index
            while end < 8, groups[end] == 0 { end += 1 }
            if end - index > bestLength {
                bestStart = index
                bestLength = end - index
            }
            index = end
        }
        let hex = groups.map { String($0, radix: 16) }
        guard bestLength > 1 else { return hex.joined(separator: ":") }
        let head = hex[0..<bestStart].joined(separator: ":")
        let tail = hex[(bestStart + bestLength)...].joined(separator: ":")
        return "\(head)::\(tail)"
    }
}
