/// The hand-written recursive-descent parser of the pathod language.
///
/// Grammar (features are separated by `:`; whitespace separates messages in a pathoc list):
///
///     response  = ("ws" [":" code] | code) *(":" response-feature)
///     request   = ("ws" [":" method] | method) ":" path *(":" request-feature)
///     frame     = "wf" *(":" frame-feature)
///     VALUE     = quoted | "@" INTEGER [unit] ["," type] | "<" (quoted | naked)
///     OFFSET    = INTEGER | "r" | "a"
///
/// Paths, bodies, reasons, `c`/`l` values and frame keys may also be naked (unquoted) literals.
/// Unlike pathod 0.18's pyparsing grammar, the `:` between features is required, so `getx:/` is an
/// unknown method rather than `get` with path `x`.
public enum SpecParser {
    /// One pathod spec: a response, or a websocket frame.
    public static func parseServerMessage(_ spec: String) throws(SpecParseError) -> ServerMessage {
        var parser = try Cursor(spec)
        parser.skipWhitespace()
        let message: ServerMessage
        if parser.atKeyword("wf") {
            message = .frame(try parser.frame(allowNested: false))
        } else {
            message = .response(try parser.response())
        }
        parser.skipWhitespace()
        try parser.expectEnd("':' and a response feature")
        return message
    }

    /// A response spec (no frames), as nested in a request's `s` feature.
    public static func parseResponse(_ spec: String) throws(SpecParseError) -> ResponseSpec {
        var parser = try Cursor(spec)
        parser.skipWhitespace()
        let response = try parser.response()
        parser.skipWhitespace()
        try parser.expectEnd("':' and a response feature")
        return response
    }

    /// One or more pathoc messages (requests and frames), separated by whitespace.
    public static func parseClientMessages(_ spec: String) throws(SpecParseError) -> [ClientMessage] {
        var parser = try Cursor(spec)
        var messages: [ClientMessage] = []
        parser.skipWhitespace()
        repeat {
            if parser.atKeyword("wf") {
                messages.append(.frame(try parser.frame(allowNested: true)))
            } else {
                messages.append(.request(try parser.request()))
            }
            let before = parser.position
            parser.skipWhitespace()
            if !parser.atEnd && parser.position == before {
                throw parser.error(expected: "':' and a request feature, or whitespace and another spec")
            }
        } while !parser.atEnd
        return messages
    }

    /// One or more frame specs separated by whitespace, as pathod reads them from a nested frame.
    public static func parseFrames(_ spec: String) throws(SpecParseError) -> [FrameSpec] {
        var parser = try Cursor(spec)
        var frames: [FrameSpec] = []
        parser.skipWhitespace()
        repeat {
            guard parser.atKeyword("wf") else { throw parser.error(expected: "a websocket frame spec ('wf')") }
            frames.append(try parser.frame(allowNested: false))
            parser.skipWhitespace()
        } while !parser.atEnd
        return frames
    }
}

private let offsetExpectation = "an offset (a number, 'r' for random or 'a' for the end)"
private let valueExpectation = "a value ('quoted', @SIZE[,TYPE] or <file)"

/// The parsing state: the spec's bytes and a position. The spec must be ASCII, as in pathod.
private struct Cursor {
    let text: String
    let bytes: [UInt8]
    var position = 0

    init(_ text: String) throws(SpecParseError) {
        self.text = text
        self.bytes = Array(text.utf8)
        if let bad = bytes.firstIndex(where: { $0 >= 0x80 }) {
            // Report the position in characters, as the caret is drawn in characters.
            let characters = String(decoding: bytes[..<bad], as: UTF8.self).unicodeScalars.count
            throw SpecParseError(spec: text, position: characters, reason: "spec must be ASCII")
        }
    }

    var atEnd: Bool { position >= bytes.count }
    var current: UInt8? { atEnd ? nil : bytes[position] }

    func error(expected: String? = nil, reason: String? = nil, at: Int? = nil) -> SpecParseError {
        SpecParseError(spec: text, position: at ?? position, expected: expected, reason: reason)
    }

    mutating func skipWhitespace() {
        while let byte = current, isWhitespace(byte) { position += 1 }
    }

    func isWhitespace(_ byte: UInt8) -> Bool { byte == 0x20 || (0x09...0x0D).contains(byte) }

    /// Whether the message (or its feature) ends here: end of spec, whitespace or `:`.
    func isDelimiter(at index: Int) -> Bool {
        index >= bytes.count || bytes[index] == UInt8(ascii: ":") || isWhitespace(bytes[index])
    }

    /// Whether `word` (caseless) starts here and is followed by a delimiter.
    func atKeyword(_ word: String) -> Bool {
        let w = Array(word.utf8)
        guard position + w.count <= bytes.count else { return false }
        for (i, c) in w.enumerated() where lower(bytes[position + i]) != c { return false }
        return isDelimiter(at: position + w.count)
    }

    func lower(_ byte: UInt8) -> UInt8 { (0x41...0x5A).contains(byte) ? byte + 0x20 : byte }

    mutating func expectEnd(_ expectation: String) throws(SpecParseError) {
        if !atEnd { throw error(expected: expectation) }
    }

    mutating func expect(_ byte: UInt8, _ expectation: String) throws(SpecParseError) {
        guard current == byte else { throw error(expected: expectation) }
        position += 1
    }

    /// Consumes the `:` before the next feature, or returns false at the end of the message.
    mutating func nextFeature() -> Bool {
        guard current == UInt8(ascii: ":") else { return false }
        position += 1
        return true
    }

    // MARK: - Messages

    mutating func response() throws(SpecParseError) -> ResponseSpec {
        var response = ResponseSpec(code: nil)
        if atKeyword("ws") {
            position += 2
            response.isWebSocket = true
            if current == UInt8(ascii: ":"), position + 1 < bytes.count, isDigit(bytes[position + 1]) {
                position += 1
                response.code = try statusCode()
            }
        } else {
            response.code = try statusCode()
        }
        var seen = UniqueClauses()
        while nextFeature() {
            let start = position
            let feature = try responseFeature()
            try seen.check(feature.uniqueName, at: start, in: self)
            response.features.append(feature)
        }
        return response
    }

    mutating func statusCode() throws(SpecParseError) -> UInt64 {
        guard let byte = current, isDigit(byte) else {
            throw error(expected: "a status code (an integer) or 'ws'")
        }
        let start = position
        let code = try integer("a status code")
        guard code <= 999_999 else { throw error(reason: "status code \(code) is too large (at most 999999)", at: start) }
        return code
    }

    mutating func responseFeature() throws(SpecParseError) -> ResponseFeature {
        guard let byte = current else {
            throw error(expected: "a response feature (h, c, l, r, m, b, d, i, p)")
        }
        switch byte {
        case UInt8(ascii: "h"):
            position += 1
            let (key, value) = try header()
            return .header(key, value)
        case UInt8(ascii: "c"):
            position += 1
            return .contentType(try value(naked: true))
        case UInt8(ascii: "l"):
            position += 1
            return .location(try value(naked: true))
        case UInt8(ascii: "r"), UInt8(ascii: "R"):
            guard isDelimiter(at: position + 1) else {
                throw error(expected: "':' after 'r' (the raw flag)", at: position + 1)
            }
            position += 1
            return .raw
        case UInt8(ascii: "m"):
            position += 1
            return .reason(try value(naked: true))
        case UInt8(ascii: "b"):
            position += 1
            return .body(try value(naked: true))
        case UInt8(ascii: "d"), UInt8(ascii: "i"), UInt8(ascii: "p"):
            return .action(try action())
        default:
            throw error(expected: "a response feature (h, c, l, r, m, b, d, i, p)")
        }
    }

    mutating func request() throws(SpecParseError) -> RequestSpec {
        var request = RequestSpec(method: nil, path: .naked([]))
        if atKeyword("ws") {
            position += 2
            request.isWebSocket = true
            try expect(UInt8(ascii: ":"), "':' and a path after 'ws'")
            // An optional method follows if it is itself followed by ':'.
            let save = position
            if let method = try? method(), current == UInt8(ascii: ":") {
                request.method = method
                position += 1
            } else {
                position = save
            }
        } else {
            request.method = try method()
            try expect(UInt8(ascii: ":"), "':' and a path after the method")
        }
        request.path = try value(naked: true, expectation: "a path (naked or 'quoted')")
        var seen = UniqueClauses()
        while nextFeature() {
            let start = position
            let feature = try requestFeature()
            try seen.check(feature.uniqueName, at: start, in: self)
            request.features.append(feature)
        }
        return request
    }

    mutating func method() throws(SpecParseError) -> MethodSpec {
        let expectation = "a method (get, head, post, put, delete, options, trace, connect or a 'quoted' value)"
        if let byte = current, isLetter(byte) {
            let start = position
            while let byte = current, isLetter(byte) { position += 1 }
            let word = String(decoding: bytes[start..<position], as: UTF8.self).uppercased()
            guard MethodSpec.standardNames.contains(word) else { throw error(expected: expectation, at: start) }
            return .standard(word)
        }
        guard let byte = current, byte == UInt8(ascii: "'") || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "@")
            || byte == UInt8(ascii: "<")
        else { throw error(expected: expectation) }
        return .value(try value(naked: false))
    }

    mutating func requestFeature() throws(SpecParseError) -> RequestFeature {
        let expectation = "a request feature (h, c, u, r, b, s, x, d, i, p)"
        guard let byte = current else { throw error(expected: expectation) }
        switch byte {
        case UInt8(ascii: "h"):
            position += 1
            let (key, value) = try header()
            return .header(key, value)
        case UInt8(ascii: "c"):
            position += 1
            return .contentType(try value(naked: true))
        case UInt8(ascii: "u"):
            position += 1
            return .userAgent(try userAgent())
        case UInt8(ascii: "r"), UInt8(ascii: "R"):
            guard isDelimiter(at: position + 1) else {
                throw error(expected: "':' after 'r' (the raw flag)", at: position + 1)
            }
            position += 1
            return .raw
        case UInt8(ascii: "b"):
            position += 1
            return .body(try value(naked: true))
        case UInt8(ascii: "s"):
            position += 1
            let start = position
            let literal = try quoted()
            let inner = String(decoding: literal, as: UTF8.self)
            do {
                return .nestedResponse(NestedResponse(try SpecParser.parseResponse(inner)))
            } catch {
                // Point into the outer spec: the literal's opening quote plus the inner position.
                throw self.error(
                    expected: error.expected,
                    reason: "in the embedded response '\(inner)': " + (error.reason ?? "at its position \(error.position)"),
                    at: min(start + 1 + error.position, position - 1)
                )
            }
        case UInt8(ascii: "x"):
            position += 1
            return .times(try integer("a repeat count"))
        case UInt8(ascii: "d"), UInt8(ascii: "i"), UInt8(ascii: "p"):
            return .action(try action())
        default:
            throw error(expected: expectation)
        }
    }

    mutating func userAgent() throws(SpecParseError) -> UserAgentSpec {
        if let byte = current, isLetter(byte) {
            let start = position
            while let byte = current, isLetter(byte) || isDigit(byte) { position += 1 }
            let word = String(decoding: bytes[start..<position], as: UTF8.self).lowercased()
            if let agent = UserAgent.all.first(where: { $0.name == word || (word.count == 1 && String($0.code) == word) }) {
                return .shortcut(agent)
            }
            let names = UserAgent.all.map(\.name).joined(separator: ", ")
            throw error(expected: "a User-Agent shortcut (\(names)) or a 'quoted' value", at: start)
        }
        return .value(try value(naked: false))
    }

    mutating func frame(allowNested: Bool) throws(SpecParseError) -> FrameSpec {
        position += 2  // "wf", checked by the caller
        var frame = FrameSpec()
        var seen = UniqueClauses()
        while nextFeature() {
            let start = position
            let feature = try frameFeature(allowNested: allowNested)
            try seen.check(feature.uniqueName, at: start, in: self)
            frame.features.append(feature)
        }
        return frame
    }

    mutating func frameFeature(allowNested: Bool) throws(SpecParseError) -> FrameFeature {
        let expectation = "a frame feature (b, c, d, i, p, x, [-]fin, k, knone, l, [-]mask, r, [-]rsv1, [-]rsv2, [-]rsv3"
            + (allowNested ? ", f)" : ")")
        let negated = current == UInt8(ascii: "-")
        if negated { position += 1 }
        for (word, make) in [
            ("fin", FrameFeature.fin), ("rsv1", FrameFeature.rsv1), ("rsv2", FrameFeature.rsv2),
            ("rsv3", FrameFeature.rsv3), ("mask", FrameFeature.mask),
        ] where atKeyword(word) {
            position += word.utf8.count
            return make(!negated)
        }
        if negated { throw error(expected: "a flag after '-' (fin, mask, rsv1, rsv2, rsv3)") }
        if atKeyword("knone") {
            position += 5
            return .keyNone
        }
        guard let byte = current else { throw error(expected: expectation) }
        switch byte {
        case UInt8(ascii: "b"):
            position += 1
            return .body(try value(naked: true))
        case UInt8(ascii: "r"):
            position += 1
            return .rawBody(try value(naked: true))
        case UInt8(ascii: "c"):
            position += 1
            return .opcode(try opcode())
        case UInt8(ascii: "l"):
            position += 1
            return .length(try integer("a payload length"))
        case UInt8(ascii: "x"):
            position += 1
            return .times(try integer("a repeat count"))
        case UInt8(ascii: "k"):
            position += 1
            let start = position
            let key = try value(naked: true)
            if let bytes = key.literalBytes, bytes.count != 4 {
                throw error(reason: "a masking key must be exactly 4 bytes, this one is \(bytes.count)", at: start)
            }
            if let size = key.generatedSize, size != 4 {
                throw error(reason: "a masking key must be exactly 4 bytes, this one is \(size)", at: start)
            }
            return .key(key)
        case UInt8(ascii: "f") where allowNested:
            position += 1
            let start = position
            let literal = try quoted()
            let inner = String(decoding: literal, as: UTF8.self)
            do throws(SpecParseError) {
                var nested = try Cursor(inner)
                guard nested.atKeyword("wf") else { throw nested.error(expected: "a websocket frame spec ('wf')") }
                let frame = try nested.frame(allowNested: false)
                try nested.expectEnd("':' and a frame feature")
                return .nestedFrame(frame)
            } catch {
                throw self.error(
                    expected: error.expected,
                    reason: "in the embedded frame '\(inner)': " + (error.reason ?? "at its position \(error.position)"),
                    at: min(start + 1 + error.position, position - 1)
                )
            }
        case UInt8(ascii: "d"), UInt8(ascii: "i"), UInt8(ascii: "p"):
            return .action(try action())
        default:
            throw error(expected: expectation)
        }
    }

    mutating func opcode() throws(SpecParseError) -> OpcodeSpec {
        let expectation = "an opcode (0-15, continue, text, binary, close, ping, pong)"
        if let byte = current, isDigit(byte) {
            let start = position
            let n = try integer("an opcode")
            guard n <= 15 else { throw error(reason: "opcode \(n) is above 15", at: start) }
            return .number(UInt8(n))
        }
        for (name, _) in OpcodeSpec.names where atKeyword(name) {
            position += name.utf8.count
            return .named(name)
        }
        throw error(expected: expectation)
    }

    // MARK: - Actions

    mutating func action() throws(SpecParseError) -> SpecAction {
        let letter = bytes[position]
        position += 1
        let offset = try self.offset()
        switch letter {
        case UInt8(ascii: "d"):
            return .disconnect(offset)
        case UInt8(ascii: "i"):
            try expect(UInt8(ascii: ","), "',' and the value to inject")
            return .inject(offset, try value(naked: false))
        default:
            try expect(UInt8(ascii: ","), "',' and a pause in seconds (or 'f' for forever)")
            if current == UInt8(ascii: "f") {
                position += 1
                return .pause(offset, .forever)
            }
            guard let byte = current, isDigit(byte) else {
                throw error(expected: "a pause in seconds (an integer) or 'f' for forever")
            }
            return .pause(offset, .seconds(try integer("a pause in seconds")))
        }
    }

    mutating func offset() throws(SpecParseError) -> Offset {
        switch current {
        case UInt8(ascii: "r"):
            position += 1
            return .random
        case UInt8(ascii: "a"):
            position += 1
            return .end
        case let byte? where isDigit(byte):
            return .bytes(try integer("an offset"))
        default:
            throw error(expected: offsetExpectation)
        }
    }

    // MARK: - Values

    mutating func header() throws(SpecParseError) -> (SpecValue, SpecValue) {
        let key = try value(naked: false, expectation: "a header name (\(valueExpectation.dropFirst(2))")
        try expect(UInt8(ascii: "="), "'=' and a header value")
        let value = try value(naked: false, expectation: "a header value (\(valueExpectation.dropFirst(2))")
        return (key, value)
    }

    mutating func value(naked: Bool, expectation: String? = nil) throws(SpecParseError) -> SpecValue {
        let expectation = expectation ?? (naked ? "a value (naked, 'quoted', @SIZE[,TYPE] or <file)" : valueExpectation)
        switch current {
        case UInt8(ascii: "'"), UInt8(ascii: "\""):
            return .literal(try quoted())
        case UInt8(ascii: "@"):
            return try generated()
        case UInt8(ascii: "<"):
            position += 1
            if current == UInt8(ascii: "'") || current == UInt8(ascii: "\"") {
                return .file(String(decoding: try quoted(), as: UTF8.self))
            }
            guard let bytes = try nakedLiteral() else { throw error(expected: "a file path (naked or 'quoted') after '<'") }
            return .file(String(decoding: bytes, as: UTF8.self))
        case let byte? where naked && Escaping.isNakedByte(byte):
            return .naked(try nakedLiteral() ?? [])
        default:
            throw error(expected: expectation)
        }
    }

    mutating func nakedLiteral() throws(SpecParseError) -> [UInt8]? {
        let start = position
        while let byte = current, Escaping.isNakedByte(byte) { position += 1 }
        guard position > start else { return nil }
        switch Escaping.unescape(bytes[start..<position]) {
        case .success(let decoded): return decoded
        case .failure(let failure):
            throw error(expected: "two hex digits after '\\x'", at: failure.offset + 2)
        }
    }

    mutating func quoted() throws(SpecParseError) -> [UInt8] {
        guard let quote = current, quote == UInt8(ascii: "'") || quote == UInt8(ascii: "\"") else {
            throw error(expected: "a quoted string ('…' or \"…\")")
        }
        let open = position
        position += 1
        let start = position
        while true {
            guard let byte = current else {
                throw error(expected: "a closing \(quote == UInt8(ascii: "'") ? "'" : "\"") for the string opened at position \(open)")
            }
            if byte == UInt8(ascii: "\\") {
                position += 2
                if position > bytes.count { position = bytes.count }
                continue
            }
            if byte == quote { break }
            position += 1
        }
        let end = position
        position += 1
        switch Escaping.unescape(bytes[start..<end]) {
        case .success(let decoded): return decoded
        case .failure(let failure):
            throw error(expected: "two hex digits after '\\x'", at: failure.offset + 2)
        }
    }

    mutating func generated() throws(SpecParseError) -> SpecValue {
        position += 1  // "@"
        guard let byte = current, isDigit(byte) else { throw error(expected: "a size (an integer) after '@'") }
        let start = position
        let count = try integer("a size")
        var unit = SizeUnit.bytes
        if let byte = current, let found = SizeUnit(rawValue: String(UnicodeScalar(byte))) {
            unit = found
            position += 1
        }
        guard count.multipliedReportingOverflow(by: unit.multiplier).overflow == false else {
            throw error(reason: "size @\(count)\(unit.rawValue) is too large", at: start)
        }
        var type = DataType.bytes
        if current == UInt8(ascii: ",") {
            // A comma after a size always starts a data type: no feature puts another value after a VALUE.
            let typeStart = position + 1
            var end = typeStart
            while end < bytes.count, isLetter(bytes[end]) || bytes[end] == UInt8(ascii: "_") { end += 1 }
            let name = String(decoding: bytes[typeStart..<end], as: UTF8.self).lowercased()
            guard let found = DataType(rawValue: name) else {
                let names = DataType.allCases.map(\.rawValue).joined(separator: ", ")
                throw error(expected: "a data type (\(names))", at: typeStart)
            }
            type = found
            position = end
        }
        return .generated(count: count, unit: unit, type: type)
    }

    mutating func integer(_ what: String) throws(SpecParseError) -> UInt64 {
        let start = position
        var value: UInt64 = 0
        while let byte = current, isDigit(byte) {
            let (times, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
            if o1 || o2 { throw error(reason: "\(what) is too large", at: start) }
            value = sum
            position += 1
        }
        guard position > start else { throw error(expected: "\(what) (an integer)") }
        return value
    }

    func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }
    func isLetter(_ byte: UInt8) -> Bool { (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) }
}

/// Clauses a message may carry at most once.
private struct UniqueClauses {
    var names: Set<String> = []

    mutating func check(_ name: String?, at position: Int, in cursor: Cursor) throws(SpecParseError) {
        guard let name else { return }
        if !names.insert(name).inserted {
            throw cursor.error(reason: "message has multiple \(name) clauses, but should only have one", at: position)
        }
    }
}

extension RequestFeature {
    var uniqueName: String? {
        switch self {
        case .raw: return "raw"
        case .body: return "body"
        case .nestedResponse: return "embedded response"
        case .times: return "repeat"
        case .action(.disconnect): return "disconnect"
        case .header, .contentType, .userAgent, .action: return nil
        }
    }
}

extension ResponseFeature {
    var uniqueName: String? {
        switch self {
        case .raw: return "raw"
        case .body: return "body"
        case .reason: return "reason"
        case .action(.disconnect): return "disconnect"
        case .header, .contentType, .location, .action: return nil
        }
    }
}

extension FrameFeature {
    var uniqueName: String? {
        switch self {
        case .opcode: return "opcode"
        case .length: return "length"
        case .fin: return "fin"
        case .rsv1: return "rsv1"
        case .rsv2: return "rsv2"
        case .rsv3: return "rsv3"
        case .mask: return "mask"
        case .key, .keyNone: return "key"
        case .times: return "repeat"
        case .body, .rawBody, .nestedFrame: return "body"
        case .action(.disconnect): return "disconnect"
        case .action: return nil
        }
    }
}
