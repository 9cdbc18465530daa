import MitmPathod
import Testing

/// The language, feature by feature: what each spec parses to and how it prints back.
@Suite("pathod language: parsing")
struct SpecParserTests {
    func response(_ spec: String) throws -> ResponseSpec {
        guard case .response(let r) = try SpecParser.parseServerMessage(spec) else {
            Issue.record("\(spec) is not a response")
            return ResponseSpec(code: 0)
        }
        return r
    }

    func request(_ spec: String) throws -> RequestSpec {
        let messages = try SpecParser.parseClientMessages(spec)
        guard messages.count == 1, case .request(let r) = messages[0] else {
            Issue.record("\(spec) is not one request")
            return RequestSpec(method: nil, path: .naked([]))
        }
        return r
    }

    func frame(_ spec: String) throws -> FrameSpec {
        guard case .frame(let f) = try SpecParser.parseServerMessage(spec) else {
            Issue.record("\(spec) is not a frame")
            return FrameSpec()
        }
        return f
    }

    func error(_ spec: String, client: Bool = false) -> SpecParseError? {
        do {
            if client { _ = try SpecParser.parseClientMessages(spec) } else { _ = try SpecParser.parseServerMessage(spec) }
            return nil
        } catch {
            return error
        }
    }

    // MARK: - Values

    @Test("quoted literals take either quote and Python-style escapes")
    func literals() throws {
        #expect(try response("200:b'foo'").features == [.body(.literal(Array("foo".utf8)))])
        #expect(try response("200:b\"fo'o\"").features == [.body(.literal(Array("fo'o".utf8)))])
        #expect(try response(#"200:b'fo\'o'"#).features == [.body(.literal(Array("fo'o".utf8)))])
        #expect(try response(#"200:b'a\r\nb\x00\t\\'"#).features == [.body(.literal([0x61, 13, 10, 0x62, 0, 9, 0x5C]))])
        #expect(try response(#"200:b'\101\q'"#).features == [.body(.literal(Array("A\\q".utf8)))])
    }

    @Test("naked literals where the grammar allows them")
    func naked() throws {
        #expect(try response("200:bfoo").features == [.body(.naked(Array("foo".utf8)))])
        #expect(try request("get:/foo/bar").path == .naked(Array("/foo/bar".utf8)))
        #expect(try response("200:mGone:cimage/png").features == [
            .reason(.naked(Array("Gone".utf8))), .contentType(.naked(Array("image/png".utf8))),
        ])
    }

    @Test("generated values: every suffix and every data type")
    func generated() throws {
        for unit in SizeUnit.allCases {
            let suffix = unit == .bytes ? "b" : unit.rawValue
            #expect(try response("200:b@3\(suffix)").features == [.body(.generated(count: 3, unit: unit, type: .bytes))])
        }
        for type in DataType.allCases {
            #expect(try response("200:b@10,\(type.rawValue)").features == [.body(.generated(count: 10, unit: .bytes, type: type))])
        }
        #expect(SpecValue.generated(count: 100, unit: .kilobytes, type: .ascii).spec == "@100k,ascii")
        #expect(SpecValue.generated(count: 1, unit: .gigabytes, type: .bytes).generatedSize == 1 << 30)
    }

    @Test("file values, naked or quoted")
    func files() throws {
        #expect(try response("200:b<my/path").features == [.body(.file("my/path"))])
        #expect(try response("200:b<'my path'").features == [.body(.file("my path"))])
    }

    // MARK: - Responses

    @Test("response features h c l r m b d i p, and ws")
    func responseFeatures() throws {
        let r = try response("404:h'X'='y':c'text/html':l'/x':r:m'Nope':b'z':d10:i5,'!':p3,2:p4,f")
        #expect(r.code == 404)
        #expect(r.features == [
            .header(.literal([0x58]), .literal([0x79])), .contentType(.literal(Array("text/html".utf8))),
            .location(.literal(Array("/x".utf8))), .raw, .reason(.literal(Array("Nope".utf8))), .body(.literal([0x7A])),
            .action(.disconnect(.bytes(10))), .action(.inject(.bytes(5), .literal([0x21]))),
            .action(.pause(.bytes(3), .seconds(2))), .action(.pause(.bytes(4), .forever)),
        ])
        #expect(try response("200:dr").features == [.action(.disconnect(.random))])
        #expect(try response("200:da").features == [.action(.disconnect(.end))])
        #expect(try response("ws").isWebSocket)
        #expect(try response("ws:201").code == 201)
        #expect(try response("WS:b'x'").isWebSocket)
    }

    // MARK: - Requests

    @Test("request methods: standard names in any case, or quoted values")
    func methods() throws {
        for name in MethodSpec.standardNames {
            #expect(try request("\(name.lowercased()):/").method == .standard(name))
        }
        #expect(try request("'BREW':/pot").method == .value(.literal(Array("BREW".utf8))))
        #expect(try request("GeT:/").method == .standard("GET"))
    }

    @Test("request features h c u r b s x d i p, User-Agent shortcuts by name or letter")
    func requestFeatures() throws {
        let r = try request("post:/x:h'A'='b':c'text/plain':uchrome:r:b@10:x3:d5:i1,'z':p2,1")
        #expect(r.features.count == 9)
        #expect(r.features[2] == .userAgent(.shortcut(UserAgent.all.first { $0.name == "chrome" }!)))
        #expect(r.times == 3)
        #expect(try request("get:/:ua").features == [.userAgent(.shortcut(UserAgent.all[0]))])
        #expect(try request("get:/:u'custom'").features == [.userAgent(.value(.literal(Array("custom".utf8))))])
        let nested = try request("get:/p/:s'401:ir,@1'")
        #expect(nested.features == [.nestedResponse(NestedResponse(ResponseSpec(code: 401, features: [
            .action(.inject(.random, .generated(count: 1, unit: .bytes, type: .bytes))),
        ])))])
    }

    @Test("websocket requests, with and without a method; full URLs quoted")
    func websocketRequests() throws {
        let plain = try request("ws:/chat")
        #expect(plain.isWebSocket && plain.method == nil && plain.path == .naked(Array("/chat".utf8)))
        let withMethod = try request("ws:post:/chat")
        #expect(withMethod.method == .standard("POST"))
        #expect(try request("get:'http://example.com/p/200'").path == .literal(Array("http://example.com/p/200".utf8)))
    }

    @Test("several specs on a line, separated by whitespace")
    func severalSpecs() throws {
        let messages = try SpecParser.parseClientMessages("get:/a  get:/b\nws:/ wf:b'hi'")
        #expect(messages.count == 4)
    }

    // MARK: - Frames

    @Test("frame features: opcodes by name and number, flags, keys, lengths, bodies")
    func frames() throws {
        let f = try frame("wf:cbinary:-fin:rsv1:-rsv2:rsv3:mask:k'abcd':l100:x2:b'hello':d3:i1,'x':p2,1")
        #expect(f.features.contains(.opcode(.named("binary"))))
        #expect(f.features.contains(.fin(false)))
        #expect(f.features.contains(.rsv1(true)))
        #expect(f.features.contains(.rsv2(false)))
        #expect(f.features.contains(.key(.literal(Array("abcd".utf8)))))
        #expect(f.features.contains(.length(100)))
        #expect(f.times == 2)
        #expect(try frame("wf:c9").features == [.opcode(.number(9))])
        #expect(try frame("wf:knone:-mask:r'raw'").features == [.keyNone, .mask(false), .rawBody(.literal(Array("raw".utf8)))])
        #expect(try frame("wf").features.isEmpty)
        for (name, value) in OpcodeSpec.names {
            #expect(try frame("wf:c\(name)").features == [.opcode(.named(name))])
            #expect(OpcodeSpec.named(name).value == value)
        }
        let nested = try SpecParser.parseClientMessages("wf:f'wf:b\"x\"'")
        #expect(nested == [.frame(FrameSpec(features: [.nestedFrame(FrameSpec(features: [.body(.literal([0x78]))]))]))])
    }

    // MARK: - Errors

    @Test("errors carry a position and what was expected")
    func errors() throws {
        let bad = try #require(error("foo"))
        #expect(bad.position == 0)
        #expect(bad.expected?.contains("status code") == true)
        #expect(bad.marked == "foo\n^")

        let feature = try #require(error("200:q"))
        #expect(feature.position == 4)
        #expect(feature.expected?.contains("response feature") == true)

        let unterminated = try #require(error("200:b'abc"))
        #expect(unterminated.position == 9)
        #expect(unterminated.expected?.contains("closing '") == true)

        let datatype = try #require(error("200:b@10,nonsense"))
        #expect(datatype.position == 9)
        #expect(datatype.expected?.contains("data type") == true)

        let twice = try #require(error("200:b'a':b'b'"))
        #expect(twice.position == 9)
        #expect(twice.reason?.contains("multiple body") == true)

        let method = try #require(error("fetch:/", client: true))
        #expect(method.position == 0 && method.expected?.contains("method") == true)

        let path = try #require(error("get", client: true))
        #expect(path.position == 3)

        let key = try #require(error("wf:k'abc'"))
        #expect(key.reason?.contains("4 bytes") == true)

        let opcode = try #require(error("wf:c16"))
        #expect(opcode.reason?.contains("above 15") == true)

        let huge = try #require(error("200:b@99999999999999999999"))
        #expect(huge.reason?.contains("too large") == true)
        let overflow = try #require(error("200:b@99999999999t"))
        #expect(overflow.reason?.contains("too large") == true)

        let nested = try #require(error("get:/:s'200:q'", client: true))
        #expect(nested.position == 12)
        #expect(nested.description.contains("embedded response"))

        let ascii = try #require(error("200:b'é'"))
        #expect(ascii.position == 6 && ascii.reason == "spec must be ASCII")

        let hex = try #require(error(#"200:b'\xzz'"#))
        #expect(hex.expected?.contains("hex") == true)
    }

    @Test("the description says what, where and what was found")
    func description() throws {
        let bad = try #require(error("200:b@"))
        #expect(bad.description == "expected a size (an integer) after '@' at position 6 (found end of spec)")
    }
}
