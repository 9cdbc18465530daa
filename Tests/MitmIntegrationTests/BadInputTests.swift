import Foundation
import MitmCore
import MitmTestSupport
import Testing

/// Malformed, oversized and stalled clients, unreachable and misbehaving servers. After each, the
/// proxy must still serve a normal request.
@Suite("Bad input and failures", .timeLimit(.minutes(1)))
struct BadInputTests {
    /// A normal request through `proxy` still works.
    private func expectStillServing(_ proxy: ProxyHarness, _ origin: LoopbackOrigin, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let t = try await Curl.transfer(["-x", proxy.proxyURL, origin.url("/echo?after")])
        #expect(t.statusCode == 200, "the proxy should keep serving others: \(t)", sourceLocation: sourceLocation)
    }

    @Test("A malformed request line gets 400 with a readable reason")
    func malformedRequestLine() async throws {
        try await withLoopbackOrigin { origin in
            try await withProxy { proxy in
                let raw = try await RawConnection.connect(port: proxy.port)
                try await raw.send("THIS IS NOT HTTP AT ALL\r\n\r\n")
                let closed = await raw.waitForClose(timeout: 5)
                let text = raw.receivedText
                await raw.close()
                #expect(text.hasPrefix("HTTP/1.1 400"), "expected a 400, got: \(text.debugDescription)")
                #expect(text.lowercased().contains("bad request"), "the body should say why: \(text)")
                #expect(closed, "the connection should be closed after a protocol error")
                try await expectStillServing(proxy, origin)
            }
        }
    }

    @Test("A request target without a scheme gets 400 naming the problem")
    func originFormToRegularProxy() async throws {
        try await withLoopbackOrigin { origin in
            try await withProxy { proxy in
                let raw = try await RawConnection.connect(port: proxy.port)
                try await raw.send("GET /echo HTTP/1.1\r\nHost: 127.0.0.1:\(origin.port)\r\n\r\n")
                await raw.waitForText("</html>", timeout: 5)
                let text = raw.receivedText
                await raw.close()
                #expect(text.hasPrefix("HTTP/1.1 400"), "\(text)")
                #expect(text.contains("absolute form"), "\(text)")
                #expect(origin.requests.isEmpty)
            }
        }
    }

    @Test("An oversized request head gets 431")
    func oversizedHeader() async throws {
        try await withLoopbackOrigin { origin in
            try await withProxy(configure: { $0.headerSizeLimit = 8 * 1024 }) { proxy in
                let raw = try await RawConnection.connect(port: proxy.port)
                let big = String(repeating: "a", count: 16 * 1024)
                try? await raw.send("GET \(origin.url("/echo")) HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: \(big)\r\n\r\n")
                await raw.waitForClose(timeout: 5)
                let text = raw.receivedText
                await raw.close()
                #expect(text.hasPrefix("HTTP/1.1 431"), "expected 431, got: \(text.prefix(300).debugDescription); log: \(proxy.logs.messages)")
                #expect(text.contains("header_size_limit"), "\(text)")
                #expect(origin.requests.isEmpty)
                try await expectStillServing(proxy, origin)
            }
        }
    }

    @Test("A request body over body_size_limit gets 413")
    func bodyOverLimit() async throws {
        try await withLoopbackOrigin { origin in
            try await withProxy(configure: { $0.bodySizeLimit = 1024 }) { proxy in
                let body = Data(repeating: 0x62, count: 10 * 1024)
                let t = try await Curl.transfer(["-x", proxy.proxyURL, "--data-binary", "@-", origin.url("/echo")], stdin: body)
                #expect(t.statusCode == 413, "\(t)")
                #expect(origin.requests.isEmpty, "an oversized body must not be forwarded: \(origin.requests)")
                try await expectStillServing(proxy, origin)
            }
        }
    }

    @Test("A plain request to a closed port gets 502 naming the connection failure")
    func getToClosedPort() async throws {
        let port = try await closedPort()
        try await withLoopbackOrigin { origin in
            try await withProxy { proxy in
                let t = try await Curl.transfer(["-x", proxy.proxyURL, "http://127.0.0.1:\(port)/"])
                #expect(t.statusCode == 502, "\(t)")
                #expect(t.bodyText.lowercased().contains("connect"), "the body should name the connection failure: \(t.bodyText)")
                #expect(t.bodyText.contains("refused"), "\(t.bodyText)")
                try await expectStillServing(proxy, origin)
            }
        }
    }

    @Test("CONNECT to a closed port is answered 502 naming the connection failure, with a log line and a failed flow")
    func connectToClosedPort() async throws {
        let port = try await closedPort()
        try await withLoopbackOrigin { origin in
            let recorder = RecordingAddon()
            try await withProxy(addons: [recorder]) { proxy in
                let client = try await RawConnection.connect(port: proxy.port)
                try await client.send("CONNECT 127.0.0.1:\(port) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\n\r\n")
                #expect(await client.waitForText("</html>"), "\(client.receivedText)")
                #expect(client.receivedText.hasPrefix("HTTP/1.1 502 Bad Gateway\r\n"), "\(client.receivedText)")
                #expect(client.receivedText.contains("Error connecting to 127.0.0.1:\(port)"), "\(client.receivedText)")
                await client.close()
                #expect(proxy.logs.contains("Error connecting to 127.0.0.1:\(port)"), "\(proxy.logs.messages)")
                #expect(await recorder.wait(for: .error))
                #expect(recorder.flows(at: .error).first?.request.method == "CONNECT")
                let t = try await Curl.run(["-x", proxy.proxyURL, "-w", "%{http_connect}", "-o", "/dev/null", "https://127.0.0.1:\(port)/"])
                #expect(t.output == "502", "curl sees the CONNECT refused: \(t)")
                try await expectStillServing(proxy, origin)
            }
        }
    }

    @Test("A client that stalls in the middle of a request head is closed after request_head_timeout")
    func stalledHead() async throws {
        try await withLoopbackOrigin { origin in
            try await withProxy(configure: { $0.requestHeadTimeout = 1 }) { proxy in
                let raw = try await RawConnection.connect(port: proxy.port)
                let start = Date()
                try await raw.send("GET \(origin.url("/echo")) HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Partial: ")
                let closed = await raw.waitForClose(timeout: 5)
                let elapsed = Date().timeIntervalSince(start)
                let text = raw.receivedText
                await raw.close()
                #expect(closed, "a stalled client must be closed (request_head_timeout = 1 s)")
                #expect(elapsed >= 0.9 && elapsed < 3, "closed after \(elapsed) s, expected about 1 s")
                #expect(text.isEmpty || text.hasPrefix("HTTP/1.1 408"), "\(text)")
                #expect(origin.requests.isEmpty)
                try await expectStillServing(proxy, origin)
            }
        }
    }

    @Test("A server that closes mid-body fails the flow: the client gets an error, addons get error")
    func closeMidBody() async throws {
        let recorder = RecordingAddon()
        try await withLoopbackOrigin { origin in
            try await withProxy(addons: [recorder]) { proxy in
                let t = try await Curl.transfer(["-x", proxy.proxyURL, origin.url("/close-mid-body")])
                #expect(
                    t.statusCode == 502 || !t.command.succeeded,
                    "the client must not get a clean 200 for a truncated body: \(t)"
                )
                #expect(await recorder.wait(for: .error), "the error hook should run: \(recorder.events)")
                let flow = try #require(recorder.flows(at: .error).first)
                #expect(flow.error != nil, "the flow should carry an error")
                #expect(recorder.count(of: .response) == 0, "no response hook for a failed flow: \(recorder.events)")
                try await expectStillServing(proxy, origin)
            }
        }
    }
}
