/// Python's backslash escapes (`codecs.escape_decode`), as mitmproxy reads the subjects and values
/// of its modify specs and pathod reads the literals of its language: `\\ \' \" \a \b \f \n \r \t
/// \v`, `\xHH`, up to three octal digits, and a backslash-newline (dropped). Any other backslash
/// stays as written, so regex escapes such as `\d` or `\g<1>` pass through.
public enum PythonEscapes {
    public struct DecodeError: Error, Sendable, Hashable {
        public enum Kind: Sendable, Hashable {
            /// `\x` not followed by two hex digits.
            case badHex
            /// A lone backslash at the very end.
            case trailingBackslash
        }

        public var kind: Kind
        /// Where the offending backslash is, counted from the start of the text.
        public var offset: Int
    }

    public static func decode(_ text: some Collection<UInt8>) throws(DecodeError) -> [UInt8] {
        let bytes = Array(text)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            guard byte == UInt8(ascii: "\\") else {
                out.append(byte)
                index += 1
                continue
            }
            guard index + 1 < bytes.count else { throw DecodeError(kind: .trailingBackslash, offset: index) }
            let next = bytes[index + 1]
            switch next {
            case UInt8(ascii: "\\"), UInt8(ascii: "'"), UInt8(ascii: "\""): out.append(next)
            case UInt8(ascii: "a"): out.append(0x07)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "v"): out.append(0x0B)
            case UInt8(ascii: "\n"): break
            case UInt8(ascii: "x"):
                guard index + 3 < bytes.count, let high = bytes[index + 2].asciiHexValue, let low = bytes[index + 3].asciiHexValue else {
                    throw DecodeError(kind: .badHex, offset: index)
                }
                out.append(high << 4 | low)
                index += 4
                continue
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                var value = 0
                var end = index + 1
                while end < index + 4, end < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "7")).contains(bytes[end]) {
                    value = value * 8 + Int(bytes[end] - UInt8(ascii: "0"))
                    end += 1
                }
                out.append(UInt8(truncatingIfNeeded: value))
                index = end
                continue
            default:
                out.append(byte)
                out.append(next)
            }
            index += 2
        }
        return out
    }
}
