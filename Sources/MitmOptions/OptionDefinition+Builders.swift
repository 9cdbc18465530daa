import MitmAddons
import MitmCore

/// Definitions bound to a stored property of ``Options``, one per option type.
extension OptionDefinition {
    static func bool(_ name: String, _ path: WritableKeyPath<Options, Bool>, _ help: String) -> OptionDefinition {
        OptionDefinition(
            name: name, kind: .bool, help: help,
            read: { .bool($0[keyPath: path]) },
            write: { options, value in if case .bool(let flag) = value { options[keyPath: path] = flag } }
        )
    }

    static func int(
        _ name: String, _ path: WritableKeyPath<Options, Int>, range: ClosedRange<Int>, _ help: String
    ) -> OptionDefinition {
        OptionDefinition(
            name: name, kind: .int, help: help,
            read: { .int($0[keyPath: path]) },
            write: { options, value in
                guard case .int(let number) = value else { return }
                guard range.contains(number) else { throw OptionValueError(range.expectation) }
                options[keyPath: path] = number
            }
        )
    }

    static func optionalInt(
        _ name: String, _ path: WritableKeyPath<Options, Int?>, range: ClosedRange<Int>, _ help: String
    ) -> OptionDefinition {
        OptionDefinition(
            name: name, kind: .optionalInt, help: help,
            read: { $0[keyPath: path].map { .int($0) } ?? .none },
            write: { options, value in
                guard case .int(let number) = value else {
                    options[keyPath: path] = nil
                    return
                }
                guard range.contains(number) else { throw OptionValueError(range.expectation) }
                options[keyPath: path] = number
            }
        )
    }

    /// Seconds, more than zero.
    static func seconds(_ name: String, _ path: WritableKeyPath<Options, Double>, _ help: String) -> OptionDefinition {
        OptionDefinition(
            name: name, kind: .number, help: help,
            read: { .number($0[keyPath: path]) },
            write: { options, value in
                guard case .number(let number) = value else { return }
                guard number > 0 else { throw OptionValueError("expected a positive number of seconds") }
                options[keyPath: path] = number
            }
        )
    }

    static func string(
        _ name: String, _ path: WritableKeyPath<Options, String>, _ help: String,
        check: @escaping (String) throws -> Void = { _ in }
    ) -> OptionDefinition {
        OptionDefinition(
            name: name, kind: .string, help: help,
            read: { .string($0[keyPath: path]) },
            write: { options, value in
                guard case .string(let text) = value else { return }
                try check(text)
                options[keyPath: path] = text
            }
        )
    }

    static func optionalString(
        _ name: String, _ path: WritableKeyPath<Options, String?>, _ help: String,
        check: @escaping (String) throws -> Void = { _ in }
    ) -> OptionDefinition {
        OptionDefinition(
            name: name, kind: .optionalString, help: help,
            read: { $0[keyPath: path].map { .string($0) } ?? .none },
            write: { options, value in
                guard case .string(let text) = value else {
                    options[keyPath: path] = nil
                    return
                }
                try check(text)
                options[keyPath: path] = text
            }
        )
    }

    static func choice(
        _ name: String, _ path: WritableKeyPath<Options, String>, _ choices: [String], _ help: String
    ) -> OptionDefinition {
        OptionDefinition(
            name: name, kind: .choice(choices), help: help,
            read: { .string($0[keyPath: path]) },
            write: { options, value in if case .string(let text) = value { options[keyPath: path] = text } }
        )
    }

    /// A list; `check` sees each item.
    static func sequence(
        _ name: String, _ path: WritableKeyPath<Options, [String]>, _ help: String,
        check: @escaping (String) throws -> Void = { _ in }
    ) -> OptionDefinition {
        OptionDefinition(
            name: name, kind: .sequence, help: help,
            read: { .list($0[keyPath: path]) },
            write: { options, value in
                guard case .list(let items) = value else { return }
                for item in items {
                    do { try check(item) } catch {
                        throw OptionValueError(items.count > 1 ? "'\(item)': \(error)" : "\(error)")
                    }
                }
                options[keyPath: path] = items
            }
        )
    }

    /// A size (`1024`, `10k`, `5m`, `1g`) kept as a byte count; mitmproxy types these `optional str`.
    static func size(_ name: String, _ path: WritableKeyPath<Options, Int?>, _ help: String) -> OptionDefinition {
        OptionDefinition(
            name: name, kind: .optionalString, help: help,
            read: { $0[keyPath: path].map { .string(formatSize($0)) } ?? .none },
            write: { options, value in
                switch value {
                case .string(let text) where !text.isEmpty && text.lowercased() != "none":
                    guard let size = parseSize(text) else {
                        throw OptionValueError("expected a size such as 1024, 10k, 5m or 1g")
                    }
                    options[keyPath: path] = size
                default:
                    options[keyPath: path] = nil
                }
            }
        )
    }

    /// An option mitmproxy has that this build does not implement: any value of the right type is
    /// accepted (so mitmproxy's config files load), and remembered so the front end can say it
    /// has no effect.
    static func notImplemented(_ name: String, _ kind: OptionKind, default defaultValue: OptionValue, _ help: String) -> OptionDefinition {
        OptionDefinition(
            name: name, kind: kind, help: help + " Not implemented by this build: accepted and ignored.",
            isImplemented: false,
            read: { $0.notImplemented[name] ?? defaultValue },
            write: { options, value in
                options.notImplemented[name] = value == defaultValue ? nil : value
            }
        )
    }
}

extension ClosedRange<Int> {
    var expectation: String {
        if upperBound == .max { return "expected an integer of at least \(lowerBound)" }
        return "expected an integer from \(lowerBound) to \(upperBound)"
    }
}

/// A byte count in the shortest exact form `parseSize` reads back: `16m`, `1536k`, `100`.
func formatSize(_ size: Int) -> String {
    for (suffix, unit) in [("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)] where size >= unit && size % unit == 0 {
        return "\(size / unit)\(suffix)"
    }
    return String(size)
}

/// Checks a filter expression as the option is set, so a typo fails at start with its position.
func checkFilter(_ expression: String) throws {
    do {
        _ = try FlowFilter(expression)
    } catch {
        throw OptionValueError("invalid filter expression: \(error)")
    }
}
