/// `application/x-www-form-urlencoded` text, and URL queries, read as Python's
/// `parse_qsl(keep_blank_values=True)` reads them (and so mitmproxy): `&`-separated pairs, `+` as a
/// space, `%XX` decoded, a name without `=` having an empty value.
public enum FormURLEncoded {
    /// The name/value pairs of `text`, in order.
    public static func decode<Text: StringProtocol>(_ text: Text) -> [(String, String)] {
        text.split(separator: "&").map { pair in
            let pieces = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (percentDecode(pieces[0]), pieces.count == 2 ? percentDecode(pieces[1]) : "")
        }
    }

    /// The query items of a request path (`/p?a=1&b` gives `a=1`, `b=`); a fragment is dropped.
    public static func queryItems(ofPath path: String) -> [(String, String)] {
        guard let question = path.firstIndex(of: "?") else { return [] }
        var query = path[path.index(after: question)...]
        if let hash = query.firstIndex(of: "#") { query = query[..<hash] }
        return decode(query)
    }

    /// `text` with `+` as a space and `%XX` escapes decoded; a `%` not followed by two hex digits
    /// stays as it is, and bytes that are not UTF-8 become U+FFFD.
    public static func percentDecode<Text: StringProtocol>(_ text: Text) -> String {
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "+") {
                out.append(UInt8(ascii: " "))
            } else if byte == UInt8(ascii: "%"), index + 2 < bytes.count,
                let high = bytes[index + 1].asciiHexValue, let low = bytes[index + 2].asciiHexValue
            {
                out.append(high << 4 | low)
                index += 2
            } else {
                out.append(byte)
            }
            index += 1
        }
        return String(decoding: out, as: UTF8.self)
    }
}
