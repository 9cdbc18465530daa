/// The type of an option, as `--options` names it and as values are checked against it.
public enum OptionKind: Sendable, Hashable {
    case bool
    case int
    case optionalInt
    /// A number that may have a fraction (seconds).
    case number
    case string
    case optionalString
    /// One of a fixed set of strings.
    case choice([String])
    /// A list of strings: `--set` may be given once per item; a config file gives a YAML list.
    case sequence

    /// The type as `--options` prints it (mitmproxy's wording: `bool`, `optional str`, …).
    public var typeName: String {
        switch self {
        case .bool: "bool"
        case .int: "int"
        case .optionalInt: "optional int"
        case .number: "float"
        case .string: "str"
        case .optionalString: "optional str"
        case .choice(let choices): "str, one of " + choices.joined(separator: ", ")
        case .sequence: "sequence of str"
        }
    }
}

/// An option's value, before it is checked and stored: what a config file, a flag or `--set` gives.
public enum OptionValue: Sendable, Hashable {
    case bool(Bool)
    case int(Int)
    case number(Double)
    case string(String)
    case list([String])
    /// No value: `null` in YAML, an empty `--set name=` for an optional option.
    case none
}

/// Why a value was refused: what was expected. The caller adds the option's name and the value.
public struct OptionValueError: Error, Sendable, CustomStringConvertible {
    public var expected: String
    public init(_ expected: String) { self.expected = expected }
    public var description: String { expected }
}

/// One option: its name (mitmproxy's), type, help text, and how it is read from and stored into
/// ``Options``. Options mitmproxy has that this build does not implement are still defined (so a
/// mitmproxy config file loads), with `isImplemented` false: setting one to a non-default value is
/// reported at start.
public struct OptionDefinition: @unchecked Sendable {
    public let name: String
    public let kind: OptionKind
    public let help: String
    public let isImplemented: Bool
    let read: (Options) -> OptionValue
    let write: (inout Options, OptionValue) throws -> Void

    // `@unchecked`: the closures capture only key paths and constants, which are never mutated.
    init(
        name: String,
        kind: OptionKind,
        help: String,
        isImplemented: Bool = true,
        read: @escaping (Options) -> OptionValue,
        write: @escaping (inout Options, OptionValue) throws -> Void
    ) {
        self.name = name
        self.kind = kind
        self.help = help
        self.isImplemented = isImplemented
        self.read = read
        self.write = write
    }

    /// The option's value in `options`.
    public func value(in options: Options) -> OptionValue { read(options) }

    /// Checks `value` against the option's type and stores it, or throws ``OptionValueError``.
    public func store(_ value: OptionValue, in options: inout Options) throws {
        try write(&options, try conformed(value))
    }

    /// `value` checked against the type: ints where ints are expected, and so on.
    func conformed(_ value: OptionValue) throws -> OptionValue {
        switch (kind, value) {
        case (.bool, .bool), (.int, .int), (.optionalInt, .int), (.optionalInt, .none),
            (.string, .string), (.optionalString, .string), (.optionalString, .none), (.sequence, .list):
            return value
        case (.sequence, .none):
            return .list([])
        case (.number, .number):
            return value
        case (.number, .int(let number)):
            return .number(Double(number))
        case (.choice(let choices), .string(let text)):
            guard choices.contains(text) else {
                throw OptionValueError("expected one of " + choices.joined(separator: ", "))
            }
            return value
        case (.bool, _): throw OptionValueError("expected true or false")
        case (.int, _): throw OptionValueError("expected an integer")
        case (.optionalInt, _): throw OptionValueError("expected an integer or nothing")
        case (.number, _): throw OptionValueError("expected a number")
        case (.string, _): throw OptionValueError("expected a string")
        case (.optionalString, _): throw OptionValueError("expected a string or nothing")
        case (.choice(let choices), _): throw OptionValueError("expected one of " + choices.joined(separator: ", "))
        case (.sequence, _): throw OptionValueError("expected a list of strings")
        }
    }

    /// The value for command-line text (`--set name=value`, a classic config file's `name = value`),
    /// as mitmproxy reads it: `nil` (no `=value`) sets a bool to true and an optional to nothing;
    /// `toggle` flips a bool. A sequence takes one item per `--set`; see ``Options/set(_:texts:)``.
    public func parse(text: String?, current: Options) throws -> OptionValue {
        switch kind {
        case .bool:
            switch text?.lowercased() {
            case nil, "true": return .bool(true)
            case "false": return .bool(false)
            case "toggle":
                if case .bool(let now) = read(current) { return .bool(!now) }
                return .bool(true)
            default: throw OptionValueError("expected true, false or toggle")
            }
        case .int, .optionalInt:
            guard let text, !text.isEmpty else {
                if kind == .optionalInt { return .none }
                throw OptionValueError("expected an integer")
            }
            guard let number = Int(text) else {
                throw OptionValueError(kind == .int ? "expected an integer" : "expected an integer or nothing")
            }
            return .int(number)
        case .number:
            guard let text, let number = Double(text), number.isFinite else { throw OptionValueError("expected a number") }
            return .number(number)
        case .string, .choice:
            guard let text else { throw OptionValueError("expected a value: --set \(name)=VALUE") }
            return .string(text)
        case .optionalString:
            guard let text, !text.isEmpty else { return .none }
            return .string(text)
        case .sequence:
            return .list(text.map { [$0] } ?? [])
        }
    }

    /// The value as `--options` and config.yaml write it.
    public func yaml(_ value: OptionValue) -> String {
        switch value {
        case .bool(let flag): return flag ? "true" : "false"
        case .int(let number): return String(number)
        case .number(let number): return number == number.rounded() ? String(Int(number)) : String(number)
        case .none: return ""
        case .string(let text): return YAMLText.scalar(text)
        case .list(let items):
            if items.isEmpty { return "[]" }
            return items.map { "\n- " + YAMLText.scalar($0) }.joined()
        }
    }
}

/// Quoting strings for YAML output.
enum YAMLText {
    static func scalar(_ text: String) -> String {
        let plain = !text.isEmpty
            && text.allSatisfy { $0.isLetter || $0.isNumber || "._/-~@+=,".contains($0) }
            && !["true", "false", "null", "yes", "no", "on", "off", "~"].contains(text.lowercased())
            && Int(text) == nil && Double(text) == nil
            && !text.hasPrefix("-") && !text.hasPrefix("@")
        if plain { return text }
        return "'" + text.replacingOccurrences(of: "'", with: "''") + "'"
    }
}
