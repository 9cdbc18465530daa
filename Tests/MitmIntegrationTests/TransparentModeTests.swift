import Foundation
import MitmTestSupport
import Testing

/// Transparent mode against a real kernel: mitmdump runs in a network namespace behind an iptables
/// `REDIRECT` rule (`NetworkLab`), the origins sit on the redirected address, and curl in a second
/// namespace connects to the origins, not to the proxy. Where the machine can't build namespaces
/// (not root, no iptables), the tests are cancelled with the reason.
@Suite("Transparent mode", .serialized, .timeLimit(.minutes(2)))
struct TransparentModeTests {
    @Test("HTTP and HTTPS connections redirected by iptables are proxied to their original destination; a direct one is refused")
    func redirectedConnections() async throws {
        if let reason = await NetworkLab.unavailableReason {
            try Test.cancel("skipped: \(reason)")
        }
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        // The lab's teardown ends what it spawned: the origins and mitmdump.
        try await NetworkLab.with(proxyPort: 8080) { lab in
            try await redirectedConnections(in: lab, scratch: scratch)
        }
    }

    func redirectedConnections(in lab: NetworkLab, scratch: ScratchDirectory) async throws {

        // Origins on the address the client thinks it talks to: plain HTTP on 80, TLS on 443.
        _ = try scratch.write("hello.txt", Data("hello through the wall\n".utf8))
        let certificate = scratch.file("origin.pem")
        let key = scratch.file("origin-key.pem")
        let made = await lab.run(in: .router, [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-subj", "/CN=example.test", "-addext", "subjectAltName=DNS:example.test", "-days", "1",
            "-keyout", key, "-out", certificate,
        ])
        try #require(made.succeeded, "\(made)")
        let server = """
            import http.server, ssl, sys, os, functools, socket
            os.chdir(sys.argv[1])
            handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
            if ":" in sys.argv[2]:
                http.server.ThreadingHTTPServer.address_family = socket.AF_INET6
            httpd = http.server.ThreadingHTTPServer((sys.argv[2], int(sys.argv[3])), handler)
            if len(sys.argv) > 4:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(sys.argv[4], sys.argv[5])
                httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
            httpd.serve_forever()
            """
        let script = try scratch.write("origin.py", Data(server.utf8))
        let originLog = try FileHandle(forWritingTo: URL(fileURLWithPath: try scratch.write("origin.log", Data())))
        try await lab.spawn(in: .router, ["python3", script, scratch.path, NetworkLab.originIPv4, "80"], stdout: originLog, stderr: originLog)
        try await lab.spawn(in: .router, ["python3", script, scratch.path, NetworkLab.originIPv4, "443", certificate, key], stdout: originLog, stderr: originLog)

        if lab.hasIPv6 {
            try await lab.spawn(in: .router, ["python3", script, scratch.path, NetworkLab.originIPv6, "80"], stdout: originLog, stderr: originLog)
        }

        // The proxy, behind the REDIRECT rule, on every address (IPv4 clients arrive IPv4-mapped).
        let confdir = try ProxyHarness.makeConfdir()
        defer { try? FileManager.default.removeItem(atPath: confdir) }
        let outputPath = try scratch.write("mitmdump.out", Data())
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        try await lab.spawn(
            in: .router,
            [MitmDumpCLITests.binary.path, "--mode", "transparent", "--listen-host", "::", "-p", "8080", "--set", "confdir=\(confdir)", "-k"],
            stdout: output,
            stderr: output
        )
        try #require(await lab.waitUntilListening(in: .router, port: 8080), "mitmdump did not start")
        let plainOriginListens = await lab.waitUntilListening(in: .router, port: 80, address: NetworkLab.originIPv4)
        let tlsOriginListens = await lab.waitUntilListening(in: .router, port: 443, address: NetworkLab.originIPv4)
        try #require(plainOriginListens && tlsOriginListens, "origins did not start")
        if lab.hasIPv6 {
            try #require(await lab.waitUntilListening(in: .router, port: 80, address: NetworkLab.originIPv6), "the IPv6 origin did not start")
        }
        func dump() -> String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

        let http = await lab.run(in: .client, ["curl", "-sS", "--max-time", "10", "http://\(NetworkLab.originIPv4)/hello.txt"])
        #expect(http.succeeded, "\(http)\n\(dump())")
        #expect(http.stdout == "hello through the wall\n", "\(http)")

        let https = await lab.run(in: .client, [
            "curl", "-sS", "--max-time", "10", "--cacert", confdir + "/mitmproxy-ca-cert.pem",
            "--resolve", "example.test:443:\(NetworkLab.originIPv4)", "https://example.test/hello.txt",
        ])
        #expect(https.succeeded, "the client trusted our CA's leaf for the SNI: \(https)\n\(dump())")
        #expect(https.stdout == "hello through the wall\n", "\(https)")

        if lab.hasIPv6 {
            let v6 = await lab.run(in: .client, ["curl", "-sS", "-g", "--max-time", "10", "http://[\(NetworkLab.originIPv6)]/hello.txt"])
            #expect(v6.succeeded, "IPv6, IP6T_SO_ORIGINAL_DST: \(v6)\n\(dump())")
            #expect(v6.stdout == "hello through the wall\n", "\(v6)")
        }

        let direct = await lab.run(in: .client, ["curl", "-sS", "--max-time", "5", "http://\(NetworkLab.routerIPv4):8080/"])
        #expect(!direct.succeeded, "a connection that was not redirected has no destination: \(direct)")

        try await Task.sleep(for: .milliseconds(300))
        let shown = dump()
        #expect(shown.contains("GET http://\(NetworkLab.originIPv4)/hello.txt"), "\(shown)")
        #expect(shown.contains("GET https://\(NetworkLab.originIPv4)/hello.txt"), "the original destination, as mitmproxy shows it: \(shown)")
        #expect(shown.contains("Transparent mode failure"), "\(shown)")
        if lab.hasIPv6 {
            #expect(shown.contains("GET http://[\(NetworkLab.originIPv6)]/hello.txt"), "\(shown)")
        }
        #expect(shown.contains("Transparent proxy listening at"), "\(shown)")
    }
}
