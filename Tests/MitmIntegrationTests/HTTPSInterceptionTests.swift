import Foundation
import MitmCore
import MitmTestSupport
import Testing

/// HTTPS through `CONNECT` with TLS interception: the client trusts the proxy's CA
/// (`<confdir>/mitmproxy-ca-cert.pem`); the proxy talks to a `LoopbackOrigin` whose test CA is not in
/// the system store, so it runs with `ssl_insecure` unless a test says otherwise.
@Suite("Regular proxy: HTTPS interception", .timeLimit(.minutes(1)))
struct HTTPSInterceptionTests {
    private func intercepted(
        origin kind: LoopbackOrigin.Kind,
        clientFlag: String,
        expectVersion: String,
        expectOriginVersion: String
    ) async throws {
        try await withLoopbackOrigin(kind) { origin in
            try await withProxy(configure: { $0.sslInsecure = true }) { proxy in
                let t = try await Curl.transfer([
                    "-x", proxy.proxyURL, "--cacert", proxy.caCertificatePath, clientFlag, origin.url("/echo", host: "localhost"),
                ])
                #expect(t.statusCode == 200, "\(t)")
                #expect(t.httpVersion == expectVersion, "client should speak HTTP \(expectVersion): \(t)")
                let echo = try #require(t.echo, "not an echo: \(t)")
                #expect(echo.method == "GET")
                #expect(echo.uri == "/echo")
                let recorded = try #require(origin.requests.first, "origin saw nothing")
                #expect(recorded.isTLS)
                #expect(recorded.httpVersion == expectOriginVersion, "origin saw \(recorded)")
            }
        }
    }

    @Test("--http1.1 client, h2-capable origin: HTTP/1.1 on both sides")
    func http11ToH2Origin() async throws {
        try await intercepted(origin: .tlsH2, clientFlag: "--http1.1", expectVersion: "1.1", expectOriginVersion: "HTTP/1.1")
    }

    @Test("--http2 client, h2-capable origin: HTTP/2 on both sides")
    func http2ToH2Origin() async throws {
        try await intercepted(origin: .tlsH2, clientFlag: "--http2", expectVersion: "2", expectOriginVersion: "HTTP/2.0")
    }

    @Test("--http2 client, HTTP/1.1-only origin: the client gets HTTP/1.1")
    func http2ToH1OnlyOrigin() async throws {
        try await intercepted(origin: .tlsHTTP1Only, clientFlag: "--http2", expectVersion: "1.1", expectOriginVersion: "HTTP/1.1")
    }

    @Test("HTTPS POST over HTTP/2 reaches the origin intact")
    func http2Post() async throws {
        try await withLoopbackOrigin(.tlsH2) { origin in
            try await withProxy(configure: { $0.sslInsecure = true }) { proxy in
                let body = String(repeating: "h2 body ", count: 5000)
                let t = try await Curl.transfer([
                    "-x", proxy.proxyURL, "--cacert", proxy.caCertificatePath, "--http2", "--data-binary", body,
                    origin.url("/echo", host: "localhost"),
                ])
                #expect(t.statusCode == 200, "\(t)")
                #expect(t.httpVersion == "2")
                let recorded = try #require(origin.requests.first, "origin saw nothing")
                #expect(recorded.bodyString == body, "origin got \(recorded.body.count) of \(body.utf8.count) bytes")
            }
        }
    }

    @Test("Without ssl_insecure, an origin with an untrusted certificate gives 502 naming the verification failure")
    func upstreamVerificationFailure() async throws {
        try await withLoopbackOrigin(.tlsH2) { origin in
            try await withProxy { proxy in
                let t = try await Curl.transfer([
                    "-x", proxy.proxyURL, "--cacert", proxy.caCertificatePath, origin.url("/echo", host: "localhost"),
                ])
                #expect(t.statusCode == 502, "\(t)")
                let text = t.bodyText.lowercased()
                #expect(
                    text.contains("certificate") && (text.contains("verif") || text.contains("unknown") || text.contains("untrusted")),
                    "the 502 body should name the certificate verification failure: \(t.bodyText)"
                )
                #expect(origin.requests.isEmpty, "no request may reach an unverified origin")
            }
        }
    }

    @Test("The leaf for a host name is issued by CN=mitmproxy and carries the name as DNS SAN")
    func leafForHostName() async throws {
        try await withLoopbackOrigin(.tlsH2) { origin in
            try await withProxy(configure: { $0.sslInsecure = true }) { proxy in
                let result = try await CommandRunner.run(
                    "openssl",
                    [
                        "s_client", "-proxy", "127.0.0.1:\(proxy.port)", "-connect", "localhost:\(origin.port)",
                        "-servername", "localhost", "-showcerts",
                    ],
                    stdin: Data(),
                    timeout: 10
                )
                let chain = CertificateSummary.all(inPEMText: result.output)
                let leaf = try #require(chain.first, "no certificate in s_client output: \(result)")
                #expect(leaf.issuerCommonName == "mitmproxy", "\(leaf)")
                #expect(leaf.dnsNames.contains("localhost"), "\(leaf)")
                #expect(!leaf.isCertificateAuthority)
                #expect(chain.count >= 2 && chain[1].subjectCommonName == "mitmproxy", "the CA should follow the leaf: \(chain)")
            }
        }
    }

    @Test("The leaf for an IP address target carries an IP SAN", arguments: [true, false])
    func leafForIPAddress(upstreamCert: Bool) async throws {
        try await withLoopbackOrigin(.tlsH2) { origin in
            try await withProxy(configure: {
                $0.sslInsecure = true
                $0.upstreamCert = upstreamCert
            }) { proxy in
                let result = try await CommandRunner.run(
                    "openssl",
                    [
                        "s_client", "-proxy", "127.0.0.1:\(proxy.port)", "-connect", "127.0.0.1:\(origin.port)",
                        "-noservername", "-showcerts",
                    ],
                    stdin: Data(),
                    timeout: 10
                )
                let leaf = try #require(CertificateSummary.all(inPEMText: result.output).first, "no certificate: \(result)")
                #expect(leaf.issuerCommonName == "mitmproxy", "\(leaf)")
                #expect(leaf.ipAddresses.contains("127.0.0.1"), "upstream_cert=\(upstreamCert): \(leaf)")
                #expect(!leaf.dnsNames.contains("127.0.0.1"), "an IP address belongs in an IP SAN, not a DNS SAN: \(leaf)")
            }
        }
    }

    @Test("curl verifies the intercepted connection to an IP address against the proxy CA")
    func curlToIPAddress() async throws {
        try await withLoopbackOrigin(.tlsH2) { origin in
            try await withProxy(configure: { $0.sslInsecure = true }) { proxy in
                let t = try await Curl.transfer(["-x", proxy.proxyURL, "--cacert", proxy.caCertificatePath, origin.url("/echo")])
                #expect(t.statusCode == 200, "\(t)")
            }
        }
    }

    @Test("--certs serves the user's own certificate for its domain")
    func userCertificate() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("certs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let key = directory.appendingPathComponent("key.pem").path
        let cert = directory.appendingPathComponent("cert.pem").path
        let made = try await CommandRunner.run(
            "openssl",
            [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
                "-subj", "/CN=custom.test/O=Users Own", "-addext", "subjectAltName=DNS:custom.test",
            ],
            timeout: 30
        )
        try #require(made.succeeded, "\(made)")
        let combined = directory.appendingPathComponent("custom.pem").path
        let pem = try String(contentsOfFile: key, encoding: .utf8) + String(contentsOfFile: cert, encoding: .utf8)
        try pem.write(toFile: combined, atomically: true, encoding: .utf8)

        try await withProxy(configure: { $0.certs = ["custom.test=\(combined)"]; $0.connectionStrategy = .lazy }) { proxy in
            // custom.test does not resolve: with connection_strategy=lazy the proxy answers CONNECT
            // without connecting, then serves the user's certificate in the handshake.
            let result = try await CommandRunner.run(
                "openssl",
                ["s_client", "-proxy", "127.0.0.1:\(proxy.port)", "-connect", "custom.test:443", "-servername", "custom.test", "-showcerts"],
                stdin: Data(),
                timeout: 10
            )
            let leaf = try #require(CertificateSummary.all(inPEMText: result.output).first, "no certificate: \(result)")
            #expect(leaf.subjectCommonName == "custom.test", "\(leaf)")
            #expect(leaf.issuerCommonName == "custom.test", "the user's self-signed certificate, not one of ours: \(leaf)")
        }
    }
}
