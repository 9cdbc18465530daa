import Foundation
import MitmCore
import MitmTestSupport
import Testing

/// SOCKS5, upstream (HTTP and SOCKS5) and several modes at once, with curl as the client.
@Suite("Proxy modes", .timeLimit(.minutes(2)))
struct ProxyModesTests {
    @Test("SOCKS5 mode: plain HTTP and intercepted HTTPS behind the SOCKS handshake (curl --socks5-hostname)")
    func socks5() async throws {
        try await withLoopbackOrigin(.plain) { plain in
            try await withLoopbackOrigin(.tlsHTTP1Only) { tls in
                let recorder = RecordingAddon()
                try await withProxy(addons: [recorder], configure: { $0.modes = [ProxyModeSpec(.socks5)]; $0.sslInsecure = true }) { proxy in
                    let socks = "127.0.0.1:\(proxy.port)"
                    let http = try await Curl.transfer(["--socks5-hostname", socks, plain.url("/echo")])
                    #expect(http.statusCode == 200, "\(http)")
                    #expect(http.echo?.uri == "/echo", "the origin saw an origin-form request: \(http)")

                    let https = try await Curl.transfer([
                        "--socks5-hostname", socks, "--cacert", proxy.caCertificatePath, tls.url("/echo", host: "localhost"),
                    ])
                    #expect(https.statusCode == 200, "\(https)")
                    #expect(tls.requests.first?.isTLS == true)

                    #expect(await recorder.wait(for: .response, count: 2))
                    let flows = recorder.flows(at: .response)
                    #expect(flows.map(\.request.scheme).sorted() == ["http", "https"])
                    #expect(flows.allSatisfy { $0.clientConnection.proxyMode == "socks5" })
                }
            }
        }
    }

    @Test("SOCKS5 with proxyauth: the SOCKS username and password are checked")
    func socks5Authentication() async throws {
        try await withLoopbackOrigin(.plain) { origin in
            try await withProxy(configure: { $0.modes = [ProxyModeSpec(.socks5)]; $0.proxyauth = "alice:s3cret" }) { proxy in
                let good = try await Curl.transfer(["--proxy", "socks5h://alice:s3cret@127.0.0.1:\(proxy.port)", origin.url("/bytes/5")])
                #expect(good.statusCode == 200, "\(good)")
                let bad = try await Curl.transfer(["--proxy", "socks5h://alice:wrong@127.0.0.1:\(proxy.port)", origin.url("/bytes/5")])
                #expect(bad.statusCode == 0, "\(bad)")
                #expect(bad.command.errorOutput.contains("rejected by the SOCKS5 server"), "\(bad.command)")
                let none = try await Curl.transfer(["--socks5-hostname", "127.0.0.1:\(proxy.port)", origin.url("/bytes/5")])
                #expect(none.statusCode == 0, "\(none)")
            }
        }
    }

    @Test("SOCKS5: a closed target port gets SOCKS5's 'connection refused' reply, a log line and a failed TCP flow")
    func socks5ClosedPort() async throws {
        let port = try await closedPort()
        let recorder = RecordingAddon()
        try await withProxy(addons: [recorder], configure: { $0.modes = [ProxyModeSpec(.socks5)] }) { proxy in
            let t = try await Curl.transfer(["--socks5-hostname", "127.0.0.1:\(proxy.port)", "http://127.0.0.1:\(port)/"])
            #expect(t.statusCode == 0)
            #expect(t.command.errorOutput.contains("SOCKS5 connection to 127.0.0.1. (5)"), "reply 5, connection refused: \(t.command)")
            #expect(proxy.logs.contains("Error connecting to 127.0.0.1:\(port)"), "\(proxy.logs.messages)")
            #expect(await recorder.wait(for: .tcpError), "a failed TCP flow: \(recorder.hookNames)")
        }
    }

    @Test("SOCKS5: a client speaking HTTP to the SOCKS port is closed with a log line, nothing crashes")
    func socks5MalformedGreeting() async throws {
        try await withProxy(configure: { $0.modes = [ProxyModeSpec(.socks5)] }) { proxy in
            let t = try await Curl.transfer(["http://127.0.0.1:\(proxy.port)/"])
            #expect(t.statusCode == 0)
            #expect(proxy.logs.contains("SOCKS5 error"), "\(proxy.logs.messages)")
            // Still serving:
            let again = try await Curl.transfer(["--socks5-hostname", "127.0.0.1:\(proxy.port)", "http://127.0.0.1:\(try await closedPort())/"])
            #expect(again.command.errorOutput.contains("(5)"), "\(again.command)")
        }
    }

    @Test("Upstream mode: HTTP in absolute form and HTTPS through CONNECT, both via the upstream proxy, with upstream_auth")
    func upstreamHTTPProxy() async throws {
        try await withLoopbackOrigin(.plain) { plain in
            try await withLoopbackOrigin(.tlsHTTP1Only) { tls in
                let upstreamRecorder = RecordingAddon()
                try await withProxy(addons: [upstreamRecorder], configure: { $0.sslInsecure = true; $0.proxyauth = "up:pw" }) { upstream in
                    let mode = ProxyMode.upstream(.init(scheme: .http, address: Address(host: "127.0.0.1", port: upstream.port)))
                    try await withProxy(configure: {
                        $0.modes = [ProxyModeSpec(mode)]
                        $0.sslInsecure = true  // the upstream proxy intercepts too, with its own CA
                        $0.upstreamAuth = "up:pw"
                    }) { proxy in
                        let http = try await Curl.transfer(["-x", proxy.proxyURL, plain.url("/echo")])
                        #expect(http.statusCode == 200, "\(http)")
                        #expect(http.echo?.header("proxy-authorization") == nil, "credentials stop at the upstream proxy: \(http)")
                        let https = try await Curl.transfer([
                            "-x", proxy.proxyURL, "--cacert", proxy.caCertificatePath, tls.url("/echo", host: "localhost"),
                        ])
                        #expect(https.statusCode == 200, "\(https)")
                        #expect(await upstreamRecorder.wait(for: .response, count: 2))
                        let seen = upstreamRecorder.flows(at: .response).map(\.request.url).sorted()
                        #expect(seen == [plain.url("/echo"), tls.url("/echo", host: "localhost")].sorted(), "the upstream proxy saw both")
                    }
                    // Without upstream_auth the upstream proxy's 407 reaches the client.
                    try await withProxy(configure: { $0.modes = [ProxyModeSpec(mode)] }) { proxy in
                        let refused = try await Curl.transfer(["-x", proxy.proxyURL, plain.url("/echo")])
                        #expect(refused.statusCode == 407, "\(refused)")
                    }
                }
            }
        }
    }

    @Test("Upstream SOCKS5 (mitmproxy #211): every server connection goes through a SOCKS5 proxy")
    func upstreamSOCKS5() async throws {
        try await withLoopbackOrigin(.plain) { plain in
            try await withLoopbackOrigin(.tlsHTTP1Only) { tls in
                let socksRecorder = RecordingAddon()
                try await withProxy(addons: [socksRecorder], configure: { $0.modes = [ProxyModeSpec(.socks5)]; $0.sslInsecure = true }) { socks in
                    let mode = ProxyMode.upstream(.init(scheme: .socks5, address: Address(host: "127.0.0.1", port: socks.port)))
                    try await withProxy(configure: { $0.modes = [ProxyModeSpec(mode)]; $0.sslInsecure = true }) { proxy in
                        let http = try await Curl.transfer(["-x", proxy.proxyURL, plain.url("/echo")])
                        #expect(http.statusCode == 200, "\(http)")
                        let https = try await Curl.transfer([
                            "-x", proxy.proxyURL, "--cacert", proxy.caCertificatePath, tls.url("/echo", host: "localhost"),
                        ])
                        #expect(https.statusCode == 200, "\(https)")
                        #expect(await socksRecorder.wait(for: .response, count: 2), "the SOCKS5 proxy carried both: \(socksRecorder.hookNames)")
                    }
                }
            }
        }
    }

    @Test("Several modes at once: a regular and a SOCKS5 listener")
    func severalModes() async throws {
        try await withLoopbackOrigin(.plain) { origin in
            try await withProxy(configure: { $0.modes = [ProxyModeSpec(.regular), ProxyModeSpec(.socks5)] }) { proxy in
                #expect(proxy.ports.count == 2)
                let viaHTTP = try await Curl.transfer(["-x", "http://127.0.0.1:\(proxy.ports[0])", origin.url("/bytes/3")])
                let viaSOCKS = try await Curl.transfer(["--socks5-hostname", "127.0.0.1:\(proxy.ports[1])", origin.url("/bytes/3")])
                #expect(viaHTTP.statusCode == 200, "\(viaHTTP)")
                #expect(viaSOCKS.statusCode == 200, "\(viaSOCKS)")
            }
        }
    }
}

/// `--proxyauth`: 407 with a challenge, credentials checked and not forwarded.
@Suite("Proxy authentication", .timeLimit(.minutes(1)))
struct ProxyAuthTests {
    @Test("user:pass — 407 with Proxy-Authenticate without credentials; with them the request goes through, minus the header")
    func singleUser() async throws {
        try await withLoopbackOrigin(.plain) { origin in
            try await withProxy(configure: { $0.proxyauth = "alice:s3cret" }) { proxy in
                let refused = try await Curl.transfer(["-x", proxy.proxyURL, origin.url("/echo")])
                #expect(refused.statusCode == 407, "\(refused)")
                #expect(refused.header("proxy-authenticate") == "Basic realm=\"mitmproxy\"", "\(refused)")
                let wrong = try await Curl.transfer(["-x", proxy.proxyURL, "--proxy-user", "alice:nope", origin.url("/echo")])
                #expect(wrong.statusCode == 407, "\(wrong)")
                let ok = try await Curl.transfer(["-x", proxy.proxyURL, "--proxy-user", "alice:s3cret", origin.url("/echo")])
                #expect(ok.statusCode == 200, "\(ok)")
                #expect(ok.echo?.header("proxy-authorization") == nil, "the credential header is not forwarded: \(ok)")
            }
        }
    }

    @Test("HTTPS through CONNECT asks for credentials on the CONNECT")
    func connect() async throws {
        try await withLoopbackOrigin(.tlsHTTP1Only) { origin in
            try await withProxy(configure: { $0.proxyauth = "alice:s3cret"; $0.sslInsecure = true }) { proxy in
                let refused = try await Curl.transfer(["-x", proxy.proxyURL, "--cacert", proxy.caCertificatePath, origin.url("/echo", host: "localhost")])
                #expect(refused.statusCode == 407 || refused.command.errorOutput.contains("407"), "\(refused)")
                let ok = try await Curl.transfer([
                    "-x", proxy.proxyURL, "--proxy-user", "alice:s3cret", "--cacert", proxy.caCertificatePath,
                    origin.url("/echo", host: "localhost"),
                ])
                #expect(ok.statusCode == 200, "\(ok)")
            }
        }
    }

    @Test("@htpasswd with bcrypt and {SHA} entries, as mitmproxy 12 reads them")
    func htpasswd() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        // bob:hunter2 (bcrypt, cost 4), carol:letmein ({SHA}).
        let file = try scratch.write(
            "htpasswd",
            Data("""
                # test users
                bob:$2b$04$ACBVH14w25.1.TmHo7akgOOl.NmVu.YXxlvfoW7V0TYL5FCV1pepK
                carol:{SHA}t6h1/B6iKLkGEEG3zsS9PFKrPOM=

                """.utf8)
        )
        try await withLoopbackOrigin(.plain) { origin in
            try await withProxy(configure: { $0.proxyauth = "@" + file }) { proxy in
                for (credentials, status) in [("bob:hunter2", 200), ("carol:letmein", 200), ("bob:letmein", 407), ("dave:x", 407)] {
                    let t = try await Curl.transfer(["-x", proxy.proxyURL, "--proxy-user", credentials, origin.url("/bytes/1")])
                    #expect(t.statusCode == status, "\(credentials): \(t)")
                }
            }
        }
    }

    @Test("a bad htpasswd file is refused at start naming the line")
    func badHtpasswd() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let file = try scratch.write("htpasswd", Data("bob:$apr1$abc$def\n".utf8))
        let error = await #expect(throws: (any Error).self) {
            try await ProxyHarness.start(configure: { $0.proxyauth = "@" + file })
        }
        #expect("\(error.map { "\($0)" } ?? "")".contains("line 1"), "\(String(describing: error))")
    }
}
