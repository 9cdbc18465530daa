import Foundation
import MitmCore

/// A compiled mitmproxy filter expression (mitmproxy's `flowfilter.parse`), e.g.
/// `~d example.com & !~c 200` or `~m POST ~b "token=\\w+"`.
///
/// Grammar and precedence follow mitmproxy 11 (which builds its parser with pyparsing's
/// `infixNotation`), from tightest to loosest:
///
/// 1. `!` (prefix, right-associative; `!!~q` is allowed)
/// 2. `&`
/// 3. `|`
/// 4. juxtaposition at the top level: `~q ~s | ~a` is `~q & (~s | ~a)`. Inside parentheses terms
///    must be joined by an operator, as in mitmproxy.
///
/// Like mitmproxy, a filter name must be followed by whitespace, the end, or a non-ASCII character
/// (`(~q)` and `~q&~s` are errors; write `( ~q )`, `~q & ~s`), and a bare word may contain `!`,
/// `&` and `|` (`foo&bar` is one URL regex; a trailing `~q &` is `~q` and the URL regex `&`).
/// Regular expressions are compiled once, here.
public struct FlowFilter: Sendable, Hashable, CustomStringConvertible {
    /// The expression as given.
    public let expression: String
    /// The parsed expression.
    public let root: Node

    public init(_ expression: String) throws(FlowFilterError) {
        self.expression = expression
        var parser = Parser(expression)
        self.root = try parser.parse()
    }

    /// A filter from an already-built tree (its `expression` is the tree's description).
    public init(_ root: Node) {
        self.root = root
        self.expression = root.description
    }

    /// Whether `flow` matches the filter.
    public func matches(_ flow: HTTPFlow) -> Bool {
        root.matches(flow)
    }

    /// Whether `flow` (of any type) matches the filter.
    public func matches(_ flow: Flow) -> Bool {
        root.matches(flow)
    }

    /// A canonical spelling of the filter that parses back to the same tree.
    public var description: String { root.description }

    /// A filter that matches every flow (mitmproxy's `match_all`, `~all`).
    public static let all = FlowFilter(.flag(.all))

    /// One node of a parsed filter.
    public indirect enum Node: Sendable, Hashable, CustomStringConvertible {
        case and([Node])
        case or([Node])
        case not(Node)
        /// A filter without argument (`~q`, `~e`, …).
        case flag(Flag)
        /// A filter with a regular expression (`~u rex`, `~b rex`, …); a bare word is `~u`.
        case regex(RegexFilter, Pattern)
        /// `~c CODE`: the response status code.
        case code(Int)
    }

    /// The filters without argument.
    public enum Flag: String, Sendable, Hashable, CaseIterable {
        /// `~a`: the response is an asset (JavaScript, CSS, image, font).
        case asset = "a"
        /// `~e`: the flow has an error.
        case error = "e"
        /// `~http`: an HTTP flow (always, for our flows).
        case http = "http"
        /// `~marked`
        case marked = "marked"
        /// `~replay`
        case replay = "replay"
        /// `~replayq`: a replayed request.
        case replayRequest = "replayq"
        /// `~replays`: a replayed response.
        case replayResponse = "replays"
        /// `~q`: a request without response.
        case request = "q"
        /// `~s`: a flow with a response.
        case response = "s"
        /// `~tcp`, `~udp`, `~dns`, `~websocket`: flow kinds our model lacks; never match.
        case tcp = "tcp"
        case udp = "udp"
        case dns = "dns"
        case websocket = "websocket"
        /// `~all`
        case all = "all"
    }

    /// The filters that take a regular expression.
    public enum RegexFilter: String, Sendable, Hashable, CaseIterable {
        case body = "b"
        case requestBody = "bq"
        case responseBody = "bs"
        case contentType = "t"
        case requestContentType = "tq"
        case responseContentType = "ts"
        case domain = "d"
        case destination = "dst"
        case header = "h"
        case requestHeader = "hq"
        case responseHeader = "hs"
        case method = "m"
        case source = "src"
        case url = "u"
        case meta = "meta"
        case marker = "marker"
        case comment = "comment"

        /// The regex options mitmproxy compiles this filter's pattern with. Every pattern also gets
        /// Unix line separators, so `.`, `^` and `$` treat only `\n` as a line end, as Python's `re`.
        var options: NSRegularExpression.Options {
            var options: NSRegularExpression.Options = [.useUnixLineSeparators]
            switch self {
            case .method, .domain, .url: options.insert(.caseInsensitive)
            case .header, .requestHeader, .responseHeader, .meta, .comment: options.insert(.anchorsMatchLines)
            case .body, .requestBody, .responseBody: options.insert(.dotMatchesLineSeparators)
            default: break
            }
            return options
        }
    }

    /// A regular expression as written and compiled. Equal when the source is.
    public struct Pattern: @unchecked Sendable, Hashable {
        public let source: String
        let regex: NSRegularExpression

        /// Compiles `source`, a Python-dialect pattern, for `filter` (see `icuPattern(fromPython:)`).
        public init(_ source: String, for filter: RegexFilter) throws {
            self.source = source
            guard let translated = FlowFilter.icuPattern(fromPython: source) else {
                throw FlowFilterError(position: 0, message: "quantifier after an anchor")
            }
            self.regex = try NSRegularExpression(pattern: translated, options: filter.options)
        }

        /// Whether the pattern occurs anywhere in `text` (Python's `re.search`).
        func search(_ text: String) -> Bool {
            let ns = text as NSString
            return regex.firstMatch(in: text, options: [], range: NSRange(location: 0, length: ns.length)) != nil
        }

        public static func == (lhs: Pattern, rhs: Pattern) -> Bool { lhs.source == rhs.source }
        public func hash(into hasher: inout Hasher) { hasher.combine(source) }
    }
}

/// Why a filter expression was rejected: where (a Unicode scalar offset into the expression) and
/// what was expected there.
public struct FlowFilterError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Offset of the offending character, in Unicode scalars from the start (0-based).
    public let position: Int
    /// What went wrong, e.g. `expected a filter after '&'` or `unknown filter ~zz`.
    public let message: String

    public init(position: Int, message: String) {
        self.position = position
        self.message = message
    }

    public var description: String { "\(message) at position \(position)" }
}

// MARK: - Printing

extension FlowFilter.Node {
    /// A spelling that parses back to this tree: arguments always quoted, `&` and `|` explicit,
    /// parentheses where precedence needs them (children of `&` that are `&` or `|`, children of `|`
    /// that are `|`, operands of `!` that are `&` or `|`).
    public var description: String {
        switch self {
        case .and(let items):
            return items.map { item in
                switch item {
                case .and, .or: return Self.parenthesized(item)
                default: return item.description
                }
            }.joined(separator: " & ")
        case .or(let items):
            return items.map { item in
                if case .or = item { return Self.parenthesized(item) }
                return item.description
            }.joined(separator: " | ")
        case .not(let inner):
            switch inner {
            case .and, .or: return "!" + Self.parenthesized(inner)
            default: return "!\(inner.description)"
            }
        case .flag(let flag):
            return "~\(flag.rawValue)"
        case .regex(let filter, let pattern):
            return "~\(filter.rawValue) \(FlowFilter.quote(pattern.source))"
        case .code(let code):
            return "~c \(code)"
        }
    }

    /// `(node)`; with a space before `)` when the node ends in a filter name, which mitmproxy
    /// requires (`( ~q )`, not `(~q)`).
    private static func parenthesized(_ node: Self) -> String {
        let text = node.description
        return text.last?.isLetter == true ? "(\(text) )" : "(\(text))"
    }
}

extension FlowFilter {
    /// `text` as a double-quoted argument that unquotes back to `text`: `\\`, `"`, newline,
    /// carriage return, tab and form feed are escaped, everything else (even NUL) is kept as is.
    public static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{0C}": out += "\\f"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
