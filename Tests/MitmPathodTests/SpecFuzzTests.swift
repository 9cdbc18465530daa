import MitmPathod
import MitmCore
import MitmTestSupport
import Testing

/// Property tests over seeded random specs: valid ones from the grammar, and mutations of them.
/// The parser must never crash, an error must point inside the spec, and a spec that parses must
/// print back to a spec that parses to the same thing.
@Suite("pathod language: property and fuzz tests")
struct SpecFuzzTests {
    struct Generator {
        var rng: SplitMix64

        mutating func pick<T>(_ items: [T]) -> T { items[Int(rng.next() % UInt64(items.count))] }
        mutating func chance(_ percent: UInt64) -> Bool { rng.next() % 100 < percent }
        mutating func number(_ max: UInt64) -> UInt64 { rng.next() % (max + 1) }

        mutating func literal() -> String {
            let pieces = ["a", "b", "foo", "\\n", "\\x00", "\\'", " ", ":", "@", "=", ",", "\\\\", "\"", "é", "\\xff", "<"]
            var text = ""
            for _ in 0..<number(4) { text += pick(pieces) }
            let quote = pick(["'", "\""])
            return quote + text.replacingOccurrences(of: quote, with: "\\" + quote) + quote
        }

        mutating func value(naked: Bool) -> String {
            switch number(naked ? 4 : 3) {
            case 0: return literal()
            case 1: return "@\(number(2000))" + (chance(50) ? pick(["b", "k", "m", "g", "t"]) : "")
                + (chance(50) ? "," + pick(DataType.allCases).rawValue : "")
            case 2: return "<" + pick(["file", "'a b'", "../x"])
            case 3: return literal()
            default: return pick(["foo", "/a/b", "text/html", "x\\ty"])
            }
        }

        mutating func offset() -> String { pick(["r", "a", String(number(300))]) }

        mutating func action() -> String {
            switch number(2) {
            case 0: return "d" + offset()
            case 1: return "i" + offset() + "," + value(naked: false)
            default: return "p" + offset() + "," + pick(["f", String(number(3))])
            }
        }

        mutating func response() -> String {
            var parts = [chance(10) ? pick(["ws", "ws:101"]) : String(pick([200, 204, 301, 404, 500, 800, 999]))]
            for _ in 0..<number(4) {
                switch number(6) {
                case 0: parts.append("h" + value(naked: false) + "=" + value(naked: false))
                case 1: parts.append(pick(["c", "l", "m"]) + value(naked: true))
                case 2: parts.append("r")
                case 3: parts.append("b" + value(naked: true))
                default: parts.append(action())
                }
            }
            return parts.joined(separator: ":")
        }

        mutating func request() -> String {
            var parts = [pick(["get", "POST", "ws", "'BREW'", "head"]), value(naked: true)]
            for _ in 0..<number(4) {
                switch number(6) {
                case 0: parts.append("h" + value(naked: false) + "=" + value(naked: false))
                case 1: parts.append("u" + pick(["chrome", "a", "'x'"]))
                case 2: parts.append("s'" + response().replacingOccurrences(of: "'", with: "\\'") + "'")
                case 3: parts.append("x" + String(number(3)))
                case 4: parts.append("b" + value(naked: true))
                default: parts.append(action())
                }
            }
            return parts.joined(separator: ":")
        }

        mutating func frame() -> String {
            var parts = ["wf"]
            for _ in 0..<number(4) {
                parts.append(pick([
                    "c" + pick(["text", "binary", "close", "9", "15"]), pick(["fin", "-fin", "mask", "-mask", "rsv1", "-rsv3"]),
                    "knone", "k'abcd'", "l" + String(number(70000)), "b" + value(naked: true), "r" + value(naked: true), action(),
                ]))
            }
            return parts.joined(separator: ":")
        }

        mutating func mutate(_ spec: String) -> String {
            var scalars = Array(spec.unicodeScalars)
            let alphabet = Array(":'\"@<,=\\-x0123456789abcdfhiklmprsuw \té".unicodeScalars)
            for _ in 0...number(3) {
                let index = scalars.isEmpty ? 0 : Int(number(UInt64(scalars.count - 1)))
                switch number(2) {
                case 0 where !scalars.isEmpty: scalars.remove(at: index)
                case 1: scalars.insert(pick(alphabet), at: index)
                default: if !scalars.isEmpty { scalars[index] = pick(alphabet) }
                }
            }
            return String(String.UnicodeScalarView(scalars))
        }
    }

    /// Parses `spec` both ways; checks error positions and round trips; returns how many parsed.
    func check(_ spec: String) -> Int {
        var parsed = 0
        do {
            let message = try SpecParser.parseServerMessage(spec)
            parsed += 1
            let again = try SpecParser.parseServerMessage(message.spec)
            #expect(again.spec == message.spec, "server round trip of \(spec)")
            if case .response(let r) = message {
                // Resolving and the first blocks of rendering never crash either.
                if let resolved = try? Resolver.resolve(r, settings: RenderSettings(websocketKey: "a2V5a2V5a2V5a2V5a2V5a2V5")),
                    let rendered = try? Renderer.layout(.response(resolved), settings: RenderSettings())
                {
                    var stream = rendered.makeStream()
                    for _ in 0..<4 { _ = try? stream.next() }
                }
            }
        } catch {
            #expect(error.position >= 0 && error.position <= spec.unicodeScalars.count, "\(spec): \(error)")
            #expect(!error.description.isEmpty)
        }
        do {
            let messages = try SpecParser.parseClientMessages(spec)
            parsed += 1
            // pathoc's side: resolving, explaining and the first blocks of rendering never crash.
            let settings = RenderSettings(isClient: true, requestHost: "example.com")
            for message in messages {
                _ = try? Resolver.freeze(message, settings: settings)
                let rendered: RenderedMessage?
                switch message {
                case .request(let r):
                    rendered = (try? Resolver.resolve(r, settings: settings)).flatMap { try? Renderer.layout(.request($0), settings: settings) }
                case .frame(let f):
                    rendered = (try? Resolver.resolve(f, settings: settings)).flatMap { try? Renderer.layout(.frame($0), settings: settings) }
                }
                if var stream = rendered?.makeStream() {
                    for _ in 0..<4 { _ = try? stream.next() }
                }
            }
            let printed = messages.map(\.spec).joined(separator: " ")
            let again = try SpecParser.parseClientMessages(printed)
            #expect(again.map(\.spec) == messages.map(\.spec), "client round trip of \(spec)")
        } catch {
            #expect(error.position >= 0 && error.position <= spec.unicodeScalars.count, "\(spec): \(error)")
        }
        return parsed
    }

    @Test("generated specs parse and print back; mutated ones never crash and point inside the spec")
    func fuzz() {
        var generator = Generator(rng: SplitMix64(seed: 0x5EED_0006))
        var parsed = 0
        for round in 0..<3000 {
            let spec: String
            switch round % 3 {
            case 0: spec = generator.response()
            case 1: spec = generator.request() + (generator.chance(30) ? " " + generator.frame() : "")
            default: spec = generator.frame()
            }
            parsed += check(spec)
            _ = check(generator.mutate(spec))
        }
        // The generator mostly makes valid specs (files and odd quotes aside).
        #expect(parsed > 1500)
    }

    @Test("arbitrary bytes never crash the parser")
    func noise() {
        var rng = SplitMix64(seed: 42)
        let alphabet = Array(":'\"@<,=\\-+0123456789abcdefghijklmnopqrstuvwxyzABC \t\n\u{7F}\u{01}é€".unicodeScalars)
        for _ in 0..<3000 {
            let length = Int(rng.next() % 40)
            let scalars = (0..<length).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }
            _ = check(String(String.UnicodeScalarView(scalars)))
        }
    }

    @Test("escaping round-trips every byte")
    func escaping() throws {
        var rng = SplitMix64(seed: 7)
        for _ in 0..<500 {
            let bytes = (0..<Int(rng.next() % 64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let escaped = Escaping.escape(bytes, quote: true)
            #expect(try Escaping.unescape(ArraySlice(escaped.utf8)).get() == bytes)
            #expect(try SpecParser.parseServerMessage("200:b'\(escaped)'").spec == "200:b'\(escaped)'")
        }
    }
}
