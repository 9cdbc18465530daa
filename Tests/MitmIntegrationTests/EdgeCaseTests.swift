import Foundation
import MitmAddons
import MitmCore
import MitmTestSupport
import Testing

/// Less common but legitimate traffic: HTTP/1.0 clients, pipelining, connection reuse through a
/// tunnel, HTTP/2 multiplexing and flow control, failures after the response has begun.
@Suite("Edge cases", .timeLimit(.minutes(1)))
struct EdgeCaseTests {
    @Test("An HTTP/1.0 client gets a chunked origin response as a delimited body")
    func http10ClientChunkedOrigin() async throws {
        try await withLoopbackOrigin { origin in
            try await withProxy { proxy in
                let t = try await Curl.transfer(["-x", proxy.proxyURL, "--http1.0", origin.url("/chunked/5000")])
                #expect(t.statusCode == 200, "\(t)")
                #expect(t.headerDump.hasPrefix("HTTP/1.0 200") || t.headerDump.hasPrefix("HTTP/1.1 200"), "\(t.headerDump)")
                #expect(!t.headerDump.lowercased().contains("transfer-encoding: chunked"), "no chunked coding towards an HTTP/1.0 client: \(t.headerDump)")
                #expect(Array(t.body) == LoopbackOrigin.patternBytes(count: 5000), "\(t.body.count) bytes")
            }
        }
    }

    @Test("An HTTP/1.0 client gets a streamed chunked response intact (close-delimited)")
    func http10ClientStreamedChunked() async throws {
        let size = 2 * 1024 * 1024 + 3
        try await withLoopbackOrigin { origin in
            try await withProxy(configure: { $0.streamLargeBodies = 256 * 1024 }) { proxy in
                let t = try await Curl.transfer(["-x", proxy.proxyURL, "--http1.0", origin.url("/chunked/\(size)")], maxTime: 20)
                #expect(t.statusCode == 200, "\(t.command)")
                #expect(!t.headerDump.lowercased().contains("transfer-encoding: chunked"), "\(t.headerDump)")
                #expect(t.body.count == size, "\(t.body.count) of \(size) bytes")
                #expect(TestDigest.sha256Hex(t.body) == TestDigest.sha256Hex(LoopbackOrigin.patternBytes(count: size)))
            }
        }
    }

    @Test("Pipelined requests are answered in order")
    func pipelining() async throws {
        try await withLoopbackOrigin { origin in
            try await withProxy { proxy in
                let raw = try await RawConnection.connect(port: proxy.port)
                let host = origin.authority()
                try await raw.send(
                    "GET \(origin.url("/echo?first")) HTTP/1.1\r\nHost: \(host)\r\n\r\n"
                        + "GET \(origin.url("/echo?second")) HTTP/1.1\r\nHost: \(host)\r\n\r\n"
                        + "GET \(origin.url("/echo?third")) HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\n\r\n"
                )
                let closed = await raw.waitForClose(timeout: 5)
                let text = raw.receivedText
                await raw.close()
                #expect(closed, "Connection: close on the last request should close the connection; got \(text)")
                let firstIndex = text.range(of: "/echo?first")?.lowerBound
                let secondIndex = text.range(of: "/echo?second")?.lowerBound
                let thirdIndex = text.range(of: "/echo?third")?.lowerBound
                #expect(text.components(separatedBy: "HTTP/1.1 200").count - 1 == 3, "three responses expected: \(text)")
                if let firstIndex, let secondIndex, let thirdIndex {
                    #expect(firstIndex < secondIndex && secondIndex < thirdIndex, "responses out of order: \(text)")
                } else {
                    Issue.record("missing responses: \(text)")
                }
            }
        }
    }

    @Test("Two HTTPS requests through one CONNECT tunnel share it", arguments: ["--http1.1", "--http2"])
    func tunnelReuse(flag: String) async throws {
        try await withLoopbackOrigin(.tlsH2) { origin in
            try await withProxy(configure: { $0.sslInsecure = true }) { proxy in
                let result = try await Curl.run([
                    "-x", proxy.proxyURL, "--cacert", proxy.caCertificatePath, flag,
                    "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n",
                    origin.url("/echo?1", host: "localhost"), origin.url("/bytes/10", host: "localhost"),
                ])
                #expect(result.output.split(whereSeparator: \.isNewline) == ["200 1", "200 0"], "\(result)")
                let recorded = await origin.waitForRequests(2)
                #expect(Set(recorded.map(\.connectionID)).count == 1, "one server connection expected: \(recorded)")
            }
        }
    }

    @Test("Parallel HTTP/2 streams through one tunnel all complete")
    func http2Multiplexing() async throws {
        try await withLoopbackOrigin(.tlsH2) { origin in
            try await withProxy(configure: { $0.sslInsecure = true }) { proxy in
                let paths = (0..<8).map { index in index % 2 == 0 ? "/echo?n=\(index)" : "/slow?ms=200&n=\(index)" }
                var arguments = ["-x", proxy.proxyURL, "--cacert", proxy.caCertificatePath, "--http2", "-Z", "--parallel-max", "8",
                                 "-w", "%{http_code} %{http_version}\n"]
                for path in paths {
                    arguments += ["-o", "/dev/null", origin.url(path, host: "localhost")]
                }
                let result = try await Curl.run(arguments)
                let lines = result.output.split(whereSeparator: \.isNewline).map(String.init)
                #expect(lines.count == paths.count && lines.allSatisfy { $0 == "200 2" }, "\(result)")
                let recorded = await origin.waitForRequests(paths.count)
                #expect(Set(recorded.map(\.uri)) == Set(paths), "\(recorded)")
                #expect(recorded.allSatisfy { $0.httpVersion == "HTTP/2.0" })
            }
        }
    }

    @Test("A 20 MiB download to an HTTP/2 client arrives intact (flow control, backpressure)")
    func largeDownloadOverHTTP2() async throws {
        let size = 20 * 1024 * 1024
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        try await withLoopbackOrigin(.tlsH2) { origin in
            try await withProxy(configure: {
                $0.sslInsecure = true
                $0.streamLargeBodies = 1024 * 1024
            }) { proxy in
                let output = scratch.file("download")
                let result = try await Curl.run(
                    ["-x", proxy.proxyURL, "--cacert", proxy.caCertificatePath, "--http2", "-o", output,
                     "-w", "%{http_code} %{http_version} %{size_download}", origin.url("/bytes/\(size)", host: "localhost")],
                    maxTime: 30
                )
                #expect(result.output == "200 2 \(size)", "\(result)")
                let expected = TestDigest.sha256Hex(LoopbackOrigin.patternBytes(count: size))
                #expect((try? TestDigest.sha256Hex(fileAt: output)) == expected, "the body differs from what the origin sent")
            }
        }
    }

    @Test("HEAD, 204 and 304 over HTTP/2 carry no body")
    func noBodyOverHTTP2() async throws {
        try await withLoopbackOrigin(.tlsH2) { origin in
            try await withProxy(configure: { $0.sslInsecure = true }) { proxy in
                let result = try await Curl.run([
                    "-x", proxy.proxyURL, "--cacert", proxy.caCertificatePath, "--http2",
                    "-w", "%{http_code} %{http_version} %{size_download}\n",
                    "-o", "/dev/null", origin.url("/status/204", host: "localhost"),
                    "-o", "/dev/null", origin.url("/status/304", host: "localhost"),
                    "-o", "/dev/null", "-I", origin.url("/bytes/100", host: "localhost"),
                ])
                let lines = result.output.split(whereSeparator: \.isNewline).map(String.init).filter { !$0.contains(":") && !$0.hasPrefix("HTTP/") }
                #expect(lines == ["204 2 0", "304 2 0", "200 2 0"], "\(result)")
            }
        }
    }

    @Test("A server that closes mid-body after a streamed response began: the client connection is cut")
    func closeMidBodyWhileStreaming() async throws {
        let recorder = RecordingAddon()
        try await withPathod { pathod in
            try await withProxy(addons: [recorder], configure: { $0.streamLargeBodies = 100 }) { proxy in
                // A head promising 1000 bytes, 10 of them, a pause so they leave first, then the connection drops.
                let spec = "200:r:h'Content-Type'='application/octet-stream':h'Content-Length'='1000':b@10:pa,1:da"
                let t = try await Curl.transfer(["-x", proxy.proxyURL, pathod.url(for: spec)])
                #expect(!t.command.succeeded, "curl must see a truncated transfer, not success: \(t)")
                #expect(t.command.exitCode == 18 || t.command.exitCode == 56, "expected 'partial file' or 'receive failure': \(t)")
                #expect(await recorder.wait(for: .error), "the error hook should run: \(recorder.events)")
                #expect(pathod.lastLog?.response?.disconnect == true)
                let followUp = try await Curl.transfer(["-x", proxy.proxyURL, pathod.url(for: "200:b'next'")])
                #expect(followUp.statusCode == 200 && followUp.bodyText == "next", "\(followUp)")
            }
        }
    }

    @Test("A client that gives up mid-exchange fails the flow, and the proxy goes on")
    func clientGivesUp() async throws {
        let recorder = RecordingAddon()
        try await withLoopbackOrigin { origin in
            try await withProxy(addons: [recorder]) { proxy in
                let result = try await Curl.run(["-x", proxy.proxyURL, "-o", "/dev/null", origin.url("/slow?ms=2000")], maxTime: 1)
                #expect(!result.succeeded, "curl should have timed out: \(result)")
                #expect(await recorder.wait(for: .error, timeout: 5), "the error hook should run for the abandoned flow: \(recorder.events)")
                #expect(recorder.flows(at: .error).first?.error != nil)
                let followUp = try await Curl.transfer(["-x", proxy.proxyURL, origin.url("/echo")])
                #expect(followUp.statusCode == 200, "\(followUp)")
            }
        }
    }

    @Test("Reverse proxy to an h2 origin with an h2 client: HTTP/2 on both sides")
    func reverseH2BothSides() async throws {
        try await withLoopbackOrigin(.tlsH2) { origin in
            let mode = try ProxyMode(parsing: "reverse:https://127.0.0.1:\(origin.port)")
            try await withProxy(configure: {
                $0.modes = [ProxyModeSpec(mode)]
                $0.sslInsecure = true
            }) { proxy in
                let t = try await Curl.transfer(["--http2", "--cacert", proxy.caCertificatePath, "https://localhost:\(proxy.port)/echo"])
                #expect(t.statusCode == 200, "\(t)")
                #expect(t.httpVersion == "2")
                #expect(origin.requests.first?.httpVersion == "HTTP/2.0", "\(origin.requests)")
            }
        }
    }

    @Test("Response header case and order survive a TLS-intercepted HTTP/1.1 exchange")
    func responseHeaderCaseOverTLS() async throws {
        try await withLoopbackOrigin(.tlsHTTP1Only) { origin in
            try await withProxy(configure: { $0.sslInsecure = true }) { proxy in
                let t = try await Curl.transfer([
                    "-x", proxy.proxyURL, "--cacert", proxy.caCertificatePath, "--http1.1", origin.url("/headers-case", host: "localhost"),
                ])
                #expect(t.statusCode == 200, "\(t)")
                let expectedNames = Set(LoopbackOrigin.headersCaseFields.map { $0.name.lowercased() })
                let got = t.headers.filter { expectedNames.contains($0.name.lowercased()) }
                #expect(
                    got.map { "\($0.name): \($0.value)" } == LoopbackOrigin.headersCaseFields.map { "\($0.name): \($0.value)" },
                    "\(t.headerDump)"
                )
            }
        }
    }

    @Test("Plain HTTP inside a CONNECT tunnel (curl --proxytunnel) is intercepted as HTTP")
    func plainHTTPInTunnel() async throws {
        let recorder = RecordingAddon()
        try await withLoopbackOrigin { origin in
            try await withProxy(addons: [recorder]) { proxy in
                let t = try await Curl.transfer(["-x", proxy.proxyURL, "--proxytunnel", origin.url("/echo?tunnel")])
                #expect(t.statusCode == 200, "\(t)")
                #expect(t.echo?.uri == "/echo?tunnel", "\(t)")
                #expect(await recorder.wait(for: .response), "the tunnelled request should be a flow: \(recorder.events)")
                #expect(recorder.flows(at: .response).first?.request.path == "/echo?tunnel")
            }
        }
    }

    struct IgnoringAddon: Addon {
        func tlsClientHello(_ data: inout TLSClientHelloData, context: AddonContext) async throws {
            data.ignoreConnection = true
        }
    }

    @Test("tls_clienthello with ignore_connection passes TLS through untouched")
    func ignoreConnectionPassesThrough() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let recorder = RecordingAddon()
        try await withLoopbackOrigin(.tlsH2) { origin in
            try await withProxy(addons: [IgnoringAddon(), recorder]) { proxy in
                // Trusting only the origin's own CA: this verifies only if the proxy did not intercept.
                let originCA = try origin.pki.writeCACertificate(to: scratch.file("origin-ca.pem"))
                let t = try await Curl.transfer(["-x", proxy.proxyURL, "--cacert", originCA, origin.url("/echo", host: "localhost")])
                #expect(t.statusCode == 200, "\(t)")
                #expect(t.httpVersion == "2", "the origin's own ALPN choice should reach the client: \(t)")
                #expect(recorder.count(of: .requestHeaders) == 0, "a passed-through connection has no flows: \(recorder.hookNames)")
            }
        }
    }
}
