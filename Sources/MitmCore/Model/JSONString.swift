import Foundation

/// JSON string literals written the way Python's `json.dumps` writes them, so our HAR files and
/// the dumper's JSON view match mitmproxy's byte for byte.
public enum JSONString {
    /// `string` in double quotes with `"`, `\` and control characters escaped (`\n`, `\r`, `\t`,
    /// `\b`, `\f` by name, the others as `\u00XX`). With `asciiOnly` (Python's `ensure_ascii`,
    /// its default) every non-ASCII scalar is escaped as well, beyond the BMP as a surrogate pair.
    public static func quoted(_ string: String, asciiOnly: Bool) -> String {
        var out = "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if scalar.value < 0x20 || (asciiOnly && scalar.value > 0x7F) {
                    if scalar.value > 0xFFFF {
                        let v = scalar.value - 0x10000
                        out += String(format: "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF))
                    } else {
                        out += String(format: "\\u%04x", scalar.value)
                    }
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
