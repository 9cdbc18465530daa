import Foundation
import MitmPathod
import MitmTestSupport
import Testing

/// The proxy in front of a pathod: upstreams that hang up mid-body, pause, break their chunked
/// coding or end a body by closing. Each spec says exactly what the upstream does on the wire.
@Suite("Pathological upstreams (pathod)", .timeLimit(.minutes(2)))
struct PathologicalUpstreamTests {
    @Test("An upstream that disconnects mid-body gets the client a 502; the next request is served")
    func disconnectMidBody() async throws {
        try await withPathod { pathod in
            try await withProxy { proxy in
                let cut = try await Curl.transfer(["-x", proxy.proxyURL, pathod.url(for: "200:b@10k:d3000")], maxTime: 30)
                #expect(cut.statusCode == 502, "\(cut)")
                let entry = try #require(await pathod.waitForLog { $0.response?.spec.contains("d3000") == true })
                #expect(entry.response?.disconnect == true && entry.response?.bytesWritten == 3000)

                let next = try await Curl.transfer(["-x", proxy.proxyURL, pathod.url(for: "200:b'still here'")], maxTime: 30)
                #expect(next.statusCode == 200 && next.bodyText == "still here", "\(next)")
            }
        }
    }

    @Test("An upstream that hangs up before answering gets the client a 502")
    func disconnectBeforeAnswer() async throws {
        try await withPathod { pathod in
            try await withProxy { proxy in
                let t = try await Curl.transfer(["-x", proxy.proxyURL, pathod.url(for: "200:d0")], maxTime: 30)
                #expect(t.statusCode == 502, "\(t)")
            }
        }
    }

    @Test("A streamed body cut off by the upstream ends the client's transfer early")
    func disconnectWhileStreaming() async throws {
        try await withPathod { pathod in
            try await withProxy(configure: { $0.streamLargeBodies = 1024 }) { proxy in
                let t = try await Curl.transfer(["-x", proxy.proxyURL, pathod.url(for: "200:b@64k:d20000")], maxTime: 30)
                #expect(t.statusCode == 200, "\(t)")
                #expect(t.body.count < 64 * 1024, "\(t.body.count) bytes")
                #expect(t.command.exitCode != 0, "curl must notice the short body: \(t)")
            }
        }
    }

    @Test("Pauses in the upstream response are waited out: the body arrives whole")
    func pauses() async throws {
        try await withPathod { pathod in
            try await withProxy { proxy in
                let t = try await Curl.transfer(["-x", proxy.proxyURL, pathod.url(for: "200:b@2k,ascii_letters:p20,1:p1500,1")], maxTime: 30)
                #expect(t.statusCode == 200 && t.body.count == 2048, "\(t)")
                #expect(t.body.allSatisfy { (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) })
            }
        }
    }

    @Test("Broken chunked coding from the upstream is a 502, not a garbled body")
    func brokenChunking() async throws {
        try await withPathod { pathod in
            try await withProxy { proxy in
                let t = try await Curl.transfer([
                    "-x", proxy.proxyURL,
                    pathod.url(for: "200:r:h'Transfer-Encoding'='chunked':b'5\\r\\nhello\\r\\nZZ\\r\\n'"),
                ], maxTime: 30)
                #expect(t.statusCode == 502, "\(t)")
                #expect(!t.bodyText.contains("hello"), "\(t)")
            }
        }
    }

    @Test("A body delimited by the upstream closing (no Content-Length) reaches the client whole")
    func closeDelimited() async throws {
        try await withPathod { pathod in
            try await withProxy { proxy in
                let t = try await Curl.transfer(["-x", proxy.proxyURL, pathod.url(for: "200:r:b@5k,digits:da")], maxTime: 30)
                #expect(t.statusCode == 200 && t.body.count == 5120, "\(t)")
            }
        }
    }

    @Test("The upstream sees the request the proxy forwards: origin form, the Host, the client's headers")
    func forwardedRequest() async throws {
        try await withPathod { pathod in
            try await withProxy { proxy in
                let t = try await Curl.transfer(["-x", proxy.proxyURL, "-H", "X-Probe: 1", pathod.url(for: "204")], maxTime: 30)
                #expect(t.statusCode == 204, "\(t)")
                let request = try #require(await pathod.waitForLog { $0.type == "crafted" }?.request)
                #expect(request.path == pathod.path(for: "204"), "\(request)")
                let headers = Dictionary(request.headers.map { ($0[0].lowercased(), $0[1]) }, uniquingKeysWith: { a, _ in a })
                #expect(headers["host"] == pathod.authority && headers["x-probe"] == "1", "\(headers)")
            }
        }
    }

    @Test("An HTTPS upstream (pathod -s) through an intercepting proxy")
    func httpsUpstream() async throws {
        try await withPathod(configure: { $0.ssl = true }) { pathod in
            try await withProxy(configure: { $0.sslInsecure = true }) { proxy in
                let t = try await Curl.transfer([
                    "-x", proxy.proxyURL, "--cacert", proxy.caCertificatePath,
                    pathod.url(for: "200:b'over tls':h'X-Upstream'='pathod'", scheme: "https"),
                ], maxTime: 30)
                #expect(t.statusCode == 200 && t.bodyText == "over tls" && t.header("x-upstream") == "pathod", "\(t)")
                #expect(pathod.log.last?.request?.tls == true)
            }
        }
    }
}

/// pathoc as the client of the proxy: proxy requests, CONNECT with TLS, and requests that break
/// off or carry garbage, with a pathod behind.
@Suite("Pathological clients (pathoc)", .timeLimit(.minutes(2)))
struct PathologicalClientTests {
    final class Lines: @unchecked Sendable {
        private let lock = NSLock()
        private var lines: [String] = []
        func append(_ line: String) { lock.withLock { lines.append(line) } }
        var all: [String] { lock.withLock { lines } }
    }

    func run(_ specs: String, port: Int, configure: (inout PathocConfiguration) -> Void = { _ in }) async throws -> (Bool, [String]) {
        var configuration = PathocConfiguration(host: "127.0.0.1", port: port)
        configuration.timeout = 10
        configure(&configuration)
        let lines = Lines()
        let ok = await Pathoc(configuration: configuration) { lines.append($0) }.run(try SpecParser.parseClientMessages(specs))
        return (ok, lines.all)
    }

    @Test("Full-URL specs make proxy requests; several go over one client connection")
    func proxyRequests() async throws {
        try await withPathod { pathod in
            try await withProxy { proxy in
                let url = pathod.url(for: "200:b@100")
                let (ok, lines) = try await run("get:'\(url)' get:'\(pathod.url(for: "404"))'", port: proxy.port)
                #expect(ok && lines.contains("<< 200 OK: 100 bytes") && lines.contains("<< 404 Not Found: 0 bytes"), "\(lines)")
                #expect(pathod.requests.count == 2)
            }
        }
    }

    @Test("-c CONNECT through the proxy with -s: intercepted TLS to a TLS pathod")
    func connectWithTLS() async throws {
        try await withPathod(configure: { $0.ssl = true }) { pathod in
            try await withProxy(configure: { $0.sslInsecure = true }) { proxy in
                let (ok, lines) = try await run("get:/p/201:x2", port: proxy.port) {
                    $0.connectTo = ("127.0.0.1", pathod.port)
                    $0.ssl = true
                }
                #expect(ok && lines.filter { $0 == "<< 201 Created: 0 bytes" }.count == 2, "\(lines)")
                #expect(pathod.requests.allSatisfy { $0.request?.tls == true })
            }
        }
    }

    @Test("A request body cut off by the client does not reach the upstream; the proxy goes on")
    func clientDisconnectsMidBody() async throws {
        try await withPathod { pathod in
            try await withProxy { proxy in
                let url = pathod.url(for: "200")
                let (_, cut) = try await run("post:'\(url)':b@10k:d500", port: proxy.port)
                #expect(!cut.contains { $0.hasPrefix("<<") }, "\(cut)")
                let (ok, lines) = try await run("get:'\(pathod.url(for: "200:b'after'"))'", port: proxy.port)
                #expect(ok && lines.contains("<< 200 OK: 5 bytes"), "\(lines)")
                #expect(pathod.requests.count == 1, "only the second request reaches the upstream")
            }
        }
    }

    @Test("Garbage in the request line gets a 400 from the proxy")
    func garbageRequestLine() async throws {
        try await withPathod { pathod in
            try await withProxy { proxy in
                let (_, lines) = try await run("get:'\(pathod.url(for: "200"))':i3,'\\x00\\x01 junk'", port: proxy.port)
                #expect(lines.contains { $0.hasPrefix("<< 400") }, "\(lines)")
                #expect(pathod.requests.isEmpty)
            }
        }
    }
}
