import Foundation
import MitmTestSupport
import Testing

/// The proxy in front of a pathod: upstreams that hang up mid-body, pause, break their chunked
/// coding or end a body by closing. Each spec says exactly what the upstream does on the wire.
@Suite("Pathological upstreams (pathod)", .timeLimit(.minutes(1)))
struct PathologicalUpstreamTests {
    @Test("An upstream that disconnects mid-body gets the client a 502; the next request is served")
    func disconnectMidBody() async throws {
        try await withPathod { pathod in
            try await withProxy { proxy in
                let cut = try await Curl.transfer(["-x", proxy.proxyURL, pathod.url(for: "200:b@10k:d3000")])
                #expect(cut.statusCode == 502, "\(cut)")
                let entry = try #require(await pathod.waitForLog { $0.response?.spec.contains("d3000") == true })
                #expect(entry.response?.disconnect == true && entry.response?.bytesWritten == 3000)

                let next = try await Curl.transfer(["-x", proxy.proxyURL, pathod.url(for: "200:b'still here'")])
                #expect(next.statusCode == 200 && next.bodyText == "still here", "\(next)")
            }
        }
    }

    @Test("An upstream that hangs up before answering gets the client a 502")
    func disconnectBeforeAnswer() async throws {
        try await withPathod { pathod in
            try await withProxy { proxy in
                let t = try await Curl.transfer(["-x", proxy.proxyURL, pathod.url(for: "200:d0")])
                #expect(t.statusCode == 502, "\(t)")
            }
        }
    }

    @Test("A streamed body cut off by the upstream ends the client's transfer early")
    func disconnectWhileStreaming() async throws {
        try await withPathod { pathod in
            try await withProxy(configure: { $0.streamLargeBodies = 1024 }) { proxy in
                let t = try await Curl.transfer(["-x", proxy.proxyURL, pathod.url(for: "200:b@64k:d20000")])
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
                let t = try await Curl.transfer(["-x", proxy.proxyURL, pathod.url(for: "200:b@2k,ascii_letters:p20,1:p1500,1")])
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
                ])
                #expect(t.statusCode == 502, "\(t)")
                #expect(!t.bodyText.contains("hello"), "\(t)")
            }
        }
    }

    @Test("A body delimited by the upstream closing (no Content-Length) reaches the client whole")
    func closeDelimited() async throws {
        try await withPathod { pathod in
            try await withProxy { proxy in
                let t = try await Curl.transfer(["-x", proxy.proxyURL, pathod.url(for: "200:r:b@5k,digits:da")])
                #expect(t.statusCode == 200 && t.body.count == 5120, "\(t)")
            }
        }
    }

    @Test("The upstream sees the request the proxy forwards: origin form, the Host, the client's headers")
    func forwardedRequest() async throws {
        try await withPathod { pathod in
            try await withProxy { proxy in
                let t = try await Curl.transfer(["-x", proxy.proxyURL, "-H", "X-Probe: 1", pathod.url(for: "204")])
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
                ])
                #expect(t.statusCode == 200 && t.bodyText == "over tls" && t.header("x-upstream") == "pathod", "\(t)")
                #expect(pathod.log.last?.request?.tls == true)
            }
        }
    }
}
