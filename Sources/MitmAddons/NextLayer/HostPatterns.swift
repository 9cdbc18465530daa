import Foundation
import MitmCore

/// The regular expressions of one host option (`ignore_hosts`, `allow_hosts`, `tcp_hosts`), compiled
/// once at start-up.
///
/// mitmproxy compiles each with `re.compile(x, re.IGNORECASE)` and tests it with `search`: a pattern
/// matches anywhere in the text unless it anchors itself, so `example.com` also matches
/// `www.example.com:443` and `notexample.com:443`. Patterns are in Python's `re` dialect, translated
/// for ICU as the flow filters' are (``FlowFilter/icuPattern(fromPython:)``).
public struct HostPatterns: Sendable, Hashable {
    /// The option the patterns came from, for error messages.
    public let option: String
    private let patterns: [Pattern]

    /// One compiled pattern. `NSRegularExpression` is immutable after construction and safe to use
    /// from any thread (Foundation documents it as thread-safe), hence `@unchecked Sendable`.
    private struct Pattern: @unchecked Sendable, Hashable {
        let source: String
        let regex: NSRegularExpression

        static func == (lhs: Pattern, rhs: Pattern) -> Bool { lhs.source == rhs.source }
        func hash(into hasher: inout Hasher) { hasher.combine(source) }
    }

    /// Compiles `sources`; the first that does not compile throws an error naming `option`.
    public init(option: String, _ sources: [String]) throws(HostPatternError) {
        self.option = option
        var compiled: [Pattern] = []
        for source in sources {
            guard let translated = FlowFilter.icuPattern(fromPython: source) else {
                throw HostPatternError(option: option, pattern: source, reason: "a quantifier follows an anchor")
            }
            do {
                let regex = try NSRegularExpression(pattern: translated, options: [.caseInsensitive, .useUnixLineSeparators])
                compiled.append(Pattern(source: source, regex: regex))
            } catch {
                throw HostPatternError(option: option, pattern: source, reason: "not a valid regular expression")
            }
        }
        self.patterns = compiled
    }

    /// No patterns were given (the option is unset).
    public var isEmpty: Bool { patterns.isEmpty }

    /// The patterns as given.
    public var sources: [String] { patterns.map(\.source) }

    /// Whether any pattern occurs in `text` (Python's `re.search`, ignoring case).
    public func matches(_ text: String) -> Bool {
        let range = NSRange(location: 0, length: (text as NSString).length)
        return patterns.contains { $0.regex.firstMatch(in: text, options: [], range: range) != nil }
    }

    /// Whether any pattern occurs in any of `texts`.
    public func matchesAny(_ texts: [String]) -> Bool {
        texts.contains { matches($0) }
    }
}

/// A host pattern that does not compile: which option, which pattern, and why.
public struct HostPatternError: Error, Sendable, Hashable, CustomStringConvertible {
    public let option: String
    public let pattern: String
    public let reason: String

    public var description: String { "Invalid \(option) pattern '\(pattern)': \(reason)" }
}
