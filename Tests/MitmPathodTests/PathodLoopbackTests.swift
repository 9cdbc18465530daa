import Foundation
import MitmCore
import MitmPathod
import MitmTestSupport
import Testing

/// pathod on a loopback port, driven by curl and raw sockets: crafted responses, errors, anchors,
/// files, limits, proxy requests, CONNECT, and the actions on the wire.
@Suite("pathod over loopback", .timeLimit(.minutes(2)))
struct PathodLoopbackTests {
    struct Transfer {
        var status: Int
        var body: Data
        var headers: String
        var result: CommandResult
    }

    func curl(_ arguments: [String]) async throws -> Transfer {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let body = scratch.file("body")
        let headers = scratch.file("headers")
        let result = try await CommandRunner.run(
            "curl", ["-s", "--max-time", "60", "-o", body, "-D", headers, "-w", "%{http_code}"] + arguments, timeout: 70
        )
        return Transfer(
            status: Int(result.output) ?? 0,
            body: (try? Data(contentsOf: URL(fileURLWithPath: body))) ?? Data(),
            headers: (try? String(contentsOfFile: headers, encoding: .utf8)) ?? "",
            result: result
        )
    }

    @Test("a spec under /p/ is served, and logged with the request")
    func crafted() async throws {
        try await withPathod { pathod in
            let t = try await curl([pathod.url(for: "201:b@100,digits:h'X-Test'='yes':m'Made Up'")])
            #expect(t.status == 201, "\(t.result)")
            #expect(t.body.count == 100 && t.body.allSatisfy { (0x30...0x39).contains($0) })
            #expect(t.headers.contains("HTTP/1.1 201 Made Up") && t.headers.contains("X-Test: yes"), "\(t.headers)")
            let entry = try #require(await pathod.waitForLog { $0.type == "crafted" })
            #expect(entry.request?.method == "GET")
            #expect(entry.request?.path.contains("/p/201") == true)
            #expect(entry.response?.statusCode == 201)
            #expect(entry.response?.spec.contains("h'Content-Length'='100'") == true)
            #expect(entry.response?.disconnect == false)
        }
    }

    @Test("a bad spec gets 800 with the position and a caret; an unknown path gets 800 Not found")
    func errors() async throws {
        try await withPathod { pathod in
            let bad = try await curl([pathod.url(for: "200:b'unterminated")])
            #expect(bad.status == 800)
            #expect(bad.headers.contains("800 Parse Error"))
            let text = String(decoding: bad.body, as: UTF8.self)
            #expect(text.contains("expected a closing ' for the string opened at position 5 at position 18"), "\(text)")
            #expect(text.contains("200:b'unterminated\n                  ^"), "\(text)")
            let missing = try await curl([pathod.baseURL + "/nothing/here"])
            #expect(missing.status == 800 && missing.headers.contains("Not found"))
            #expect(String(decoding: missing.body, as: UTF8.self) == "pathod error: No valid craft request found")
            #expect(pathod.log.filter { $0.type == "error" }.count == 2)
        }
    }

    @Test("anchors map a path pattern to a spec")
    func anchors() async throws {
        try await withPathod(configure: { $0.anchors = [("/foo", "202:b'anchored'"), ("/bar/[0-9]+", "203")] }) { pathod in
            let foo = try await curl([pathod.baseURL + "/foo/anything"])
            #expect(foo.status == 202 && String(decoding: foo.body, as: UTF8.self) == "anchored")
            #expect(try await curl([pathod.baseURL + "/bar/42"]).status == 203)
            #expect(try await curl([pathod.baseURL + "/bar/x"]).status == 800)
        }
        #expect(throws: PathodConfigurationError.self) {
            var configuration = PathodConfiguration()
            configuration.anchors = [("/x", "2oo")]
            _ = try PathodServer(configuration: configuration)
        }
    }

    @Test("file values come from the static directory only; the size limit refuses large responses")
    func filesAndLimits() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        _ = try scratch.write("file.txt", Data("static content".utf8))
        try await withPathod(configure: {
            $0.staticDirectory = scratch.path
            $0.sizeLimit = 1000
        }) { pathod in
            let file = try await curl([pathod.url(for: "200:b<file.txt")])
            #expect(file.status == 200 && String(decoding: file.body, as: UTF8.self) == "static content")
            let outside = try await curl(["--path-as-is", pathod.url(for: "200:b<../../../etc/passwd")])
            #expect(outside.status == 800 && outside.headers.contains("File access denied."), "\(outside.headers)")
            let large = try await curl([pathod.url(for: "200:b@2k")])
            #expect(large.status == 800 && large.headers.contains("Response too large."))
            #expect(try await curl([pathod.url(for: "200:b@500")]).status == 200)
        }
    }

    @Test("--nocraft refuses URL specs, --nohang refuses pauses, -t closes idle connections")
    func policies() async throws {
        try await withPathod(configure: {
            $0.noCraft = true
            $0.anchors = [("/ok", "200")]
        }) { pathod in
            let refused = try await curl([pathod.url(for: "200")])
            #expect(refused.status == 800 && refused.headers.contains("Crafting disabled."))
            #expect(try await curl([pathod.baseURL + "/ok"]).status == 200)
        }
        try await withPathod(configure: { $0.noHang = true }) { pathod in
            let refused = try await curl([pathod.url(for: "200:p0,5")])
            #expect(refused.status == 800 && refused.headers.contains("Pauses have been disabled."))
        }
        try await withPathod(configure: { $0.explain = true }) { pathod in
            _ = try await curl([pathod.url(for: "200:b@6,digits:dr")])
            let entry = try #require(await pathod.waitForLog { $0.type == "crafted" })
            let spec = try #require(entry.response?.spec)
            // Explained: the body is the literal that was sent, the random offset a number.
            #expect(!spec.contains("@") && !spec.contains(":dr") && spec.hasPrefix("200:b'"), "\(spec)")
        }
        try await withPathod(configure: { $0.timeout = 0.5 }) { pathod in
            let idle = try await RawConnection.connect(port: pathod.port)
            #expect(await idle.waitForClose(timeout: 10))
            await idle.close()
            #expect(await pathod.waitForLog { $0.type == "timeout" } != nil)
        }
    }

    @Test("a generated body streams: 16 MiB arrive whole")
    func bigBody() async throws {
        try await withPathod { pathod in
            let t = try await curl([pathod.url(for: "200:b@16m")])
            #expect(t.status == 200 && t.body.count == 16 << 20, "\(t.result)")
        }
    }

    @Test("a gigabyte body is streamed as the client reads: a client that leaves early stops it")
    func gigabyte() async throws {
        try await withPathod { pathod in
            // curl reads the head, sees a Content-Length above its limit, and hangs up.
            let t = try await curl(["--max-filesize", "1000", pathod.url(for: "200:b@1g")])
            #expect(t.result.exitCode == 63, "\(t.result)")
            let entry = try #require(await pathod.waitForLog(timeout: 30) { $0.type == "crafted" })
            #expect(entry.response?.disconnect == true)
            #expect((entry.response?.bytesWritten ?? .max) < 1 << 30)
        }
    }

    @Test("proxy requests are served by their path, CONNECT tunnels with TLS or (-C) in plain text")
    func proxying() async throws {
        try await withPathod { pathod in
            let proxied = try await curl(["-x", pathod.baseURL, "http://example.com" + pathod.path(for: "200:b'via proxy'")])
            #expect(proxied.status == 200 && String(decoding: proxied.body, as: UTF8.self) == "via proxy")
            let tunnelled = try await curl(["-k", "-x", pathod.baseURL, "https://example.com" + pathod.path(for: "200:b'via tls'")])
            #expect(tunnelled.status == 200 && String(decoding: tunnelled.body, as: UTF8.self) == "via tls", "\(tunnelled.result)")
            #expect(pathod.log.last?.request?.tls == true)
        }
        try await withPathod(configure: { $0.connectTLS = false }) { pathod in
            let plain = try await curl(["-p", "-x", pathod.baseURL, "http://example.com" + pathod.path(for: "200:b'plain tunnel'")])
            #expect(plain.status == 200 && String(decoding: plain.body, as: UTF8.self) == "plain tunnel", "\(plain.result)")
        }
    }

    @Test("with -s every connection is TLS, offering HTTP/2 by ALPN")
    func ssl() async throws {
        try await withPathod(configure: { $0.ssl = true }) { pathod in
            let t = try await curl(["-k", "--http1.1", pathod.url(for: "200:b'secure'", scheme: "https")])
            #expect(t.status == 200 && String(decoding: t.body, as: UTF8.self) == "secure", "\(t.result)")
            let h2 = try await curl(["-k", "--http2", pathod.url(for: "201:b'over h2':h'X-A'='b'", scheme: "https")])
            #expect(h2.status == 201 && String(decoding: h2.body, as: UTF8.self) == "over h2", "\(h2.result)")
            #expect(h2.headers.hasPrefix("HTTP/2 201") && h2.headers.contains("x-a: b"), "\(h2.headers)")
            let bad = try await curl(["-k", "--http2", pathod.url(for: "20x", scheme: "https")])
            #expect(bad.status == 800 && String(decoding: bad.body, as: UTF8.self).contains("20x\n  ^"), "\(bad.result)")
            #expect(pathod.log.last?.request?.httpVersion == "HTTP/2")
        }
    }

    @Test("actions on the wire: injected bytes, a disconnect mid-body, a pause")
    func actions() async throws {
        try await withPathod { pathod in
            let raw = try await RawConnection.connect(port: pathod.port)
            try await raw.send("GET \(pathod.path(for: "200:b'abc':i2,'XYZ'")) HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(await raw.waitForText("abc"))
            #expect(raw.receivedText.hasPrefix("HTXYZTP/1.1 200 OK\r\n"), "\(raw.receivedText)")
            await raw.close()

            let cut = try await RawConnection.connect(port: pathod.port)
            try await cut.send("GET \(pathod.path(for: "200:b@1k:d100")) HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(await cut.waitForClose())
            #expect(cut.received.count == 100)
            await cut.close()
            let entry = try #require(await pathod.waitForLog { $0.response?.spec.contains("d100") == true })
            #expect(entry.response?.disconnect == true && entry.response?.bytesWritten == 100)

            let paused = try await curl([pathod.url(for: "200:b'slow body':p5,1")])
            #expect(paused.status == 200 && String(decoding: paused.body, as: UTF8.self) == "slow body")
        }
    }

    @Test("websockets: the handshake is answered, frames logged, nested frame specs served back")
    func websocket() async throws {
        try await withPathod { pathod in
            let lines = LinesBox()
            let pathoc = Pathoc(configuration: PathocConfiguration(host: "127.0.0.1", port: pathod.port)) { lines.append($0) }
            let messages = try SpecParser.parseClientMessages("ws:/ wf:b'hello' wf:f'wf:b\"back\":x2'")
            #expect(await pathoc.run(messages))
            #expect(lines.all.contains("<< 101 Switching Protocols: 0 bytes"), "\(lines.all)")
            #expect(lines.all.filter { $0 == "<< frame text: 4 bytes: back" }.count == 2, "\(lines.all)")
            let frame = try #require(await pathod.waitForLog { $0.type == "frame" })
            #expect(frame.frame?.payload == "hello" && frame.frame?.masked == true)
        }
    }
}

/// Lines printed by an in-process pathoc.
final class LinesBox: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ line: String) { lock.withLock { lines.append(line) } }
    var all: [String] { lock.withLock { lines } }
}

/// Mutated specs sent to a live pathod: each is answered (800 if it does not parse) or cut off,
/// and pathod keeps serving.
@Suite("pathod under fuzzed specs", .timeLimit(.minutes(2)))
struct PathodFuzzTests {
    @Test("pathod answers every mutated spec and survives")
    func fuzzOverTheWire() async throws {
        var generator = SpecFuzzTests.Generator(rng: SplitMix64(seed: 0x600D))
        // The size limit keeps mutated sizes (@2000t) from streaming for ever.
        try await withPathod(configure: { $0.sizeLimit = 1 << 20 }) { pathod in
            var answered = 0
            for round in 0..<60 {
                var spec = generator.mutate(round % 2 == 0 ? generator.response() : generator.frame())
                // Pauses would only slow the test down; everything else goes.
                spec = spec.replacingOccurrences(of: ":p", with: ":h")
                let raw = try await RawConnection.connect(port: pathod.port)
                try await raw.send("GET \(pathod.path(for: spec)) HTTP/1.1\r\nHost: x\r\n\r\n")
                for _ in 0..<100 where raw.received.isEmpty && !raw.isClosedByPeer {
                    try await Task.sleep(for: .milliseconds(20))
                }
                if !raw.received.isEmpty || raw.isClosedByPeer { answered += 1 }
                await raw.close()
            }
            #expect(answered > 40)
            let ok = try await RawConnection.connect(port: pathod.port)
            try await ok.send("GET \(pathod.path(for: "200:b'alive'")) HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(await ok.waitForText("alive"))
            await ok.close()
        }
    }
}
