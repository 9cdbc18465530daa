/// A spec the language refuses: where (a character position, 0-based) and what was expected there.
///
/// `description` is one line for logs and 800 responses; ``marked`` adds the spec and a caret under
/// the position, the way pathoc prints a bad spec before exiting.
public struct SpecParseError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The whole spec as given.
    public var spec: String
    /// The character position of the problem.
    public var position: Int
    /// What the parser wanted at `position`, or nil when the problem is not a missing token
    /// (a repeated clause, a number out of range).
    public var expected: String?
    /// What was wrong, when `expected` alone does not say it.
    public var reason: String?

    public init(spec: String, position: Int, expected: String? = nil, reason: String? = nil) {
        self.spec = spec
        self.position = position
        self.expected = expected
        self.reason = reason
    }

    /// What sits at `position`, quoted, or "end of spec".
    public var found: String {
        let scalars = Array(spec.unicodeScalars)
        guard position < scalars.count else { return "end of spec" }
        let shown = String(String.UnicodeScalarView(scalars[position..<min(scalars.count, position + 10)]))
        return "'" + shown.replacingOccurrences(of: "\n", with: "\\n") + "'"
    }

    public var description: String {
        var parts: [String] = []
        if let reason { parts.append(reason) }
        if let expected { parts.append("expected \(expected)") }
        return parts.joined(separator: ": ") + " at position \(position) (found \(found))"
    }

    /// The spec on one line and a caret under the position.
    public var marked: String {
        let line = spec.replacingOccurrences(of: "\n", with: " ")
        return line + "\n" + String(repeating: " ", count: min(position, line.unicodeScalars.count)) + "^"
    }
}

/// A spec that parsed but cannot be rendered: a file outside the static directory, a masking key
/// of the wrong length, a `ws` response without a client key.
public enum RenderError: Error, Hashable, Sendable, CustomStringConvertible {
    case fileAccessDenied(String)
    case invalid(String)

    public var description: String {
        switch self {
        case .fileAccessDenied(let reason): return "File access denied: \(reason)"
        case .invalid(let reason): return reason
        }
    }
}
