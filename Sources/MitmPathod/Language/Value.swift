import MitmCore

/// A VALUE of the pathod language: the bytes of a method, path, header, body or injection.
///
/// Values are kept as written, so a spec prints back the way it was given (``spec``); the bytes
/// themselves come from ``source(settings:)`` and are read lazily, so `@1g` never sits in memory.
public enum SpecValue: Hashable, Sendable {
    /// A quoted (`'…'` or `"…"`) literal, escapes already decoded.
    case literal([UInt8])
    /// An unquoted literal where the grammar allows one (paths, bodies, reasons), escapes decoded.
    case naked([UInt8])
    /// `@SIZE[UNIT][,TYPE]`: `count` units of random data of one type.
    case generated(count: UInt64, unit: SizeUnit, type: DataType)
    /// `<path`: a file under the static directory, read when rendered.
    case file(String)

    /// The number of bytes a generated value stands for (`count × unit`), or nil for other values.
    public var generatedSize: UInt64? {
        if case .generated(let count, let unit, _) = self { return count * unit.multiplier }
        return nil
    }

    /// The value as the language writes it; parsing it gives the same value back.
    public var spec: String {
        switch self {
        case .literal(let bytes):
            return "'" + Escaping.escape(bytes, quote: true) + "'"
        case .naked(let bytes):
            let escaped = Escaping.escape(bytes, quote: true)
            return Escaping.isValidNaked(escaped) ? escaped : "'" + escaped + "'"
        case .generated(let count, let unit, let type):
            var text = "@\(count)"
            if unit != .bytes { text += unit.rawValue }
            if type != .bytes { text += "," + type.rawValue }
            return text
        case .file(let path):
            return "<'" + Escaping.escape(Array(path.utf8), quote: true) + "'"
        }
    }

    /// The bytes of a literal value; nil for generated and file values.
    public var literalBytes: [UInt8]? {
        switch self {
        case .literal(let bytes), .naked(let bytes): return bytes
        case .generated, .file: return nil
        }
    }

    /// A lazy source of this value's bytes. Generated values draw fresh random data; file values
    /// are opened under `settings.staticDirectory`, and refused outside it.
    public func source(settings: RenderSettings) throws -> any ByteSource {
        switch self {
        case .literal(let bytes), .naked(let bytes):
            return LiteralSource(bytes)
        case .generated(let count, let unit, let type):
            return RandomSource(type: type, length: count * unit.multiplier)
        case .file(let path):
            return try FileSource(path: path, staticDirectory: settings.staticDirectory)
        }
    }
}

/// The size suffixes of a generated value.
public enum SizeUnit: String, CaseIterable, Hashable, Sendable {
    case bytes = "b", kilobytes = "k", megabytes = "m", gigabytes = "g", terabytes = "t"

    public var multiplier: UInt64 {
        switch self {
        case .bytes: return 1
        case .kilobytes: return 1 << 10
        case .megabytes: return 1 << 20
        case .gigabytes: return 1 << 30
        case .terabytes: return 1 << 40
        }
    }
}

/// The alphabets generated data is drawn from, as in Python's `string` module.
public enum DataType: String, CaseIterable, Hashable, Sendable {
    case ascii, asciiLetters = "ascii_letters", asciiLowercase = "ascii_lowercase",
        asciiUppercase = "ascii_uppercase", bytes, digits, hexdigits, octdigits, punctuation, whitespace

    /// The bytes this type draws from.
    public var alphabet: [UInt8] {
        func range(_ from: Character, _ to: Character) -> [UInt8] {
            Array(from.asciiValue!...to.asciiValue!)
        }
        switch self {
        case .ascii: return Array(0...127)
        case .asciiLetters: return range("a", "z") + range("A", "Z")
        case .asciiLowercase: return range("a", "z")
        case .asciiUppercase: return range("A", "Z")
        case .bytes: return Array(0...255)
        case .digits: return range("0", "9")
        case .hexdigits: return range("0", "9") + range("a", "f") + range("A", "F")
        case .octdigits: return range("0", "7")
        case .punctuation: return Array("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ ".utf8)
        case .whitespace: return Array("\t\n\u{0B}\u{0C}\r ".utf8)
        }
    }
}

/// Python-style backslash escapes, the way pathod reads and writes literals.
public enum Escaping {
    /// Decodes `\\ \' \" \a \b \f \n \r \t \v \xHH \ooo` and a backslash-newline (dropped); any other
    /// backslash stays as written. Returns the offset (into `text`) of a malformed `\x` escape as an error.
    public static func unescape(_ text: ArraySlice<UInt8>) -> Result<[UInt8], EscapeError> {
        do {
            return .success(try PythonEscapes.decode(text))
        } catch {
            switch error.kind {
            case .badHex:
                return .failure(EscapeError(offset: text.startIndex + error.offset))
            case .trailingBackslash:
                // A lone backslash at the end stays as written.
                return unescape(text.dropLast()).map { $0 + [UInt8(ascii: "\\")] }
            }
        }
    }

    /// A malformed `\x` escape at `offset`.
    public struct EscapeError: Error, Sendable {
        public var offset: Int
    }

    /// Escapes `bytes` so ``unescape(_:)`` gives them back: printable ASCII stays, except that a backslash
    /// doubles and (with `quote`) both quote characters become `\x27`/`\x22`; `\t \n \r` keep their short
    /// forms and every other byte becomes `\xHH`.
    public static func escape(_ bytes: [UInt8], quote: Bool) -> String {
        var out = ""
        out.reserveCapacity(bytes.count)
        for byte in bytes {
            switch byte {
            case 0x5C: out += "\\\\"
            case 0x09: out += "\\t"
            case 0x0A: out += "\\n"
            case 0x0D: out += "\\r"
            case 0x27 where quote: out += "\\x27"
            case 0x22 where quote: out += "\\x22"
            case 0x20...0x7E: out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = String(byte, radix: 16)
                out += "\\x" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return out
    }

    /// Whether `text` can be written as a naked (unquoted) literal.
    static func isValidNaked(_ text: String) -> Bool {
        guard let first = text.utf8.first, first != UInt8(ascii: "@"), first != UInt8(ascii: "<") else { return false }
        return text.utf8.allSatisfy(isNakedByte)
    }

    static func isNakedByte(_ byte: UInt8) -> Bool {
        (0x21...0x7E).contains(byte) && !",:@'\"".utf8.contains(byte)
    }
}
