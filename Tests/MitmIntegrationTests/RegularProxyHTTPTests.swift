import Foundation
import MitmCore
import MitmTestSupport
import Testing

/// Plain HTTP through the explicit proxy (`curl -x`), against a plain `LoopbackOrigin`.
@Suite("Regular proxy: HTTP", .timeLimit(.minutes(1)))
struct RegularProxyHTTPTests {
    @Test("GET is forwarded in origin form and answered")
    func get() async throws {
        try await withLoopbackOrigin { origin in
            try await withProxy { proxy in
                let t = try await Curl.transfer(["-x", proxy.proxyURL, origin.url("/echo?x=1")])
                #expect(t.statusCode == 200, "\(t)")
                #expect(t.httpVersion == "1.1", "\(t)")
                let echo = try #require(t.echo, "body is not an echo: \(t)")
                #expect(echo.method == "GET")
                #expect(echo.uri == "/echo?x=1", "the origin must get an origin-form target, got \(echo.uri)")
                let recorded = origin.requests
                #expect(recorded.count == 1, "origin saw \(recorded)")
                #expect(recorded.first?.httpVersion == "HTTP/1.1")
                #expect(recorded.first?.header("host") == origin.authority(), "Host: \(recorded.first?.header("host") ?? "-")")
            }
        }
    }

    @Test("POST with Content-Length reaches the origin intact")
    func postContentLength() async throws {
        try await withLoopbackOrigin { origin in
            try await withProxy { proxy in
                let body = "hello world, with a Content-Length"
                let t = try await Curl.transfer([
                    "-x", proxy.proxyURL, "-H", "Content-Type: text/plain", "--data-binary", body, origin.url("/echo"),
                ])
                #expect(t.statusCode == 200, "\(t)")
                let recorded = try #require(origin.requests.first, "origin saw nothing")
                #expect(recorded.method == "POST")
                #expect(recorded.bodyString == body)
                #expect(recorded.header("content-length") == String(body.utf8.count), "\(recorded)")
                #expect(t.echo?.bodyLength == body.utf8.count)
            }
        }
    }

    @Test("POST with a chunked body reaches the origin intact")
    func postChunked() async throws {
        try await withLoopbackOrigin { origin in
            try await withProxy { proxy in
                let body = Data((0..<100_000).map { UInt8(truncatingIfNeeded: 65 + $0 % 26) })
                let t = try await Curl.transfer(
                    ["-x", proxy.proxyURL, "-H", "Transfer-Encoding: chunked", "--data-binary", "@-", origin.url("/echo")],
                    stdin: body
                )
                #expect(t.statusCode == 200, "\(t)")
                let recorded = try #require(origin.requests.first, "origin saw nothing")
                #expect(recorded.body.count == body.count, "origin got \(recorded.body.count) of \(body.count) bytes")
                #expect(Data(recorded.body) == body)
                let framing = (recorded.header("transfer-encoding"), recorded.header("content-length"))
                #expect(framing.0 == nil || framing.1 == nil, "both Transfer-Encoding and Content-Length sent: \(recorded)")
            }
        }
    }

    @Test("Two requests in one curl run share the client connection and the server connection")
    func keepAlive() async throws {
        try await withLoopbackOrigin { origin in
            try await withProxy { proxy in
                let result = try await Curl.run([
                    "-x", proxy.proxyURL, "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n",
                    origin.url("/echo"), origin.url("/bytes/100"),
                ])
                let lines = result.output.split(whereSeparator: \.isNewline).map(String.init)
                #expect(lines == ["200 1", "200 0"], "curl should reuse its proxy connection for the second request: \(result)")
                let recorded = await origin.waitForRequests(2)
                #expect(recorded.count == 2)
                #expect(Set(recorded.map(\.connectionID)).count == 1, "the proxy should reuse its server connection: \(recorded)")
            }
        }
    }

    @Test("HEAD gets the head without a body, and the connection stays usable")
    func head() async throws {
        try await withLoopbackOrigin { origin in
            try await withProxy { proxy in
                let result = try await Curl.run([
                    "-x", proxy.proxyURL, "-I", "-w", "%{http_code} %{num_connects} %{size_download}\n",
                    origin.url("/bytes/1000"), origin.url("/bytes/5"),
                ])
                #expect(result.succeeded, "\(result)")
                #expect(result.output.contains("Content-Length: 1000"), "HEAD must carry the GET's Content-Length: \(result)")
                let writeOuts = result.output.split(whereSeparator: \.isNewline).filter { $0.hasPrefix("200 ") }.map(String.init)
                #expect(writeOuts == ["200 1 0", "200 0 0"], "\(result)")
                #expect(origin.requests.map(\.method) == ["HEAD", "HEAD"])
            }
        }
    }

    @Test("204 and 304 carry no body and leave the connection usable", arguments: [204, 304])
    func noBodyStatus(status: Int) async throws {
        try await withLoopbackOrigin { origin in
            try await withProxy { proxy in
                let result = try await Curl.run([
                    "-x", proxy.proxyURL, "-o", "/dev/null", "-o", "/dev/null",
                    "-w", "%{http_code} %{num_connects} %{size_download}\n",
                    origin.url("/status/\(status)"), origin.url("/echo"),
                ])
                #expect(result.succeeded, "\(result)")
                let lines = result.output.split(whereSeparator: \.isNewline).map(String.init)
                #expect(lines.count == 2, "\(result)")
                #expect(lines.first == "\(status) 1 0", "\(result)")
                #expect(lines.last?.hasPrefix("200 0 ") == true, "the next request should reuse the connection: \(result)")
            }
        }
    }

    @Test("Expect: 100-continue gets an interim 100 and the body goes through")
    func expectContinue() async throws {
        try await withLoopbackOrigin { origin in
            try await withProxy { proxy in
                let body = Data((0..<200_000).map { UInt8(truncatingIfNeeded: 97 + $0 % 26) })
                // curl holds the body back for longer than it may take in all: it can only finish
                // in time if the proxy sends 100 Continue.
                let t = try await Curl.transfer(
                    [
                        "-x", proxy.proxyURL, "-H", "Expect: 100-continue", "--expect100-timeout", "60",
                        "--data-binary", "@-", origin.url("/echo"),
                    ],
                    maxTime: 30,
                    stdin: body
                )
                #expect(t.statusCode == 200, "the proxy did not send 100 Continue, or the exchange failed: \(t)")
                #expect(t.headerDump.contains("100 Continue"), "curl should have seen an interim 100 Continue: \(t.headerDump)")
                let recorded = try #require(origin.requests.first, "origin saw nothing")
                #expect(Data(recorded.body) == body, "origin got \(recorded.body.count) of \(body.count) bytes")
            }
        }
    }

    @Test("Request header names keep their case and order towards the origin")
    func requestHeaderCaseAndOrder() async throws {
        try await withLoopbackOrigin { origin in
            try await withProxy { proxy in
                let custom = ["X-First-Header", "x-second-header", "X-THIRD-HEADER", "X-mIxEd-CaSe", "x-first-header"]
                var arguments = ["-x", proxy.proxyURL, "-A", "case-test/1.0"]
                for (index, name) in custom.enumerated() {
                    arguments += ["-H", "\(name): v\(index)"]
                }
                let t = try await Curl.transfer(arguments + [origin.url("/echo")])
                #expect(t.statusCode == 200, "\(t)")
                let recorded = try #require(origin.requests.first, "origin saw nothing")
                let names = recorded.headerNames.filter { $0.lowercased() != "proxy-connection" }
                #expect(
                    names == ["Host", "User-Agent", "Accept"] + custom,
                    "header names must reach the origin byte for byte, in order; got \(recorded.headers)"
                )
                let values = recorded.headers.filter { $0.name.lowercased().hasPrefix("x-") }.map(\.value)
                #expect(values == ["v0", "v1", "v2", "v3", "v4"])
            }
        }
    }

    @Test("Response header names keep their case and order towards the client")
    func responseHeaderCaseAndOrder() async throws {
        try await withLoopbackOrigin { origin in
            try await withProxy { proxy in
                let t = try await Curl.transfer(["-x", proxy.proxyURL, origin.url("/headers-case")])
                #expect(t.statusCode == 200, "\(t)")
                let expectedNames = Set(LoopbackOrigin.headersCaseFields.map { $0.name.lowercased() })
                let got = t.headers.filter { expectedNames.contains($0.name.lowercased()) }
                #expect(
                    got.map { "\($0.name): \($0.value)" } == LoopbackOrigin.headersCaseFields.map { "\($0.name): \($0.value)" },
                    "the client must get the origin's header fields byte for byte, in order; got:\n\(t.headerDump)"
                )
                #expect(t.bodyText == "ok")
            }
        }
    }
}
