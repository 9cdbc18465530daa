import Foundation
import MitmCore
import MitmTestSupport
import Testing

/// `upstream:https://…`: TLS to the upstream proxy itself, with a small Python proxy as the
/// upstream (our own listeners do not take TLS from proxy clients).
@Suite("Upstream mode over TLS to the proxy", .timeLimit(.minutes(1)))
struct UpstreamHTTPSProxyTests {
    /// A TLS-speaking HTTP proxy: absolute-form requests are sent on in origin form, `CONNECT`
    /// opens a tunnel. Prints one JSON line per request it handled.
    static let proxyScript = """
        import asyncio, json, ssl, sys
        cert, key = sys.argv[1], sys.argv[2]
        async def pipe(reader, writer):
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            finally:
                writer.close()
        async def handle(reader, writer):
            head = await reader.readuntil(b"\\r\\n\\r\\n")
            lines = head.decode("latin-1").split("\\r\\n")
            method, target, version = lines[0].split(" ")
            auth = next((l.split(":", 1)[1].strip() for l in lines[1:] if l.lower().startswith("proxy-authorization:")), None)
            print(json.dumps({"method": method, "target": target, "auth": auth}), flush=True)
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                r, w = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\\r\\n\\r\\n")
                await writer.drain()
                await asyncio.gather(pipe(reader, w), pipe(r, writer))
                return
            rest = target.split("://", 1)[1]
            hostport, _, path = rest.partition("/")
            host, port = hostport.rsplit(":", 1)
            r, w = await asyncio.open_connection(host, int(port))
            kept = [l for l in lines[1:] if l and not l.lower().startswith("proxy-")]
            w.write(("%s /%s %s\\r\\n" % (method, path, version) + "\\r\\n".join(kept + ["Connection: close"]) + "\\r\\n\\r\\n").encode("latin-1"))
            await w.drain()
            await pipe(r, writer)
        async def main():
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
            print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
            await server.serve_forever()
        asyncio.run(main())
        """

    @Test("plain HTTP in absolute form and HTTPS through CONNECT go over TLS to the upstream proxy, with upstream_auth")
    func tlsToUpstreamProxy() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let cert = scratch.file("proxy.pem")
        let key = scratch.file("proxy-key.pem")
        let made = try await CommandRunner.run("openssl", [
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1", "-keyout", key, "-out", cert,
        ], timeout: 30)
        try #require(made.exitCode == 0, "\(made)")
        let script = try scratch.write("tls_proxy.py", Data(Self.proxyScript.utf8))
        let log = scratch.file("proxy.log")
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        let process = try await ChildProcess.start("python3", [script, cert, key], stdout: .file(handle), stderr: .file(handle))
        defer { process.terminate() }
        func lines() -> [[String: Any]] {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        }
        var port: Int?
        for _ in 0..<200 where port == nil {
            port = lines().first?["port"] as? Int
            if port == nil { try await Task.sleep(for: .milliseconds(25)) }
        }
        let proxyPort = try #require(port, "the TLS proxy did not start: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")

        try await withLoopbackOrigin(.plain) { plain in
            try await withLoopbackOrigin(.tlsHTTP1Only) { tls in
                let mode = ProxyMode.upstream(.init(scheme: .https, address: Address(host: "127.0.0.1", port: proxyPort)))
                // ssl_insecure: the upstream proxy's and the origin's certificates are self-signed.
                try await withProxy(configure: { $0.modes = [ProxyModeSpec(mode)]; $0.sslInsecure = true; $0.upstreamAuth = "u:p" }) { proxy in
                    let http = try await Curl.transfer(["-x", proxy.proxyURL, plain.url("/echo")])
                    #expect(http.statusCode == 200, "\(http)")
                    #expect(http.echo?.uri == "/echo", "\(http)")
                    let https = try await Curl.transfer([
                        "-x", proxy.proxyURL, "--cacert", proxy.caCertificatePath, tls.url("/echo", host: "localhost"),
                    ])
                    #expect(https.statusCode == 200, "\(https)")
                    let seen = lines().dropFirst()
                    #expect(seen.contains { $0["method"] as? String == "GET" && $0["target"] as? String == plain.url("/echo") }, "\(seen)")
                    #expect(seen.contains { $0["method"] as? String == "CONNECT" }, "\(seen)")
                    #expect(seen.allSatisfy { $0["auth"] as? String == "Basic dTpw" }, "upstream_auth on every request: \(seen)")
                }
            }
        }
    }
}
