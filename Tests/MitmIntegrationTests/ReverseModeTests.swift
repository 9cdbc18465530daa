import Foundation
import MitmCore
import MitmTestSupport
import Testing

/// Reverse mode: clients talk to the proxy as if it were the origin.
@Suite("Reverse proxy", .timeLimit(.minutes(1)))
struct ReverseModeTests {
    private func reverse(to origin: LoopbackOrigin) throws -> ProxyMode {
        try ProxyMode(parsing: "reverse:\(origin.scheme)://127.0.0.1:\(origin.port)")
    }

    @Test("Plain and TLS clients on the same port reach a plain origin")
    func plainAndTLSClientsOnOnePort() async throws {
        try await withLoopbackOrigin(.plain) { origin in
            let mode = try reverse(to: origin)
            try await withProxy(configure: { $0.modes = [ProxyModeSpec(mode)] }) { proxy in
                let plain = try await Curl.transfer(["http://127.0.0.1:\(proxy.port)/echo?via=plain"])
                #expect(plain.statusCode == 200, "\(plain)")
                #expect(plain.echo?.uri == "/echo?via=plain")

                let tls = try await Curl.transfer([
                    "--http1.1", "--cacert", proxy.caCertificatePath, "https://localhost:\(proxy.port)/echo?via=tls",
                ])
                #expect(tls.statusCode == 200, "\(tls)")
                #expect(tls.echo?.uri == "/echo?via=tls")

                let recorded = origin.requests
                #expect(recorded.map(\.uri) == ["/echo?via=plain", "/echo?via=tls"], "\(recorded)")
                #expect(recorded.allSatisfy { !$0.isTLS && $0.httpVersion == "HTTP/1.1" })
            }
        }
    }

    @Test("An HTTP/2 TLS client reaches a plain HTTP/1.1 origin (h2 client, h1 server)")
    func h2ClientToH1Origin() async throws {
        try await withLoopbackOrigin(.plain) { origin in
            let mode = try reverse(to: origin)
            try await withProxy(configure: { $0.modes = [ProxyModeSpec(mode)] }) { proxy in
                let get = try await Curl.transfer(["--http2", "--cacert", proxy.caCertificatePath, "https://localhost:\(proxy.port)/echo"])
                #expect(get.statusCode == 200, "\(get)")
                #expect(get.httpVersion == "2", "the client offered h2 and should get it: \(get)")

                let body = "posted over h2"
                let post = try await Curl.transfer([
                    "--http2", "--cacert", proxy.caCertificatePath, "--data-binary", body, "https://localhost:\(proxy.port)/echo",
                ])
                #expect(post.statusCode == 200, "\(post)")
                #expect(post.httpVersion == "2")

                let recorded = origin.requests
                #expect(recorded.count == 2, "\(recorded)")
                #expect(recorded.allSatisfy { $0.httpVersion == "HTTP/1.1" }, "origin speaks only HTTP/1.1: \(recorded)")
                #expect(recorded.last?.bodyString == body)
                #expect(recorded.first?.header("host") == origin.authority(), "\(recorded)")
            }
        }
    }

    @Test("A plain HTTP/1.1 client reaches an h2 TLS origin (h1 client, h2 server)")
    func h1ClientToH2Origin() async throws {
        try await withLoopbackOrigin(.tlsH2) { origin in
            let mode = try reverse(to: origin)
            try await withProxy(configure: {
                $0.modes = [ProxyModeSpec(mode)]
                $0.sslInsecure = true
            }) { proxy in
                let t = try await Curl.transfer(["--http1.1", "--data-binary", "abc", "http://127.0.0.1:\(proxy.port)/echo"])
                #expect(t.statusCode == 200, "\(t)")
                #expect(t.httpVersion == "1.1")
                let recorded = try #require(origin.requests.first, "origin saw nothing")
                #expect(recorded.isTLS)
                #expect(recorded.httpVersion == "HTTP/2.0", "the proxy should have used h2 towards the origin: \(recorded)")
                #expect(recorded.bodyString == "abc")
            }
        }
    }

    @Test("keep_host_header decides which Host the origin sees", arguments: [true, false])
    func keepHostHeader(keep: Bool) async throws {
        try await withLoopbackOrigin(.plain) { origin in
            let mode = try reverse(to: origin)
            try await withProxy(configure: {
                $0.modes = [ProxyModeSpec(mode)]
                $0.keepHostHeader = keep
            }) { proxy in
                let t = try await Curl.transfer(["-H", "Host: example.test", "http://127.0.0.1:\(proxy.port)/echo"])
                #expect(t.statusCode == 200, "\(t)")
                let host = origin.requests.first?.header("host")
                #expect(host == (keep ? "example.test" : origin.authority()), "keep_host_header=\(keep): origin saw Host \(host ?? "-")")
            }
        }
    }
}
