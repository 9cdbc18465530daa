import NIOHTTP1

extension HTTPHeaders {
    /// Whether any `name` field lists `token` (case-insensitive), as in `Connection: keep-alive, close`.
    /// Cheaper than `self[canonicalForm:]`, which splits every value into new strings: this runs on
    /// every proxied message.
    func hasToken(_ token: StaticString, in name: StaticString) -> Bool {
        let name = name.description
        let token = token.description
        for field in self where field.name.utf8.count == name.utf8.count && field.name.lowercased() == name {
            for part in field.value.utf8.split(separator: UInt8(ascii: ",")) {
                let trimmed = part.drop(while: { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") })
                    .reversed().drop(while: { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }).reversed()
                if trimmed.count == token.utf8.count
                    && zip(trimmed, token.utf8).allSatisfy({ $0 | 0x20 == $1 | 0x20 })
                {
                    return true
                }
            }
        }
        return false
    }
}

extension HTTPVersion {
    /// `HTTP/1.1` and friends, without string interpolation for the common versions.
    var mitmproxyString: String {
        switch (major, minor) {
        case (1, 1): "HTTP/1.1"
        case (1, 0): "HTTP/1.0"
        case (2, 0): "HTTP/2.0"
        default: "HTTP/\(major).\(minor)"
        }
    }
}
