/// tnetstrings ("typed netstrings"), the container format of mitmproxy's flow files.
///
/// Each value is `LENGTH:PAYLOAD TAG`: a decimal byte count, a colon, that many payload bytes and a
/// one-byte type tag: `,` bytes, `;` UTF-8 text, `#` integer, `^` float, `!` boolean (`true`/`false`),
/// `~` null (empty payload), `]` list (concatenated values), `}` dictionary (alternating key and value).
///
/// Dictionary keys are kept as text in file order: mitmproxy 0.11 to 0.17 wrote them as bytes, later
/// versions as text, and mitmproxy itself treats both alike (see `FlowState`).
public enum TNetValue: Sendable, Hashable {
    case bytes([UInt8])
    case string(String)
    case int(Int)
    case float(Double)
    case bool(Bool)
    case null
    case list([TNetValue])
    case dict(TNetDict)
}

/// A tnetstring dictionary: text keys in insertion order. Setting an existing key keeps its place.
public struct TNetDict: Sendable, Hashable, ExpressibleByDictionaryLiteral {
    public private(set) var keys: [String] = []
    private var values: [String: TNetValue] = [:]

    public init() {}

    public init(dictionaryLiteral elements: (String, TNetValue)...) {
        for (key, value) in elements { self[key] = value }
    }

    public subscript(key: String) -> TNetValue? {
        get { values[key] }
        set {
            if let newValue {
                if values.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if values.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    public var count: Int { keys.count }

    /// Key/value pairs in order.
    public var entries: [(key: String, value: TNetValue)] { keys.map { ($0, values[$0]!) } }

    public static func == (lhs: TNetDict, rhs: TNetDict) -> Bool {
        lhs.values == rhs.values  // order does not matter for equality, as for Python dicts
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(values) }
}

/// Why tnetstring data could not be parsed: the absolute byte offset and what was expected there.
public struct TNetStringError: Error, Sendable, Hashable, CustomStringConvertible {
    public var offset: Int
    public var expected: String

    public init(offset: Int, expected: String) {
        self.offset = offset
        self.expected = expected
    }

    public var description: String { "invalid tnetstring at byte \(offset): expected \(expected)" }
}

// MARK: - Serializer

extension TNetValue {
    /// The tnetstring encoding of the value.
    public func serialized() -> [UInt8] {
        var out: [UInt8] = []
        serialize(into: &out)
        return out
    }

    /// Appends the tnetstring encoding of the value to `out`.
    public func serialize(into out: inout [UInt8]) {
        switch self {
        case .bytes(let b): Self.frame(b, tag: ",", into: &out)
        case .string(let s): Self.frame(Array(s.utf8), tag: ";", into: &out)
        case .int(let i): Self.frame(Array(String(i).utf8), tag: "#", into: &out)
        case .float(let d): Self.frame(Array(Self.pythonRepr(d).utf8), tag: "^", into: &out)
        case .bool(let b): Self.frame(Array((b ? "true" : "false").utf8), tag: "!", into: &out)
        case .null: out.append(contentsOf: Array("0:~".utf8))
        case .list(let items):
            var payload: [UInt8] = []
            for item in items { item.serialize(into: &payload) }
            Self.frame(payload, tag: "]", into: &out)
        case .dict(let d):
            var payload: [UInt8] = []
            for (key, value) in d.entries {
                TNetValue.string(key).serialize(into: &payload)
                value.serialize(into: &payload)
            }
            Self.frame(payload, tag: "}", into: &out)
        }
    }

    private static func frame(_ payload: [UInt8], tag: Unicode.Scalar, into out: inout [UInt8]) {
        out.append(contentsOf: Array(String(payload.count).utf8))
        out.append(UInt8(ascii: ":"))
        out.append(contentsOf: payload)
        out.append(UInt8(ascii: tag))
    }

    /// A float as Python's `repr` writes it (shortest round-tripping form, `inf`, `nan`).
    private static func pythonRepr(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d < 0 ? "-inf" : "inf" }
        return d.description
    }
}

// MARK: - Parser

/// An incremental tnetstring parser: feed it bytes as they arrive with `append`, take complete
/// top-level values with `next()`.
///
/// A length prefix is checked against `maximumLength` before anything is buffered for it, and a
/// nested length against the bytes its container actually holds, so no allocation is ever sized
/// by an untrusted number. Consumed bytes are dropped, so memory stays bounded by the largest value.
public struct TNetParser: Sendable {
    /// The largest payload accepted for one top-level value.
    public var maximumLength: Int
    /// The deepest nesting of lists and dictionaries accepted.
    public var maximumDepth: Int

    private var buffer: [UInt8] = []
    private var start = 0
    /// Absolute offset (in the whole stream) of `buffer[0]`.
    private var base = 0

    public init(maximumLength: Int = 512 * 1024 * 1024, maximumDepth: Int = 64) {
        self.maximumLength = maximumLength
        self.maximumDepth = maximumDepth
    }

    /// The stream offset of the next unconsumed byte.
    public var offset: Int { base + start }

    /// How many bytes the parser holds (consumed ones not yet dropped included).
    public var bufferedByteCount: Int { buffer.count }

    /// The buffered bytes not yet consumed.
    public var pendingBytes: ArraySlice<UInt8> { buffer[start...] }

    /// Whether bytes are buffered that do not yet form a complete value.
    public var hasPendingBytes: Bool { start < buffer.count }

    public mutating func append<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        if start > 0 && start >= buffer.count / 2 {
            buffer.removeFirst(start)
            base += start
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next complete top-level value, or `nil` when more bytes are needed.
    public mutating func next() throws(TNetStringError) -> TNetValue? {
        guard start < buffer.count else { return nil }
        let (start, base, maximumLength, maximumDepth) = (self.start, self.base, self.maximumLength, self.maximumDepth)
        let result = try buffer.withUnsafeBufferPointer { (raw) throws(TNetStringError) -> (TNetValue, Int)? in
            guard let (length, payloadStart) = try Self.lengthPrefix(raw, from: start, end: raw.count, base: base, maximum: maximumLength)
            else { return nil }
            let end = payloadStart + length  // index of the tag
            guard end < raw.count else { return nil }
            return (try Self.parsePayload(raw, payloadStart, end, tag: raw[end], base: base, depth: 0, maxDepth: maximumDepth), end + 1)
        }
        guard let (value, next) = result else { return nil }
        self.start = next
        return value
    }

    /// Parses exactly one complete value from `bytes` (trailing bytes are an error).
    public static func parse(_ bytes: [UInt8], maximumLength: Int = .max) throws(TNetStringError) -> TNetValue {
        var parser = TNetParser(maximumLength: maximumLength)
        parser.append(bytes)
        guard let value = try parser.next() else {
            throw TNetStringError(offset: bytes.count, expected: "more data (value is truncated)")
        }
        guard !parser.hasPendingBytes else {
            throw TNetStringError(offset: parser.offset, expected: "end of data")
        }
        return value
    }

    /// Reads `DIGITS:` at `from`. `nil` when the prefix is incomplete and could still become valid.
    private static func lengthPrefix(
        _ bytes: UnsafeBufferPointer<UInt8>, from: Int, end: Int, base: Int, maximum: Int
    ) throws(TNetStringError) -> (Int, Int)? {
        var i = from
        var length = 0
        while i < end {
            let c = bytes[i]
            if c == UInt8(ascii: ":") {
                guard i > from else { throw TNetStringError(offset: base + i, expected: "a decimal length prefix") }
                return (length, i + 1)
            }
            guard c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"), i - from < 12 else {
                throw TNetStringError(offset: base + i, expected: i - from >= 12 ? "':' after at most 12 length digits" : "a digit or ':' in the length prefix")
            }
            length = length * 10 + Int(c - UInt8(ascii: "0"))
            guard length <= maximum else {
                throw TNetStringError(offset: base + from, expected: "a length of at most \(maximum) bytes")
            }
            i += 1
        }
        return nil
    }

    private static func parsePayload(
        _ raw: UnsafeBufferPointer<UInt8>, _ from: Int, _ to: Int, tag: UInt8, base: Int, depth: Int, maxDepth: Int
    ) throws(TNetStringError) -> TNetValue {
        let payload = UnsafeBufferPointer(rebasing: raw[from..<to])
        func text(_ what: String) throws(TNetStringError) -> String {
            guard let s = String(validating: payload, as: UTF8.self) else {
                throw TNetStringError(offset: base + from, expected: what)
            }
            return s
        }
        switch tag {
        case UInt8(ascii: ","): return .bytes(Array(payload))
        case UInt8(ascii: ";"): return .string(try text("UTF-8 text"))
        case UInt8(ascii: "#"):
            guard let i = Int(try text("an integer literal")) else {
                throw TNetStringError(offset: base + from, expected: "an integer literal")
            }
            return .int(i)
        case UInt8(ascii: "^"):
            guard let d = Double(try text("a float literal")) else {
                throw TNetStringError(offset: base + from, expected: "a float literal")
            }
            return .float(d)
        case UInt8(ascii: "!"):
            switch Array(payload) {
            case Array("true".utf8): return .bool(true)
            case Array("false".utf8): return .bool(false)
            default: throw TNetStringError(offset: base + from, expected: "'true' or 'false'")
            }
        case UInt8(ascii: "~"):
            guard payload.isEmpty else { throw TNetStringError(offset: base + from, expected: "an empty null payload") }
            return .null
        case UInt8(ascii: "]"), UInt8(ascii: "}"):
            guard depth < maxDepth else {
                throw TNetStringError(offset: base + from, expected: "nesting of at most \(maxDepth) levels")
            }
            var items: [TNetValue] = []
            var i = from
            while i < to {
                guard let (length, payloadStart) = try lengthPrefix(raw, from: i, end: to, base: base, maximum: to - i) else {
                    throw TNetStringError(offset: base + i, expected: "a complete nested value")
                }
                let end = payloadStart + length
                guard end < to else { throw TNetStringError(offset: base + i, expected: "a nested value within its container") }
                items.append(try parsePayload(raw, payloadStart, end, tag: raw[end], base: base, depth: depth + 1, maxDepth: maxDepth))
                i = end + 1
            }
            if tag == UInt8(ascii: "]") { return .list(items) }
            guard items.count % 2 == 0 else { throw TNetStringError(offset: base + to, expected: "a value for every dictionary key") }
            var dict = TNetDict()
            var k = 0
            while k < items.count {
                switch items[k] {
                case .string(let s): dict[s] = items[k + 1]
                case .bytes(let b): dict[String(decoding: b, as: UTF8.self)] = items[k + 1]
                default: throw TNetStringError(offset: base + from, expected: "text or bytes dictionary keys")
                }
                k += 2
            }
            return .dict(dict)
        default:
            throw TNetStringError(offset: base + to, expected: "a type tag (one of , ; # ^ ! ~ ] })")
        }
    }
}
