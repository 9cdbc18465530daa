import Foundation

extension FlowFilter {
    /// A backtracking recursive-descent parser equivalent to mitmproxy's pyparsing grammar:
    ///
    ///     filter  := expr+                               (juxtaposed: and)
    ///     expr    := and ('|' and)*
    ///     and     := not ('&' not)*
    ///     not     := '!' not | primary                   (falls back to primary if '!' has no operand)
    ///     primary := atom | '(' expr ')'
    ///     atom    := '~' FLAG | '~' REX arg | '~c' DIGITS | arg      (a bare arg is ~u)
    ///     arg     := WORD | "..." | '...'
    ///
    /// A filter name must end at the end of input or at a character that is not printable ASCII.
    /// WORD is a run of characters other than whitespace (space, \t, \n, \r) and `()~'"`.
    /// An operator whose operand does not parse is not consumed, so it may be read as a bare word.
    /// Failures are remembered at the furthest position reached and reported from there.
    struct Parser {
        private let scalars: [Unicode.Scalar]
        private var failure: FlowFilterError?
        private var depth = 0

        /// How deeply `(` and `!` may nest, so that neither parsing nor matching can exhaust the
        /// stack. (mitmproxy's parser takes exponential time long before this depth.)
        static let maximumDepth = 100

        init(_ expression: String) {
            self.scalars = Array(expression.unicodeScalars)
        }

        mutating func parse() throws(FlowFilterError) -> Node {
            guard !scalars.isEmpty else {
                throw FlowFilterError(position: 0, message: "empty filter expression")
            }
            var items: [Node] = []
            var pos = 0
            while let (node, next) = try parseOr(pos, context: "") {
                items.append(node)
                pos = next
            }
            let end = skipWhitespace(pos)
            guard !items.isEmpty, end == scalars.count else {
                throw failure ?? FlowFilterError(position: end, message: "expected a filter")
            }
            return items.count == 1 ? items[0] : .and(items)
        }

        // MARK: Operators

        private mutating func parseOr(_ pos: Int, context: String) throws(FlowFilterError) -> (Node, Int)? {
            try parseList(pos, context: context, operator: "|", make: Node.or) { (p: inout Parser, at: Int, ctx: String) throws(FlowFilterError) in
                try p.parseAnd(at, context: ctx)
            }
        }

        private mutating func parseAnd(_ pos: Int, context: String) throws(FlowFilterError) -> (Node, Int)? {
            try parseList(pos, context: context, operator: "&", make: Node.and) { (p: inout Parser, at: Int, ctx: String) throws(FlowFilterError) in
                try p.parseNot(at, context: ctx)
            }
        }

        private mutating func parseList(
            _ pos: Int,
            context: String,
            operator op: Unicode.Scalar,
            make: ([Node]) -> Node,
            operand: (inout Parser, Int, String) throws(FlowFilterError) -> (Node, Int)?
        ) throws(FlowFilterError) -> (Node, Int)? {
            guard let (first, afterFirst) = try operand(&self, pos, context) else { return nil }
            var items = [first]
            var pos = afterFirst
            while true {
                let at = skipWhitespace(pos)
                guard at < scalars.count, scalars[at] == op,
                    let (next, afterNext) = try operand(&self, at + 1, " after '\(op)'")
                else { break }
                items.append(next)
                pos = afterNext
            }
            return (items.count == 1 ? first : make(items), pos)
        }

        private mutating func parseNot(_ pos: Int, context: String) throws(FlowFilterError) -> (Node, Int)? {
            let at = skipWhitespace(pos)
            if at < scalars.count, scalars[at] == "!" {
                try enter(at)
                defer { depth -= 1 }
                if let (inner, end) = try parseNot(at + 1, context: " after '!'") {
                    return (.not(inner), end)
                }
            }
            return try parsePrimary(at, context: context)
        }

        private mutating func parsePrimary(_ pos: Int, context: String) throws(FlowFilterError) -> (Node, Int)? {
            if let atom = try parseAtom(pos, context: context) { return atom }
            guard pos < scalars.count, scalars[pos] == "(" else { return nil }
            try enter(pos)
            defer { depth -= 1 }
            guard let (inner, end) = try parseOr(pos + 1, context: " after '('") else { return nil }
            let close = skipWhitespace(end)
            guard close < scalars.count, scalars[close] == ")" else {
                fail(close, "expected ')' to close '(' at position \(pos)")
                return nil
            }
            return (inner, close + 1)
        }

        // MARK: Atoms

        private mutating func parseAtom(_ pos: Int, context: String) throws(FlowFilterError) -> (Node, Int)? {
            guard pos < scalars.count else {
                fail(pos, "expected a filter\(context)")
                return nil
            }
            guard scalars[pos] == "~" else {
                guard let (argument, end) = parseArgument(pos) else {
                    fail(pos, "expected a filter\(context)")
                    return nil
                }
                return (.regex(.url, try compile(argument, for: .url, at: pos)), end)
            }
            var nameEnd = pos + 1
            while nameEnd < scalars.count, Self.isPrintableASCII(scalars[nameEnd]) { nameEnd += 1 }
            let name = String(String.UnicodeScalarView(scalars[(pos + 1)..<nameEnd]))
            if let flag = Flag(rawValue: name) {
                return (.flag(flag), nameEnd)
            }
            if let filter = RegexFilter(rawValue: name) {
                let at = skipWhitespace(nameEnd)
                guard let (argument, end) = parseArgument(at) else {
                    fail(at, "expected a regex after ~\(name)")
                    return nil
                }
                return (.regex(filter, try compile(argument, for: filter, at: at)), end)
            }
            if name == "c" {
                let at = skipWhitespace(nameEnd)
                var end = at
                while end < scalars.count, ("0"..."9").contains(scalars[end]) { end += 1 }
                guard end > at else {
                    fail(at, "expected a status code after ~c")
                    return nil
                }
                let digits = String(String.UnicodeScalarView(scalars[at..<end]))
                // Too large to be a status code: never matches, and still prints as a number.
                return (.code(Int(digits) ?? Int.max), end)
            }
            // Tell "~q)" (a known name run into punctuation) from an unknown name.
            let letters = name.prefix { $0.isLetter }
            if letters.count < name.count, Self.knownNames.contains(String(letters)) {
                let at = pos + 1 + letters.unicodeScalars.count
                fail(at, "expected whitespace after ~\(letters), found '\(scalars[at])'")
            } else {
                fail(pos, name.isEmpty ? "expected a filter name after '~'" : "unknown filter ~\(name)")
            }
            return nil
        }

        /// A bare word or a quoted string, unquoted; `nil` (with the failure noted) when neither.
        private mutating func parseArgument(_ pos: Int) -> (String, Int)? {
            guard pos < scalars.count else { return nil }
            let first = scalars[pos]
            if first == "\"" || first == "'" {
                var i = pos + 1
                var raw: [Unicode.Scalar] = []
                while i < scalars.count {
                    let c = scalars[i]
                    if c == first { return (Self.unquote(raw), i + 1) }
                    if c == "\n" || c == "\r" { break }
                    if c == "\\" {
                        guard i + 1 < scalars.count, scalars[i + 1] != "\n" else { break }
                        raw.append(c)
                        raw.append(scalars[i + 1])
                        i += 2
                        continue
                    }
                    raw.append(c)
                    i += 1
                }
                fail(pos, "unterminated quoted string")
                return nil
            }
            var end = pos
            while end < scalars.count, Self.isWordScalar(scalars[end]) { end += 1 }
            guard end > pos else { return nil }
            return (String(String.UnicodeScalarView(scalars[pos..<end])), end)
        }

        private func compile(_ source: String, for filter: RegexFilter, at pos: Int) throws(FlowFilterError) -> Pattern {
            do {
                return try Pattern(source, for: filter)
            } catch {
                throw FlowFilterError(position: pos, message: "invalid regex \(FlowFilter.quote(source)) for ~\(filter.rawValue)")
            }
        }

        // MARK: Helpers

        private mutating func enter(_ position: Int) throws(FlowFilterError) {
            depth += 1
            if depth > Self.maximumDepth {
                throw FlowFilterError(position: position, message: "expression nested more than \(Self.maximumDepth) deep")
            }
        }

        private mutating func fail(_ position: Int, _ message: String) {
            if let failure, failure.position >= position { return }
            failure = FlowFilterError(position: position, message: message)
        }

        private func skipWhitespace(_ pos: Int) -> Int {
            var pos = pos
            while pos < scalars.count, Self.isWhitespace(scalars[pos]) { pos += 1 }
            return pos
        }

        /// pyparsing's default whitespace.
        static func isWhitespace(_ c: Unicode.Scalar) -> Bool {
            c == " " || c == "\t" || c == "\n" || c == "\r"
        }

        /// pyparsing's `printables`: the characters that continue a word after a filter name.
        static func isPrintableASCII(_ c: Unicode.Scalar) -> Bool {
            c.value >= 0x21 && c.value <= 0x7E
        }

        static func isWordScalar(_ c: Unicode.Scalar) -> Bool {
            !isWhitespace(c) && c != "(" && c != ")" && c != "~" && c != "'" && c != "\""
        }

        static let knownNames: Set<String> = Set(Flag.allCases.map(\.rawValue) + RegexFilter.allCases.map(\.rawValue) + ["c"])

        /// Undoes pyparsing 3.2's quoting, bug for bug. Its unquoting regex is written as an f-string,
        /// so the repeat counts in `\\[0-7]{3}`, `\\x[0-9a-fA-F]{2}` and `\\u[0-9a-fA-F]{4}` turn into
        /// literal digits. At each backslash, the first rule that applies:
        ///
        /// 1. `\t \n \f \r`: the whitespace character.
        /// 2. `\` + an octal digit + `3` (e.g. `\03`, `\73`): those two digits.
        /// 3. `\0`: NUL.
        /// 4. `\x` + one hex digit + `2`: the character with that two-digit hex code (`\xA2` is U+00A2).
        /// 5. `\u` + one hex digit + `4`: likewise (`\u04` is U+0004).
        /// 6. `\c`: the character `c` (so `\d` is `d`, and `\\d` is the regex `\d`).
        static func unquote(_ raw: [Unicode.Scalar]) -> String {
            var out = String.UnicodeScalarView()
            var i = 0
            func isHex(_ c: Unicode.Scalar) -> Bool { c.properties.isASCIIHexDigit }
            while i < raw.count {
                let c = raw[i]
                guard c == "\\", i + 1 < raw.count else {
                    out.append(c)
                    i += 1
                    continue
                }
                let next = raw[i + 1]
                let third: Unicode.Scalar? = i + 2 < raw.count ? raw[i + 2] : nil
                let fourth: Unicode.Scalar? = i + 3 < raw.count ? raw[i + 3] : nil
                switch next {
                case "t": out.append("\t"); i += 2; continue
                case "n": out.append("\n"); i += 2; continue
                case "f": out.append("\u{0C}"); i += 2; continue
                case "r": out.append("\r"); i += 2; continue
                default: break
                }
                if ("0"..."7").contains(next), third == "3" {
                    out.append(next)
                    out.append("3")
                    i += 3
                    continue
                }
                if next == "0" {
                    out.append("\0")
                    i += 2
                    continue
                }
                if next == "x" || next == "u", let digit = third, isHex(digit), fourth == (next == "x" ? "2" : "4"),
                    let value = UInt32(String(digit) + String(fourth!), radix: 16), let scalar = Unicode.Scalar(value)
                {
                    out.append(scalar)
                    i += 4
                    continue
                }
                out.append(next)
                i += 2
            }
            return String(out)
        }
    }
}
