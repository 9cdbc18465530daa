import Foundation
@testable import MitmPathod
import MitmTestSupport
import Testing

/// The `pathoc` and `pathod` executables, run as a user runs them, against an in-process pathod.
@Suite("pathoc and pathod command lines", .timeLimit(.minutes(2)))
struct PathocCLITests {
    /// An executable built next to this test bundle (`swift build --build-tests` builds both).
    static func binary(_ name: String) -> String {
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate.path }
            directory = directory.deletingLastPathComponent()
        }
        return ".build/debug/" + name
    }

    func pathoc(_ arguments: [String]) async throws -> CommandResult {
        try await CommandRunner.run(Self.binary("pathoc"), arguments, timeout: 60)
    }

    @Test("a bad spec: pathoc exits non-zero with the message and a caret under the position")
    func badSpec() async throws {
        let result = try await pathoc(["127.0.0.1:1", "get:/:b@10:q"])
        #expect(result.exitCode != 0)
        #expect(result.errorOutput.contains("Error parsing request spec: expected a request feature"), "\(result)")
        #expect(result.errorOutput.contains("get:/:b@10:q\n           ^"), "\(result)")
    }

    @Test("several specs go over one connection, -n repeats on new ones; output like pathoc's")
    func connections() async throws {
        try await withPathod { pathod in
            let result = try await pathoc([pathod.authority, "get:/p/200", "get:'/p/404:b@100'"])
            #expect(result.succeeded, "\(result)")
            #expect(result.output == ">> get:/p/200\n<< 200 OK: 0 bytes\n>> get:'/p/404:b@100'\n<< 404 Not Found: 100 bytes\n", "\(result)")
            let first = pathod.requests.compactMap(\.request?.remoteAddress)
            #expect(first.count == 2 && Set(first).count == 1, "one connection: \(first)")

            pathod.clearLog()
            let repeated = try await pathoc(["-n", "2", pathod.authority, "get:/p/200"])
            #expect(repeated.succeeded, "\(repeated)")
            let addresses = pathod.requests.compactMap(\.request?.remoteAddress)
            #expect(addresses.count == 2 && Set(addresses).count == 2, "two connections: \(addresses)")
        }
    }

    @Test("-p gives the port, x repeats, -I hides codes, -e prints a replayable spec")
    func options() async throws {
        try await withPathod { pathod in
            let result = try await pathoc(["-p", String(pathod.port), "-I", "200", "127.0.0.1", "get:/p/200:x3", "get:/p/204"])
            #expect(result.succeeded && result.output == ">> get:/p/204\n<< 204 No Content: 0 bytes\n", "\(result)")
            #expect(pathod.requests.count == 4)

            let explained = try await pathoc(["-e", pathod.authority, "get:/p/:s'200:b@5,ascii_letters':b@3,digits:pr,0"])
            #expect(explained.succeeded, "\(explained)")
            let line = try #require(explained.output.split(separator: "\n").first.map(String.init))
            #expect(line.hasPrefix(">> get:/p/:s'200:b\\x27") && !line.contains("@") && !line.contains("pr,"), "\(line)")
            #expect(line.contains("h'Host'='127.0.0.1'") && line.contains("h'Content-Length'='3'"), "\(line)")
            // The explained spec replays to the same bytes.
            let spec = String(line.dropFirst(3))
            let replay = try await pathoc(["-e", pathod.authority, spec])
            #expect(replay.output.split(separator: "\n").first.map(String.init) == line, "\(replay)")
        }
    }

    @Test("-c CONNECT through a proxy with -s TLS; a full URL spec makes a proxy request")
    func proxies() async throws {
        try await withPathod { pathod in
            let tunnel = try await pathoc(["-s", "-c", "example.com:443", pathod.authority, "get:/p/200:b'x'"])
            #expect(tunnel.succeeded && tunnel.output.contains("<< 200 OK: 0 bytes"), "\(tunnel)")
            #expect(pathod.log.last?.request?.tls == true && pathod.log.last?.request?.sni == "example.com")
            let shown = try await pathoc(["-q", "-r", pathod.authority, "get:'/p/200:b\"hi\":h\"X-R\"=\"1\"'"])
            #expect(shown.output.contains("GET /p/200:b\"hi\":h\"X-R\"=\"1\" HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n"), "\(shown)")
            #expect(shown.output.contains("X-R: 1\nContent-Length: 2\nhi"), "\(shown)")
            let absolute = try await pathoc([pathod.authority, "get:'http://example.com/p/202'"])
            #expect(absolute.succeeded && absolute.output.contains("<< 202 Accepted"), "\(absolute)")
            #expect(pathod.log.last?.request?.path == "http://example.com/p/202")
        }
        try await withPathod(configure: { $0.ssl = true }) { pathod in
            let tls = try await pathoc(["-s", "--sni", "pathod.test", pathod.authority, "get:/p/201"])
            #expect(tls.succeeded && tls.output.contains("<< 201 Created"), "\(tls)")
            #expect(pathod.log.last?.request?.sni == "pathod.test")
        }
    }

    @Test("--http2: requests on streams of one connection when pathod offers h2; refused when it does not")
    func http2() async throws {
        try await withPathod(configure: { $0.ssl = true }) { pathod in
            let result = try await pathoc(["--http2", pathod.authority, "get:/p/200:x2", "get:'/p/404:b@100'"])
            #expect(result.succeeded, "\(result)")
            #expect(result.output == ">> get:/p/200\n<< 200 OK: 0 bytes\n>> get:/p/200\n<< 200 OK: 0 bytes\n>> get:'/p/404:b@100'\n<< 404 Not Found: 100 bytes\n", "\(result)")
            let requests = pathod.requests
            #expect(requests.count == 3 && requests.allSatisfy { $0.request?.httpVersion == "HTTP/2" })
            #expect(Set(requests.compactMap(\.request?.remoteAddress)).count == 1, "one connection")
            let frames = try await pathoc(["--http2", pathod.authority, "wf:b'x'"])
            #expect(frames.exitCode != 0 && frames.output.contains("need HTTP/1"), "\(frames)")
        }
        try await withPathod(configure: {
            $0.ssl = true
            $0.http2 = false
        }) { pathod in
            let result = try await pathoc(["--http2", pathod.authority, "get:/p/200"])
            #expect(result.exitCode != 0 && result.output.contains("HTTP/2 not offered by the server"), "\(result)")
        }
    }

    @Test("-t gives up on a server that hangs, and pathoc exits non-zero")
    func timeout() async throws {
        try await withPathod { pathod in
            let result = try await pathoc(["-t", "1", pathod.authority, "get:'/p/200:p0,f'"])
            #expect(result.exitCode != 0)
            #expect(result.output.contains("Timeout"), "\(result)")
            // A body without a length, on a connection the server keeps open: cut by -t too.
            let open = try await pathoc(["-t", "1", pathod.authority, "get:'/p/200:r:b\"partial\"'"])
            #expect(open.exitCode != 0 && open.output.contains("Timeout"), "\(open)")
        }
    }

    @Test("classic output flags: -x hex dump, -o one shot, -T quiet timeouts, -w waits, -S shows the TLS session")
    func classicOutputFlags() async throws {
        try await withPathod { pathod in
            let hex = try await pathoc(["-x", "-q", pathod.authority, "get:/p/200"])
            #expect(hex.succeeded && hex.output.contains("00000000  47 45 54 20 2f 70 2f 32 30 30 20 48 54 54 50 2f  GET /p/200 HTTP/"), "\(hex)")

            pathod.clearLog()
            let oneshot = try await pathoc(["-o", "-I", "404", pathod.authority, "get:/p/404", "get:/p/200", "get:/p/201"])
            #expect(oneshot.succeeded && oneshot.output == ">> get:/p/200\n<< 200 OK: 0 bytes\n", "\(oneshot)")
            #expect(pathod.requests.count == 2, "pathoc stopped after the first shown response")

            // -n -1 repeats until something stops it: here -o.
            let forever = try await pathoc(["-n", "-1", "-o", pathod.authority, "get:/p/200"])
            #expect(forever.succeeded && forever.output == ">> get:/p/200\n<< 200 OK: 0 bytes\n", "\(forever)")

            let quiet = try await pathoc(["-T", "-t", "1", pathod.authority, "get:'/p/200:p0,f'"])
            #expect(quiet.succeeded && !quiet.output.contains("Timeout"), "\(quiet)")

            let waited = try await pathoc(["-w", "0.4", pathod.authority, "get:/p/200", "get:/p/200"])
            #expect(waited.succeeded && waited.duration >= 0.8, "two waits of 0.4 s: \(waited.duration) s")
        }
        try await withPathod(configure: { $0.ssl = true }) { pathod in
            let shown = try await pathoc(["-S", "-s", "-i", "sni.example", pathod.authority, "get:/p/200", "get:/p/200"])
            #expect(shown.succeeded, "\(shown)")
            #expect(shown.output.components(separatedBy: "TLS version:").count == 2, "once per connection: \(shown.output)")
            #expect(shown.output.contains("subject: O=pathod,CN=pathod.net"), "\(shown.output)")
            #expect(shown.output.contains("subject alternative names: DNS:pathod.net, DNS:localhost, IP:127.0.0.1"), "\(shown.output)")
            #expect(pathod.requests.first?.request?.sni == "sni.example", "-i sets the SNI")
        }
    }

    @Test("-C presents a client certificate to a server that asks for one")
    func clientCertificate() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let client = scratch.file("client.pem")
        let made = try await CommandRunner.run("openssl", [
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-subj", "/CN=pathoc-client", "-days", "1", "-keyout", client + ".key", "-out", client,
        ], timeout: 30)
        try #require(made.succeeded, "\(made)")
        try (String(contentsOfFile: client, encoding: .utf8) + String(contentsOfFile: client + ".key", encoding: .utf8))
            .write(toFile: client, atomically: true, encoding: .utf8)
        let server = try PathodCertificate.selfSigned()
        let serverPEM = scratch.file("server.pem")
        try (server.certificatePEM + "\n" + (server.privateKeyPEM ?? "")).write(toFile: serverPEM, atomically: true, encoding: .utf8)
        // A TLS server that requires a client certificate and answers with its common name.
        let script = """
            import socket, ssl, sys
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(sys.argv[1])
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(sys.argv[2])
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            print(listener.getsockname()[1], flush=True)
            connection = context.wrap_socket(listener.accept()[0], server_side=True)
            subject = dict(item[0] for item in connection.getpeercert()["subject"])["commonName"].encode()
            data = b""
            while b"\\r\\n\\r\\n" not in data:
                data += connection.recv(4096)
            connection.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n%s" % (len(subject), subject))
            connection.close()
            """
        let process = try await ChildProcess.start("python3", ["-c", script, serverPEM, client])
        defer { process.terminate() }
        #expect(await process.waitForOutput(containing: "\n"), "\(process.output)")
        let port = try #require(Int(process.output.trimmingCharacters(in: .whitespacesAndNewlines)), "\(process.output)")
        let result = try await pathoc(["-s", "-C", client, "-r", "-t", "20", "127.0.0.1:\(port)", "get:/"])
        #expect(result.succeeded && result.output.contains("pathoc-client"), "the server saw our certificate: \(result)")

        let missing = try await pathoc(["-s", "-C", scratch.file("none.pem"), "127.0.0.1:\(port)", "get:/"])
        #expect(missing.exitCode != 0 && missing.errorOutput.contains("Cannot read the client certificate"), "\(missing)")
    }

    @Test("pathod: listens, serves, and refuses a bad anchor at start with the position")
    func pathodExecutable() async throws {
        let bad = try await CommandRunner.run(Self.binary("pathod"), ["-p", "0", "-a", "/x=2oo"], timeout: 10)
        #expect(bad.exitCode != 0)
        #expect(bad.errorOutput.contains("invalid spec for anchor '/x'"), "\(bad)")
        #expect(bad.errorOutput.contains("2oo\n ^"), "\(bad)")
        let badSize = try await CommandRunner.run(Self.binary("pathod"), ["-p", "0", "--limit-size", "lots"], timeout: 10)
        #expect(badSize.exitCode != 0 && badSize.errorOutput.contains("Invalid size limit 'lots'"), "\(badSize)")
    }
}

/// The `pathod` executable with its TLS certificate and JSON log options.
@Suite("pathod executable", .timeLimit(.minutes(2)))
struct PathodExecutableTests {
    @Test("--cert serves the given certificate with -s; --json-log writes one JSON line per response")
    func certificateAndJSONLog() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let certificate = try PathodCertificate.selfSigned(commonName: "custom.test")
        let pem = scratch.file("cert.pem")
        try Data((certificate.certificatePEM + "\n" + (certificate.privateKeyPEM ?? "")).utf8).write(to: URL(fileURLWithPath: pem))
        let log = scratch.file("log.jsonl")

        let process = try await ChildProcess.start(
            PathocCLITests.binary("pathod"), ["-p", "0", "-s", "--cert", pem, "--json-log", log], stderr: .discard
        )
        defer { process.terminate() }
        // The first line names the port.
        #expect(await process.waitForOutput(containing: "\n"), "pathod printed no port: \(process.output)")
        let text = process.output
        let port = try #require(text.split(separator: "\n").first?.split(separator: ":").last.map(String.init))
        let result = try await CommandRunner.run(
            "curl", ["-sk", "-v", "--max-time", "30", "https://127.0.0.1:\(port)/p/200:b'secret'"], timeout: 40
        )
        #expect(result.output == "secret", "\(result)")
        #expect(result.errorOutput.contains("custom.test"), "\(result)")
        var lines: [Substring] = []
        for _ in 0..<100 {
            lines = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n")
            if !lines.isEmpty { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let entry = try JSONDecoder().decode(PathodLogEntry.self, from: Data(try #require(lines.first).utf8))
        #expect(entry.type == "crafted" && entry.response?.statusCode == 200 && entry.request?.tls == true)
        #expect(entry.response?.body == "secret")
    }

    @Test("--cert domain=path: the client gets the certificate for the name it asks for, the most specific first")
    func certificatesByServerName() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        func write(_ commonName: String, withKey: Bool = true) throws -> String {
            let certificate = try PathodCertificate.selfSigned(commonName: commonName)
            let path = scratch.file("\(commonName).pem")
            let text = certificate.certificatePEM + "\n" + (withKey ? certificate.privateKeyPEM ?? "" : "")
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            return path
        }
        let fallback = try write("fallback.test")
        let wildcard = try write("wildcard.example.test")
        let exact = try write("exact.example.test")

        let process = try await ChildProcess.start(
            PathocCLITests.binary("pathod"),
            ["-p", "0", "-s", "--cert", fallback, "--cert", "*.example.test=\(wildcard)", "--cert", "www.example.test=\(exact)"]
        )
        defer { process.terminate() }
        #expect(await process.waitForOutput(containing: "listening on"), "\(process.output)")
        let port = try #require(process.output.split(separator: "\n").first?.split(separator: ":").last.map(String.init))

        func subject(asking name: String) async throws -> String {
            let result = try await CommandRunner.run("curl", [
                "-sk", "-v", "--max-time", "20", "--resolve", "\(name):\(port):127.0.0.1", "https://\(name):\(port)/p/200",
            ], timeout: 30)
            #expect(result.succeeded, "\(result)")
            return result.errorOutput.split(separator: "\n").first { $0.contains("subject:") }.map(String.init) ?? result.errorOutput
        }
        #expect(try await subject(asking: "www.example.test").contains("CN=exact.example.test"))
        #expect(try await subject(asking: "other.example.test").contains("CN=wildcard.example.test"))
        #expect(try await subject(asking: "a.b.example.test").contains("CN=wildcard.example.test"), "*.example.test covers deeper names, as pathod's lookup did")
        #expect(try await subject(asking: "localhost").contains("CN=fallback.test"))

        // Through CONNECT, a client that sends no SNI gets the certificate for the CONNECT host.
        let plain = try await ChildProcess.start(
            PathocCLITests.binary("pathod"), ["-p", "0", "--cert", fallback, "--cert", "*.example.test=\(wildcard)"]
        )
        defer { plain.terminate() }
        #expect(await plain.waitForOutput(containing: "listening on"), "\(plain.output)")
        let plainPort = try #require(plain.output.split(separator: "\n").first?.split(separator: ":").last.map(String.init))
        for (target, expected) in [("other.example.test:443", "wildcard.example.test"), ("elsewhere.test:443", "fallback.test")] {
            let tunnel = try await CommandRunner.run("openssl", [
                "s_client", "-proxy", "127.0.0.1:\(plainPort)", "-connect", target, "-noservername",
            ], stdin: Data(), timeout: 30)
            #expect(tunnel.output.contains("CN = \(expected)") || tunnel.output.contains("CN=\(expected)"), "\(target): \(tunnel)")
        }

        // A certificate file without a key, and no --cert-key: refused at start, naming the file.
        let keyless = try write("keyless.test", withKey: false)
        let refused = try await CommandRunner.run(PathocCLITests.binary("pathod"), ["-p", "0", "--cert", "x.test=\(keyless)"], timeout: 10)
        #expect(refused.exitCode != 0)
        #expect(refused.errorOutput.contains("no private key in \(keyless)"), "\(refused)")
    }

    @Test("-q and -r log requests and responses in full, -f to a file; -c moves the craft anchor")
    func logging() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let log = scratch.file("log.txt")
        let process = try await ChildProcess.start(PathocCLITests.binary("pathod"), ["-p", "0", "-q", "-r", "-f", log, "-c", "/craft/"])
        defer { process.terminate() }
        #expect(await process.waitForOutput(containing: "listening on"), "\(process.output)")
        let port = try #require(process.output.split(separator: "\n").first?.split(separator: ":").last.map(String.init))
        let result = try await CommandRunner.run("curl", ["-sS", "-H", "X-Probe: 1", "http://127.0.0.1:\(port)/craft/201:b'logged'"])
        #expect(result.output == "logged", "\(result)")
        var text = ""
        for _ in 0..<100 where !text.contains("body:") {
            try await Task.sleep(for: .milliseconds(50))
            text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        }
        #expect(text.contains("GET /craft/201:b'logged'") && text.contains("<< 201:b'logged'"), "\(text)")
        #expect(text.contains("    X-Probe: 1"), "-q logs the request's headers: \(text)")
        #expect(text.contains("    201 Created") && text.contains("    body: logged"), "-r logs the response: \(text)")
        #expect(!process.output.contains("X-Probe"), "with -f the log goes to the file only: \(process.output)")
    }

    @Test("Ctrl-C stops pathod in the middle of a gigabyte: the connection is closed and pathod exits 0")
    func interruptWhileStreaming() async throws {
        let process = try await ChildProcess.start(PathocCLITests.binary("pathod"), ["-p", "0"])
        defer { process.kill() }
        #expect(await process.waitForOutput(containing: "listening on"), "\(process.output)")
        let port = try #require(process.output.split(separator: "\n").first?.split(separator: ":").last.map(String.init))
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let body = scratch.file("body")
        let download = try await ChildProcess.start("curl", ["-sS", "-o", body, "http://127.0.0.1:\(port)/p/200:b@1g"])
        defer { download.kill() }
        // Interrupt once the body is flowing (a megabyte has arrived).
        var received: UInt64 = 0
        for _ in 0..<400 where received < 1 << 20 {
            try await Task.sleep(for: .milliseconds(25))
            received = ((try? FileManager.default.attributesOfItem(atPath: body))?[.size] as? UInt64) ?? 0
        }
        #expect(received >= 1 << 20, "the body did not start: \(received) bytes")
        process.interrupt()
        #expect(await process.waitForExit(timeout: 20) == 0, "\(process.output)")
        let curlExit = await download.waitForExit(timeout: 20)
        #expect(curlExit == 18, "curl saw the transfer cut short (18), not a whole gigabyte: \(String(describing: curlExit))")
    }

    @Test("Certificate lookup by server name: exact, then wildcards from the most specific, then *")
    func certificateCandidates() {
        #expect(PathodDomainCertificate.candidates(for: "www.b.Example") == ["www.b.example", "*.b.example", "*.example", "*"])
        #expect(PathodDomainCertificate.candidates(for: nil) == ["*"])
        #expect(PathodDomainCertificate.candidates(for: "localhost") == ["localhost", "*"])
    }
}
