import Foundation
import MitmCore

/// One rule of mitmproxy's rewriting options (`modify_headers`, `modify_body`, `map_remote`,
/// `map_local`): `[SEP filter] SEP subject SEP replacement`, where SEP is the spec's first character,
/// whatever it is (`/`, `|`, `:` …), so a spec can pick one that its parts do not contain.
///
/// - Two parts (`/subject/replacement`) apply to every flow; three (`/filter/subject/replacement`)
///   only to flows matching the ``FlowFilter``.
/// - As in mitmproxy, the spec is cut at the first two separators after the leading one, so further
///   separators belong to the replacement: `/~q/a/http://x/` has the replacement `http://x/`.
/// - **Trailing separator.** The closed form `|filter|regex|replacement|` is also accepted: a spec
///   that splits into exactly four parts whose last is empty is read as three parts and a closing
///   separator (mitmproxy would keep the `|` in the replacement). A replacement that really ends
///   with the separator therefore needs another separator character. A three-part spec ending in
///   the separator (`/~q/X-Header/`) keeps mitmproxy's meaning: filter, subject, empty replacement;
///   so the closed form needs all three parts (`|regex|path|` is read as filter `regex`, subject
///   `path` and an empty replacement; write `|regex|path` or `|~all|regex|path|`).
/// - A replacement starting with `@` names a file (`~` expanded) whose bytes are the replacement,
///   read each time the rule is used, so the file can be edited while the proxy runs. It must be
///   readable when the spec is parsed.
///
/// What the subject is (a header name, a regular expression over the body or URL) is up to the
/// addon; ``init(parsing:replacementIsFile:)`` only splits, compiles the filter and checks the file.
public struct ModifySpec: Sendable, Hashable {
    /// The spec as given.
    public let spec: String
    /// The separator: the spec's first character.
    public let separator: Unicode.Scalar
    /// The filter as written, or `nil` for a two-part spec (which matches every flow).
    public let filterExpression: String?
    /// The compiled filter; ``FlowFilter/all`` for a two-part spec.
    public let filter: FlowFilter
    /// The subject as written.
    public let subject: String
    /// The replacement as written (with its `@` for a file).
    public let replacement: String
    /// Whether a replacement starting with `@` names a file (modify_headers, modify_body); map_remote
    /// and map_local take the replacement as it is.
    public let replacementIsFile: Bool

    /// Splits and checks `spec`.
    ///
    /// - Throws: ``ModifySpecError`` for an empty spec, fewer than two parts, an invalid filter
    ///   (with the position inside the filter), or an `@file` that cannot be read.
    public init(parsing spec: String, replacementIsFile: Bool = true) throws(ModifySpecError) {
        self.spec = spec
        self.replacementIsFile = replacementIsFile
        guard let separator = spec.unicodeScalars.first else {
            throw ModifySpecError(spec: spec, reason: .empty)
        }
        self.separator = separator
        let rest = String(spec.unicodeScalars.dropFirst())
        var pieces = rest.unicodeScalars.split(separator: separator, omittingEmptySubsequences: false)
            .map { String(String.UnicodeScalarView($0)) }
        if pieces.count == 4, pieces[3].isEmpty {
            // `|filter|subject|replacement|`: the last separator closes the spec.
            pieces.removeLast()
        }
        guard pieces.count >= 2 else {
            throw ModifySpecError(spec: spec, reason: .wrongPartCount(separator: separator, found: pieces.count))
        }
        if pieces.count == 2 {
            filterExpression = nil
            filter = .all
            subject = pieces[0]
            replacement = pieces[1]
        } else {
            filterExpression = pieces[0]
            do throws(FlowFilterError) {
                filter = try FlowFilter(pieces[0])
            } catch {
                throw ModifySpecError(spec: spec, reason: .invalidFilter(error))
            }
            subject = pieces[1]
            replacement = pieces[2...].joined(separator: String(separator))
        }
        if replacementFile != nil {
            _ = try readReplacement()
        }
    }

    /// Whether the rule applies to `flow`.
    public func matches(_ flow: HTTPFlow) -> Bool {
        filter.matches(flow)
    }

    /// The file the replacement is read from (after `@`, with `~` expanded), or `nil` when the
    /// replacement is given inline.
    public var replacementFile: String? {
        guard replacementIsFile, replacement.hasPrefix("@") else { return nil }
        return (String(replacement.dropFirst()) as NSString).expandingTildeInPath
    }

    /// The replacement's bytes: the file's content for `@file`, else the inline text with Python's
    /// string escapes decoded (``unescape(_:)``), as mitmproxy's `modify_headers` and `modify_body`
    /// read it.
    ///
    /// - Throws: ``ModifySpecError`` when the file cannot be read or an escape is malformed.
    public func readReplacement() throws(ModifySpecError) -> [UInt8] {
        if let path = replacementFile {
            do throws(FileError) {
                return try Self.readFile(path)
            } catch {
                throw ModifySpecError(spec: spec, reason: .unreadableFile(path: path, detail: error.detail))
            }
        }
        return try Self.unescape(replacement, part: "replacement", spec: spec)
    }

    /// The subject's bytes with Python's string escapes decoded (mitmproxy reads the header name of
    /// `modify_headers` and the regex of `modify_body` this way).
    public func unescapedSubject() throws(ModifySpecError) -> [UInt8] {
        try Self.unescape(subject, part: "subject", spec: spec)
    }

    // MARK: - Escapes

    /// Decodes Python's byte-string escapes (mitmproxy's `escaped_str_to_bytes`, Python's
    /// `codecs.escape_decode`) into bytes: text is UTF-8; `\\`, `\'`, `\"`, `\a`, `\b`, `\f`, `\n`,
    /// `\r`, `\t`, `\v`, `\xHH` and octal `\OOO` (`\1` is the byte 1) are decoded; a backslash before a
    /// newline is dropped; any other backslash is kept (`\d` stays `\d`).
    ///
    /// So, as in mitmproxy, a regex back reference in an inline replacement is written `\\1` or
    /// `\g<1>`, and `\b` in a regex is a backspace.
    ///
    /// - Throws: ``ModifySpecError`` for `\x` without two hex digits or a trailing lone backslash.
    public static func unescape(_ text: String, part: String = "text", spec: String = "") throws(ModifySpecError) -> [UInt8] {
        do {
            return try PythonEscapes.decode(text.utf8)
        } catch {
            let detail = error.kind == .badHex ? "\\x needs two hex digits" : "trailing \\"
            throw ModifySpecError(spec: spec, reason: .invalidEscape(part: part, position: error.offset, detail: detail))
        }
    }

    // MARK: - Files

    struct FileError: Error {
        var detail: String
    }

    /// Reads a whole regular file, failing with the system's reason (`No such file or directory`,
    /// `Is a directory`, `Permission denied`).
    static func readFile(_ path: String) throws(FileError) -> [UInt8] {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw FileError(detail: String(cString: strerror(errno))) }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(detail: String(cString: strerror(errno)))
            }
            if n == 0 { return out }
            out.append(contentsOf: chunk[0..<n])
        }
    }
}

/// Why a rewriting spec was rejected. The description says what was wrong and where, without the
/// option's name or the spec itself (``spec`` holds it), which the caller adds.
public struct ModifySpecError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Reason: Sendable, Hashable {
        /// The spec is the empty string.
        case empty
        /// Fewer than two parts after the separator.
        case wrongPartCount(separator: Unicode.Scalar, found: Int)
        /// The filter part does not parse; the position is inside the filter.
        case invalidFilter(FlowFilterError)
        /// The subject is not a regular expression the engine accepts.
        case invalidRegex(pattern: String, detail: String)
        /// A replacement template refers to a group the regex does not have, or has a bad escape.
        case invalidReplacement(replacement: String, detail: String)
        /// A Python string escape is malformed; the position is a UTF-8 offset into the part.
        case invalidEscape(part: String, position: Int, detail: String)
        /// The `@file` replacement cannot be read.
        case unreadableFile(path: String, detail: String)
        /// A local path (map_local) does not exist.
        case missingPath(path: String)
    }

    /// The spec that was rejected.
    public var spec: String
    public var reason: Reason

    public init(spec: String, reason: Reason) {
        self.spec = spec
        self.reason = reason
    }

    public var description: String {
        switch reason {
        case .empty:
            return "empty spec: expected [SEP filter] SEP subject SEP replacement, SEP being any character"
        case .wrongPartCount(let separator, let found):
            return "expected 2 or 3 parts separated by '\(separator)', found \(found)"
        case .invalidFilter(let error):
            return "invalid filter at position \(error.position): \(error.message)"
        case .invalidRegex(let pattern, let detail):
            return "invalid regular expression '\(pattern)': \(detail)"
        case .invalidReplacement(let replacement, let detail):
            return "invalid replacement '\(replacement)': \(detail)"
        case .invalidEscape(let part, let position, let detail):
            return "invalid escape in the \(part) at position \(position): \(detail)"
        case .unreadableFile(let path, let detail):
            return "cannot read replacement file '\(path)': \(detail)"
        case .missingPath(let path):
            return "no such file or directory: '\(path)'"
        }
    }
}

// MARK: - Regular expressions

/// A Python-dialect regular expression compiled for NSRegularExpression (through
/// ``FlowFilter/icuPattern(fromPython:)``), with Python's `re.sub` template language for
/// replacements. Used over text (map_remote, map_local) and over bytes (modify_body), where each byte
/// is mapped to the character of the same number (ISO-8859-1), so that any byte sequence, UTF-8 or
/// not, can be searched, and a UTF-16 offset is a byte offset. Only `\n` ends a line (for `.`, `^`
/// and `$`), as in Python, rather than every Unicode line terminator as in ICU.
struct SpecRegex: @unchecked Sendable, Hashable {
    let source: String
    /// Immutable after `init`; NSRegularExpression is documented as safe to use from several threads.
    let regex: NSRegularExpression

    init(_ source: String, dotMatchesNewlines: Bool = false, spec: String) throws(ModifySpecError) {
        self.source = source
        guard let translated = FlowFilter.icuPattern(fromPython: source) else {
            throw ModifySpecError(spec: spec, reason: .invalidRegex(pattern: source, detail: "nothing to repeat after an anchor"))
        }
        do {
            var options: NSRegularExpression.Options = [.useUnixLineSeparators]
            if dotMatchesNewlines { options.insert(.dotMatchesLineSeparators) }
            regex = try NSRegularExpression(pattern: translated, options: options)
        } catch {
            throw ModifySpecError(spec: spec, reason: .invalidRegex(pattern: source, detail: Self.diagnose(source)))
        }
    }

    /// The regex over raw bytes: each byte is the character U+0000…U+00FF of the same value.
    init(bytes: [UInt8], dotMatchesNewlines: Bool, spec: String) throws(ModifySpecError) {
        try self.init(Self.latin1String(bytes), dotMatchesNewlines: dotMatchesNewlines, spec: spec)
    }

    static func == (lhs: SpecRegex, rhs: SpecRegex) -> Bool { lhs.source == rhs.source }
    func hash(into hasher: inout Hasher) { hasher.combine(source) }

    var groupCount: Int { regex.numberOfCaptureGroups }

    /// The names of the pattern's named groups, `(?P<name>…)` or `(?<name>…)`.
    var groupNames: Set<String> {
        let finder = try! NSRegularExpression(pattern: #"(?<!\\)\(\?P?<([A-Za-z_][A-Za-z0-9_]*)>"#)
        let ns = source as NSString
        let matches = finder.matches(in: source, range: NSRange(location: 0, length: ns.length))
        return Set(matches.map { ns.substring(with: $0.range(at: 1)) })
    }

    /// `text` parsed as a replacement template for this pattern; an error names `spec`'s replacement.
    func template(_ text: String, for spec: ModifySpec) throws(ModifySpecError) -> ReplacementTemplate {
        do throws(ReplacementTemplateError) {
            return try ReplacementTemplate(text, groupCount: groupCount, groupNames: groupNames)
        } catch {
            throw ModifySpecError(spec: spec.spec, reason: .invalidReplacement(replacement: spec.replacement, detail: error.detail))
        }
    }

    func firstMatch(in text: String) -> NSTextCheckingResult? {
        regex.firstMatch(in: text, options: [], range: NSRange(location: 0, length: (text as NSString).length))
    }

    /// `re.sub(pattern, template, text)` over text; `nil` when nothing matched.
    func substitute(in text: String, template: ReplacementTemplate) -> String? {
        let ns = text as NSString
        let matches = regex.matches(in: text, options: [], range: NSRange(location: 0, length: ns.length))
        guard !matches.isEmpty else { return nil }
        var out = ""
        var last = 0
        for match in matches {
            out += ns.substring(with: NSRange(location: last, length: match.range.location - last))
            for piece in template.pieces {
                switch piece {
                case .literal(let scalars):
                    out.unicodeScalars.append(contentsOf: scalars)
                case .group(let index):
                    out += group(index, of: match).map { ns.substring(with: $0) } ?? ""
                case .named(let name):
                    out += namedGroup(name, of: match).map { ns.substring(with: $0) } ?? ""
                }
            }
            last = match.range.location + match.range.length
        }
        out += ns.substring(from: last)
        return out
    }

    /// `re.sub(pattern, template, content)` over bytes; `nil` when nothing matched. Template
    /// literals are Latin-1 scalars, that is bytes.
    func substitute(inBytes bytes: [UInt8], template: ReplacementTemplate) -> [UInt8]? {
        let text = Self.latin1String(bytes)
        let matches = regex.matches(in: text, options: [], range: NSRange(location: 0, length: bytes.count))
        guard !matches.isEmpty else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var last = 0
        func append(_ range: NSRange?) {
            guard let range else { return }
            out.append(contentsOf: bytes[range.location..<(range.location + range.length)])
        }
        for match in matches {
            out.append(contentsOf: bytes[last..<match.range.location])
            for piece in template.pieces {
                switch piece {
                case .literal(let scalars): out.append(contentsOf: scalars.map { UInt8(truncatingIfNeeded: $0.value) })
                case .group(let index): append(group(index, of: match))
                case .named(let name): append(namedGroup(name, of: match))
                }
            }
            last = match.range.location + match.range.length
        }
        out.append(contentsOf: bytes[last...])
        return out
    }

    private func group(_ index: Int, of match: NSTextCheckingResult) -> NSRange? {
        guard index < match.numberOfRanges else { return nil }
        let range = match.range(at: index)
        return range.location == NSNotFound ? nil : range
    }

    private func namedGroup(_ name: String, of match: NSTextCheckingResult) -> NSRange? {
        let range = match.range(withName: name)
        return range.location == NSNotFound ? nil : range
    }

    static func latin1String(_ bytes: [UInt8]) -> String {
        var scalars = String.UnicodeScalarView()
        scalars.append(contentsOf: bytes.lazy.map { Unicode.Scalar($0) })
        return String(scalars)
    }

    /// A readable reason: Foundation on Linux reports ICU's rejection without one, so the common
    /// mistakes (unbalanced parentheses, an unclosed `[`, a trailing backslash, a leading
    /// quantifier) are found here, with their position in the pattern.
    static func diagnose(_ pattern: String) -> String {
        let s = Array(pattern.unicodeScalars)
        var open: [Int] = []
        var classStart: Int?
        var i = 0
        if let first = s.first, "*+?".unicodeScalars.contains(first) { return "nothing to repeat at position 0" }
        while i < s.count {
            let c = s[i]
            if c == "\\" {
                if i + 1 == s.count { return "trailing backslash at position \(i)" }
                i += 2
                continue
            }
            if let start = classStart {
                // A `]` right after `[` or `[^` is a literal.
                let firstMember = s[start + 1] == "^" ? start + 2 : start + 1
                if c == "]", i > firstMember { classStart = nil }
                i += 1
                continue
            }
            switch c {
            case "[": classStart = i
            case "(": open.append(i)
            case ")":
                if open.popLast() == nil { return "unbalanced parenthesis at position \(i)" }
            default: break
            }
            i += 1
        }
        if let start = classStart { return "unterminated character set at position \(start)" }
        if let start = open.last { return "missing ), unterminated subpattern at position \(start)" }
        return "not a valid regular expression"
    }
}

/// A Python `re.sub` replacement template: literal text, `\1`…`\99`, `\g<1>`, `\g<name>`, and the
/// escapes `\a \b \f \n \r \t \v \\` and octal `\0`, `\OOO`. An unknown escape of an ASCII letter is
/// an error, as in Python; any other backslash is kept.
struct ReplacementTemplate: Sendable, Hashable {
    enum Piece: Sendable, Hashable {
        case literal([Unicode.Scalar])
        case group(Int)
        case named(String)
    }

    var pieces: [Piece]

    /// Parses `template` for a regex with `groupCount` groups named `groupNames`; the error's text
    /// says what is wrong, as Python's would.
    init(_ template: String, groupCount: Int, groupNames: Set<String> = []) throws(ReplacementTemplateError) {
        let s = Array(template.unicodeScalars)
        var pieces: [Piece] = []
        var literal: [Unicode.Scalar] = []
        func flush() {
            if !literal.isEmpty {
                pieces.append(.literal(literal))
                literal = []
            }
        }
        func digit(_ at: Int) -> Int? {
            guard at < s.count, ("0"..."9").contains(s[at]) else { return nil }
            return Int(s[at].value - 48)
        }
        func octal(_ at: Int) -> Int? {
            guard let d = digit(at), d < 8 else { return nil }
            return d
        }
        func reference(_ index: Int) throws(ReplacementTemplateError) {
            guard index <= groupCount else { throw ReplacementTemplateError(detail: "invalid group reference \(index)") }
            flush()
            pieces.append(.group(index))
        }
        var i = 0
        while i < s.count {
            let c = s[i]
            guard c == "\\" else {
                literal.append(c)
                i += 1
                continue
            }
            guard i + 1 < s.count else { throw ReplacementTemplateError(detail: "bad escape (end of pattern)") }
            let n = s[i + 1]
            switch n {
            case "g":
                guard i + 2 < s.count, s[i + 2] == "<",
                    let close = s[(i + 3)...].firstIndex(of: ">")
                else { throw ReplacementTemplateError(detail: "missing group name after \\g") }
                let name = String(String.UnicodeScalarView(s[(i + 3)..<close]))
                if let index = Int(name), index >= 0 {
                    try reference(index)
                } else if !name.isEmpty,
                    name.unicodeScalars.allSatisfy({ $0 == "_" || $0.properties.isAlphabetic || ("0"..."9").contains($0) }),
                    !("0"..."9").contains(name.unicodeScalars.first!)
                {
                    guard groupNames.contains(name) else {
                        throw ReplacementTemplateError(detail: "unknown group name '\(name)'")
                    }
                    flush()
                    pieces.append(.named(name))
                } else {
                    throw ReplacementTemplateError(detail: "bad character in group name '\(name)'")
                }
                i = close + 1
            case "0":
                var value = 0
                var j = i + 2
                while j < i + 4, let d = octal(j) {
                    value = value * 8 + d
                    j += 1
                }
                literal.append(Unicode.Scalar(UInt8(value & 0xFF)))
                i = j
            case "1"..."9":
                let first = Int(n.value - 48)
                if let second = digit(i + 2) {
                    if first < 8, second < 8, let third = octal(i + 3) {
                        let value = first * 64 + second * 8 + third
                        guard value <= 0o377 else {
                            throw ReplacementTemplateError(detail: "octal escape \\\(first)\(second)\(third) above \\377")
                        }
                        literal.append(Unicode.Scalar(UInt8(value)))
                        i += 4
                    } else {
                        try reference(first * 10 + second)
                        i += 3
                    }
                } else {
                    try reference(first)
                    i += 2
                }
            case "a": literal.append("\u{07}"); i += 2
            case "b": literal.append("\u{08}"); i += 2
            case "f": literal.append("\u{0C}"); i += 2
            case "n": literal.append("\n"); i += 2
            case "r": literal.append("\r"); i += 2
            case "t": literal.append("\t"); i += 2
            case "v": literal.append("\u{0B}"); i += 2
            case "\\": literal.append("\\"); i += 2
            default:
                if n.isASCII, n.properties.isAlphabetic {
                    throw ReplacementTemplateError(detail: "bad escape \\\(n)")
                }
                literal.append(c)
                literal.append(n)
                i += 2
            }
        }
        flush()
        self.pieces = pieces
    }
}

struct ReplacementTemplateError: Error {
    var detail: String
}
