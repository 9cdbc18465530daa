extension FlowFilter {
    /// Rewrites a Python `re` pattern (mitmproxy's dialect) into the ICU dialect of
    /// `NSRegularExpression` where the two differ on common input:
    ///
    /// - `{` and `}` that do not form a quantifier are literals in Python, errors in ICU; `{,n}`
    ///   means `{0,n}` in Python.
    /// - Octal escapes (`\0`, `\012`, `\200`, and any digits inside a class) become `\x{…}`;
    ///   `\1`…`\99` stay back references.
    /// - `(?P<name>…)` and `(?P=name)` become `(?<name>…)` and `\k<name>`; `\Z` (end of input) becomes `\z`.
    /// - Inside a class, `[` and `&` are literals in Python but set syntax in ICU, and a `]` right after
    ///   the opening `[` (or `[^`) is a literal; all three are escaped.
    /// - The empty pattern, which ICU rejects, becomes `(?:)`.
    /// - A quantifier right after an anchor (`^*`, `$?`, `\\b{2}`) is an error in Python but not in ICU:
    ///   the result is `nil` (invalid).
    ///
    /// Other Python-only syntax is passed through and may be rejected or read differently by ICU.
    public static func icuPattern(fromPython pattern: String) -> String? {
        let s = Array(pattern.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        var inClass = false
        var classStart = 0  // index of the first member position of the current class
        var afterAnchor = false
        func isOctal(_ at: Int) -> Bool { at < s.count && ("0"..."7").contains(s[at]) }
        func isDigit(_ at: Int) -> Bool { at < s.count && ("0"..."9").contains(s[at]) }
        func emit(_ text: String) { out.append(contentsOf: text.unicodeScalars) }
        func emitHex(_ value: UInt32) { emit("\\x{\(String(value, radix: 16))}") }
        while i < s.count {
            let c = s[i]
            let anchorBefore = afterAnchor
            afterAnchor = false
            if !inClass, anchorBefore, c == "*" || c == "+" || c == "?" {
                return nil
            }
            if c == "\\" {
                guard i + 1 < s.count else {
                    out.append(c)
                    i += 1
                    continue
                }
                let n = s[i + 1]
                if inClass, isOctal(i + 1) {
                    var j = i + 1
                    var value: UInt32 = 0
                    while j < s.count, j < i + 4, isOctal(j) {
                        value = value * 8 + (s[j].value - 48)
                        j += 1
                    }
                    emitHex(value)
                    i = j
                    continue
                }
                if !inClass, n == "0" {
                    var j = i + 2
                    var value: UInt32 = 0
                    while j < s.count, j < i + 4, isOctal(j) {
                        value = value * 8 + (s[j].value - 48)
                        j += 1
                    }
                    emitHex(value)
                    i = j
                    continue
                }
                if !inClass, ("1"..."3").contains(n), isOctal(i + 2), isOctal(i + 3) {
                    emitHex((n.value - 48) * 64 + (s[i + 2].value - 48) * 8 + (s[i + 3].value - 48))
                    i += 4
                    continue
                }
                if !inClass, n == "Z" {
                    emit("\\z")
                    afterAnchor = true
                    i += 2
                    continue
                }
                if !inClass, n == "A" || n == "b" || n == "B" {
                    afterAnchor = true
                }
                out.append(c)
                out.append(n)
                i += 2
                continue
            }
            if inClass {
                if c == "]", i != classStart {
                    inClass = false
                    out.append(c)
                } else if c == "[" || c == "&" || c == "]" {
                    out.append("\\")
                    out.append(c)
                } else {
                    out.append(c)
                }
                i += 1
                continue
            }
            switch c {
            case "[":
                inClass = true
                out.append(c)
                i += 1
                if i < s.count, s[i] == "^" {
                    out.append("^")
                    i += 1
                }
                classStart = i
                continue
            case "(":
                if i + 3 < s.count, s[i + 1] == "?", s[i + 2] == "P", s[i + 3] == "<" {
                    emit("(?<")
                    i += 4
                    continue
                }
                if i + 3 < s.count, s[i + 1] == "?", s[i + 2] == "P", s[i + 3] == "=",
                    let close = s[(i + 4)...].firstIndex(of: ")")
                {
                    emit("\\k<")
                    out.append(contentsOf: s[(i + 4)..<close])
                    emit(">")
                    i = close + 1
                    continue
                }
            case "{":
                var j = i + 1
                var lo = ""
                var hi = ""
                var comma = false
                while isDigit(j) { lo.unicodeScalars.append(s[j]); j += 1 }
                if j < s.count, s[j] == "," {
                    comma = true
                    j += 1
                    while isDigit(j) { hi.unicodeScalars.append(s[j]); j += 1 }
                }
                if j < s.count, s[j] == "}", !(lo.isEmpty && !comma) {
                    if anchorBefore { return nil }
                    emit(comma ? "{\(lo.isEmpty ? "0" : lo),\(hi)}" : "{\(lo)}")
                    i = j + 1
                } else {
                    emit("\\{")
                    i += 1
                }
                continue
            case "}":
                emit("\\}")
                i += 1
                continue
            case "^", "$":
                afterAnchor = true
            default:
                break
            }
            out.append(c)
            i += 1
        }
        return out.isEmpty ? "(?:)" : String(out)
    }
}
