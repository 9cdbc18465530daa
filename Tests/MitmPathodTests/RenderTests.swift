import Foundation
import MitmPathod
import MitmTestSupport
import Testing

/// What specs turn into on the wire, and resolving/explaining (`-e`).
@Suite("pathod language: resolving and rendering")
struct RenderTests {
    let settings = RenderSettings()

    func serverBytes(_ spec: String, settings: RenderSettings = RenderSettings()) throws -> [UInt8] {
        guard case .response(let r) = try SpecParser.parseServerMessage(spec) else { return [] }
        let resolved = try Resolver.resolve(r, settings: settings)
        return try Renderer.layout(.response(resolved), settings: settings).collect()
    }

    func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    @Test("a plain response gets its reason and a Content-Length")
    func plainResponse() throws {
        #expect(text(try serverBytes("200")) == "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        #expect(text(try serverBytes("200:b'hello'")) == "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        #expect(text(try serverBytes("299")) == "HTTP/1.1 299 Unknown code\r\nContent-Length: 0\r\n\r\n")
        #expect(text(try serverBytes("404:m'Gone Fishing':h'X-A'='1':c'text/plain':l'/next'"))
            == "HTTP/1.1 404 Gone Fishing\r\nX-A: 1\r\nContent-Type: text/plain\r\nLocation: /next\r\nContent-Length: 0\r\n\r\n")
    }

    @Test("raw responses get no Content-Length; an explicit one is kept")
    func raw() throws {
        #expect(text(try serverBytes("200:r:b'abc'")) == "HTTP/1.1 200 OK\r\n\r\nabc")
        #expect(text(try serverBytes("200:h'content-length'='99':b'abc'")) == "HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\nabc")
    }

    @Test("generated bodies have the size asked for and the alphabet of their type")
    func generatedBodies() throws {
        let bytes = try serverBytes("200:b@2k,digits")
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 2048\r\n\r\n"
        #expect(bytes.count == head.utf8.count + 2048)
        #expect(bytes.dropFirst(head.utf8.count).allSatisfy { (0x30...0x39).contains($0) })
        for type in DataType.allCases {
            let source = RandomSource(type: type, length: 500)
            let alphabet = Set(type.alphabet)
            #expect(try source.readAll().allSatisfy { alphabet.contains($0) })
        }
    }

    @Test("a gigabyte body is a stream: the first blocks come without the rest existing")
    func streaming() throws {
        guard case .response(let r) = try SpecParser.parseServerMessage("200:b@1g") else { return }
        let resolved = try Resolver.resolve(r, settings: settings)
        let rendered = try Renderer.layout(.response(resolved), settings: settings)
        #expect(rendered.length == UInt64("HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n".utf8.count) + (1 << 30))
        var stream = rendered.makeStream()
        var seen = 0
        for _ in 0..<20 {
            guard case .data(let block) = try stream.next() else { break }
            #expect(block.count <= Renderer.blockSize)
            seen += block.count
        }
        #expect(seen > 0 && seen <= 20 * Renderer.blockSize)
    }

    @Test("actions: disconnect, inject and pause at offsets, in offset order")
    func actions() throws {
        guard case .response(let r) = try SpecParser.parseServerMessage("200:r:b'abcdef':p3,1:i2,'XY':d4") else { return }
        let rendered = try Renderer.layout(.response(r), settings: settings)
        var stream = rendered.makeStream()
        var events: [String] = []
        while let event = try stream.next() {
            switch event {
            case .data(let bytes): events.append("data:" + text(bytes))
            case .pause(let duration): events.append("pause:\(duration)")
            case .disconnect: events.append("disconnect")
            }
        }
        #expect(events == ["data:HT", "data:XY", "data:T", "pause:1", "data:P", "disconnect"])
    }

    @Test("offsets a and r resolve to numbers: a is one past the end, r inside the message")
    func offsets() throws {
        guard case .response(let r) = try SpecParser.parseServerMessage("200:b'abc':da:ir,'x'") else { return }
        let resolved = try Resolver.resolve(r, settings: settings)
        let length = try Renderer.layout(.response(resolved), settings: settings).length
        #expect(resolved.features.contains(.action(.disconnect(.bytes(length + 1)))))
        let inject = resolved.actions.compactMap { if case .inject(.bytes(let n), _) = $0 { n } else { nil } }
        #expect(inject.count == 1 && inject[0] < length)
        // Everything is sent before a disconnect at the end.
        #expect(try Renderer.layout(.response(resolved), settings: settings).collect().count == Int(length) + 1)
    }

    @Test("requests get Host and Content-Length unless raw; the embedded response goes on the path")
    func requests() throws {
        let settings = RenderSettings(isClient: true, requestHost: "example.com")
        guard case .request(let r) = try SpecParser.parseClientMessages("post:/p/:s'201:b\"a b\"':b'xyz':uf")[0] else { return }
        let bytes = try Renderer.layout(.request(try Resolver.resolve(r, settings: settings)), settings: settings).collect()
        #expect(text(bytes) == "POST /p/201:b'a%20b' HTTP/1.1\r\nUser-Agent: \(UserAgent.all[4].value)\r\nContent-Length: 3\r\nHost: example.com\r\n\r\nxyz")
        guard case .request(let raw) = try SpecParser.parseClientMessages("get:/:r")[0] else { return }
        #expect(text(try Renderer.layout(.request(try Resolver.resolve(raw, settings: settings)), settings: settings).collect())
            == "GET / HTTP/1.1\r\n\r\n")
    }

    @Test("websocket handshakes: ws requests get the upgrade headers, ws responses the accept key")
    func websocketHandshake() throws {
        guard case .request(let r) = try SpecParser.parseClientMessages("ws:/chat")[0] else { return }
        let request = text(try Renderer.layout(.request(try Resolver.resolve(r, settings: settings)), settings: settings).collect())
        #expect(request.hasPrefix("GET /chat HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: "))
        let server = RenderSettings(websocketKey: "dGhlIHNhbXBsZSBub25jZQ==")
        #expect(text(try serverBytes("ws", settings: server))
            == "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nContent-Length: 0\r\n\r\n")
        #expect(throws: RenderError.self) { try serverBytes("ws") }
    }

    @Test("frames: header bits, lengths, masking")
    func frames() throws {
        func frameBytes(_ spec: String, client: Bool = false) throws -> [UInt8] {
            guard case .frame(let f) = try SpecParser.parseServerMessage(spec) else { return [] }
            let settings = RenderSettings(isClient: client)
            return try Renderer.layout(.frame(try Resolver.resolve(f, settings: settings)), settings: settings).collect()
        }
        #expect(try frameBytes("wf:b'hi'") == [0x81, 2, 0x68, 0x69])
        #expect(try frameBytes("wf:cbinary:-fin:rsv1") == [0x42, 0])
        #expect(try frameBytes("wf:b'hi':k'\\x01\\x02\\x03\\x04'") == [0x81, 0x82, 1, 2, 3, 4, 0x68 ^ 1, 0x69 ^ 2])
        #expect(try frameBytes("wf:r'hi':k'\\x01\\x02\\x03\\x04'") == [0x81, 0x82, 1, 2, 3, 4, 0x68, 0x69])
        #expect(try frameBytes("wf:b'hi':l300").prefix(4) == [0x81, 126, 1, 44])
        #expect(try frameBytes("wf:b@70k").prefix(10) == [0x81, 127, 0, 0, 0, 0, 0, 1, 0x18, 0])
        #expect(try frameBytes("wf:mask:knone:b'x'") == [0x81, 0x81, 0x78])
        // Client frames are masked with a random key unless told otherwise.
        let masked = try frameBytes("wf:b'abcd'", client: true)
        #expect(masked.count == 2 + 4 + 4 && masked[1] == 0x84)
        #expect(zip(masked[6...], masked[2..<6]).map { $0 ^ $1 } == Array("abcd".utf8))
    }

    @Test("file values read under the static directory and nowhere else")
    func files() throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        _ = try scratch.write("body.txt", Data("from a file".utf8))
        let settings = RenderSettings(staticDirectory: scratch.path)
        #expect(text(try serverBytes("200:b<body.txt", settings: settings)).hasSuffix("Content-Length: 11\r\n\r\nfrom a file"))
        #expect(throws: RenderError.fileAccessDenied("File access outside of configured directory")) {
            try serverBytes("200:b<../../etc/passwd", settings: settings)
        }
        #expect(throws: RenderError.fileAccessDenied("File access disabled.")) { try serverBytes("200:b<body.txt") }
        #expect(throws: RenderError.fileAccessDenied("File not readable")) { try serverBytes("200:b<missing", settings: settings) }
    }

    @Test("explain: frozen specs fix every random choice and replay to the same bytes")
    func explainReplays() throws {
        let settings = RenderSettings(isClient: true, requestHost: "localhost")
        for spec in ["get:/:b@10:ir,@1", "get:/p/:s'401:ir,@1':dr", "post:/x:b@100,ascii:pr,1", "ws:/"] {
            guard case .request(let r) = try SpecParser.parseClientMessages(spec)[0] else { continue }
            let frozen = try Resolver.freeze(r, settings: settings)
            let once = try Renderer.layout(.request(frozen), settings: settings).collect()
            guard case .request(let replayed) = try SpecParser.parseClientMessages(frozen.spec)[0] else { continue }
            let again = try Renderer.layout(.request(try Resolver.resolve(replayed, settings: settings)), settings: settings).collect()
            #expect(once == again, "\(spec) → \(frozen.spec)")
            #expect(replayed.spec == frozen.spec)
        }
        guard case .response(let r) = try SpecParser.parseServerMessage("200:b@20:ir,@2:dr") else { return }
        let frozen = try Resolver.freeze(r, settings: RenderSettings())
        for feature in frozen.features {
            switch feature {
            case .body(let value): #expect(value.literalBytes?.count == 20)
            case .action(let action):
                if case .bytes = action.offset {} else { Issue.record("unresolved offset in \(frozen.spec)") }
                if case .inject(_, let value) = action { #expect(value.literalBytes?.count == 2) }
            default: break
            }
        }
    }
}
