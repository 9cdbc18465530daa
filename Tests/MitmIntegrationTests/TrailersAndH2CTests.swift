import Foundation
import MitmAddons
import MitmCore
import MitmTestSupport
import Testing

/// Trailers (mitmproxy #2474), cleartext HTTP/2 (mitmproxy #2116) and streaming chosen by an addon.
@Suite("Trailers, h2c and streaming by addon", .timeLimit(.minutes(1)))
struct TrailersAndH2CTests {
    @Test("HTTP/1.1 chunked response trailers reach the client")
    func responseTrailersHTTP1() async throws {
        try await withLoopbackOrigin(.plain) { origin in
            let recorder = RecordingAddon()
            try await withProxy(addons: [recorder]) { proxy in
                let t = try await Curl.transfer(["-x", proxy.proxyURL, origin.url("/trailers")])
                #expect(t.statusCode == 200, "\(t)")
                #expect(t.bodyText == "body before trailers")
                #expect(t.headerDump.lowercased().contains("x-checksum: 1234"), "\(t.headerDump)")
                #expect(await recorder.wait(for: .response))
                #expect(recorder.flows(at: .response).first?.response?.trailers?["x-checksum"] == "1234", "kept on the flow")
            }
        }
    }

    @Test("HTTP/1.1 chunked request trailers reach the server")
    func requestTrailersHTTP1() async throws {
        try await withLoopbackOrigin(.plain) { origin in
            try await withProxy { proxy in
                let connection = try await RawConnection.connect(port: proxy.port)
                try await connection.send(
                    "POST \(origin.url("/echo")) HTTP/1.1\r\nHost: 127.0.0.1:\(origin.port)\r\nTransfer-Encoding: chunked\r\n"
                        + "Trailer: x-sum\r\n\r\n5\r\nhello\r\n0\r\nx-sum: 99\r\n\r\n"
                )
                #expect(await connection.waitForText("\"bodyLength\":5"), "\(connection.receivedText)")
                await connection.close()
                let recorded = try #require(origin.requests.last)
                #expect(recorded.bodyString == "hello")
                #expect(recorded.trailers.map { "\($0.name): \($0.value)" } == ["x-sum: 99"], "\(recorded)")
            }
        }
    }

    @Test("gRPC-style trailers over HTTP/2 on both sides are kept and forwarded")
    func trailersHTTP2() async throws {
        try await withLoopbackOrigin(.tlsH2) { origin in
            try await withProxy(configure: { $0.sslInsecure = true }) { proxy in
                let t = try await Curl.transfer([
                    "-x", proxy.proxyURL, "--cacert", proxy.caCertificatePath, "--http2", origin.url("/trailers", host: "localhost"),
                ])
                #expect(t.statusCode == 200, "\(t)")
                #expect(t.httpVersion == "2", "\(t)")
                #expect(t.headerDump.contains("grpc-status: 0"), "\(t.headerDump)")
            }
        }
    }

    @Test("h2c with prior knowledge: a cleartext HTTP/2 client in reverse mode")
    func h2cPriorKnowledge() async throws {
        try await withLoopbackOrigin(.plain) { origin in
            let mode = ProxyMode.reverse(.init(scheme: "http", address: Address(host: "127.0.0.1", port: origin.port)))
            try await withProxy(configure: { $0.modes = [ProxyModeSpec(mode)] }) { proxy in
                let t = try await Curl.transfer(["--http2-prior-knowledge", "http://127.0.0.1:\(proxy.port)/trailers"])
                #expect(t.statusCode == 200, "\(t)")
                #expect(t.httpVersion == "2", "\(t)")
                #expect(t.headerDump.contains("x-checksum: 1234"), "trailers cross from HTTP/1.1 to h2c: \(t.headerDump)")
            }
        }
    }

    @Test("Upgrade: h2c is taken up where requests are in origin form: 101, then the request is answered on stream 1")
    func h2cUpgradeAccepted() async throws {
        try await withLoopbackOrigin(.plain) { origin in
            let mode = ProxyMode.reverse(.init(scheme: "http", address: Address(host: "127.0.0.1", port: origin.port)))
            let recorder = RecordingAddon()
            try await withProxy(addons: [recorder], configure: { $0.modes = [ProxyModeSpec(mode)] }) { proxy in
                // Two requests: the upgrade one on stream 1, the next on stream 3 of the same connection.
                let t = try await Curl.transfer(["--http2", "http://127.0.0.1:\(proxy.port)/echo", "http://127.0.0.1:\(proxy.port)/bytes/10"])
                #expect(t.command.exitCode == 0, "\(t)")
                #expect(t.bodyText.contains("\"method\":\"GET\""), "the echo of the upgrade request: \(t.bodyText)")
                #expect(t.headerDump.contains("HTTP/1.1 101"), "\(t.headerDump)")
                #expect(t.headerDump.contains("HTTP/2 200"), "\(t.headerDump)")
                let first = try #require(origin.requests.first)
                #expect(first.uri == "/echo")
                #expect(first.header("upgrade") == nil && first.header("http2-settings") == nil, "\(first)")
                #expect(await recorder.wait(for: .response, count: 2))
                #expect(recorder.flows(at: .response).allSatisfy { $0.request.httpVersion == "HTTP/2.0" })
            }
        }
    }

    @Test("Upgrade: h2c to an explicit proxy (absolute form) is declined: HTTP/1.1, and the offer does not reach the server")
    func h2cUpgradeDeclined() async throws {
        try await withLoopbackOrigin(.plain) { origin in
            try await withProxy { proxy in
                let t = try await Curl.transfer(["--http2", "-x", proxy.proxyURL, origin.url("/echo")])
                #expect(t.statusCode == 200, "\(t)")
                #expect(t.httpVersion == "1.1", "\(t)")
                let echo = try #require(t.echo, "\(t)")
                #expect(echo.header("upgrade") == nil && echo.header("http2-settings") == nil, "\(echo)")
            }
        }
    }

    /// Marks every flow for streaming in requestheaders/responseheaders, as a mitmproxy addon sets
    /// `flow.request.stream = True`.
    struct StreamEverything: Addon {
        func requestHeaders(_ flow: inout HTTPFlow, context: AddonContext) async throws {
            flow.request.stream = true
        }
        func responseHeaders(_ flow: inout HTTPFlow, context: AddonContext) async throws {
            flow.response?.stream = true
        }
    }

    @Test("an addon marks a flow for streaming: bodies pass through without being kept, in both directions")
    func streamingChosenByAddon() async throws {
        try await withLoopbackOrigin(.plain) { origin in
            let recorder = RecordingAddon()
            try await withProxy(addons: [StreamEverything(), recorder], configure: { $0.streamLargeBodies = nil }) { proxy in
                let scratch = try ScratchDirectory()
                defer { scratch.remove() }
                let upload = try scratch.write("upload", Data(repeating: 0x61, count: 300_000))
                let t = try await Curl.transfer(["-x", proxy.proxyURL, "--data-binary", "@" + upload, origin.url("/echo")])
                #expect(t.statusCode == 200, "\(t)")
                #expect(t.echo?.bodyLength == 300_000, "\(t)")
                let download = try await Curl.transfer(["-x", proxy.proxyURL, origin.url("/bytes/500000")])
                #expect(download.body.count == 500_000)
                #expect(await recorder.wait(for: .response, count: 2))
                for flow in recorder.flows(at: .response) {
                    #expect(flow.request.method != "POST" || flow.request.rawContent == nil, "streamed request body is not kept")
                    #expect(flow.response?.rawContent == nil, "streamed response body is not kept")
                }
            }
        }
    }
}
