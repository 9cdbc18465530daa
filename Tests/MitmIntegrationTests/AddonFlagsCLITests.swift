import Foundation
import MitmTestSupport
import Testing

/// The built-in addons switched on by mitmdump's flags, modern and classic, run as a user runs them.
@Suite("mitmdump: the built-in addons' flags", .timeLimit(.minutes(2)))
struct AddonFlagsCLITests {
    @Test("--setheader, -B, --replace-from-file, -M, --map-local, block_list, -t and -u act on live traffic")
    func rewritingFlags() async throws {
        try await withLoopbackOrigin(.plain) { origin in
            let confdir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: confdir) }
            try "from a file".write(toFile: confdir + "/replacement.txt", atomically: true, encoding: .utf8)
            try "<p>local</p>".write(toFile: confdir + "/page.html", atomically: true, encoding: .utf8)
            let dump = try await RunningMitmDump.start([
                "--set", "confdir=\(confdir)", "--listen-host", "127.0.0.1", "-p", "0",
                "--setheader", "/~q/X-Set/classic", "-H", "|~s|X-Served|modern",
                "-B", "/~s/curl/CURL", "--replace-from-file", "/~q/PLACEHOLDER/\(confdir)/replacement.txt",
                "-M", "|/moved|/echo", "--map-local", "|/local/page|\(confdir)/page.html",
                "--set", "block_list=/~u blocked/403", "--set", "block_list=/~u gone/444",
                "-t", "~u cookie", "-u", "~u auth",
            ])
            defer { dump.kill() }
            let proxy = "http://127.0.0.1:\(try await dump.waitForPort())"

            let echoed = try await Curl.transfer(["-x", proxy, "--data-binary", "PLACEHOLDER", origin.url("/moved")])
            let echo = try #require(echoed.echo, "\(echoed)")
            #expect(echo.uri == "/echo", "-M mapped the URL")
            #expect(echo.header("x-set") == "classic", "--setheader")
            #expect(echo.body == "from a file", "--replace-from-file")
            #expect(echoed.header("X-Served") == "modern", "-H on the response")
            #expect(echo.header("user-agent")?.hasPrefix("CURL/") == true, "-B on the response: \(echoed.bodyText)")

            let local = try await Curl.transfer(["-x", proxy, origin.url("/local/page")])
            #expect(local.bodyText == "<p>local</p>" && local.header("Content-Type")?.hasPrefix("text/html") == true, "\(local)")
            let blocked = try await Curl.transfer(["-x", proxy, origin.url("/blocked")])
            #expect(blocked.statusCode == 403)
            let gone = try await CommandRunner.run("curl", ["-s", "--max-time", "10", "-x", proxy, origin.url("/gone")])
            #expect(gone.exitCode == 52, "444 closes without an answer: \(gone)")

            // -t: the cookie a response set comes back on the next request; -u: the Authorization too.
            _ = try await Curl.transfer(["-x", proxy, origin.url("/set-cookie?sid=42")])
            let withCookie = try #require(try await Curl.transfer(["-x", proxy, origin.url("/echo?cookie=2")]).echo)
            #expect(withCookie.header("cookie") == "sid=42", "\(withCookie)")
            _ = try await Curl.transfer(["-x", proxy, "-u", "user:pw", origin.url("/echo?auth=1")])
            let withAuth = try #require(try await Curl.transfer(["-x", proxy, origin.url("/echo?auth=2")]).echo)
            #expect(withAuth.header("authorization") == "Basic dXNlcjpwdw==", "\(withAuth)")
            dump.interrupt()
            _ = try await dump.waitForExit(timeout: 10)
        }
    }

    @Test("-w records, -n -c replays the requests and exits when done, -S answers from the file with no origin")
    func replayFlags() async throws {
        let confdir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: confdir) }
        let file = confdir + "/flows.mitm"
        let originPort: Int
        do {
            let origin = try await LoopbackOrigin.start(.plain)
            originPort = origin.port
            let recorder = try await RunningMitmDump.start(["--set", "confdir=\(confdir)", "--listen-host", "127.0.0.1", "-p", "0", "-w", file])
            defer { recorder.kill() }
            let proxy = "http://127.0.0.1:\(try await recorder.waitForPort())"
            _ = try await Curl.transfer(["-x", proxy, origin.url("/echo?n=1")])
            _ = try await Curl.transfer(["-x", proxy, origin.url("/bytes/10")])
            recorder.interrupt()
            _ = try await recorder.waitForExit(timeout: 10)

            // Classic -c with -n: both requests again, in order, then exit.
            let replay = try await CommandRunner.run(
                MitmDumpCLITests.binary.path, ["--set", "confdir=\(confdir)", "-n", "-c", file], timeout: 30
            )
            #expect(replay.exitCode == 0, "\(replay)")
            #expect(origin.requests.map(\.uri) == ["/echo?n=1", "/bytes/10", "/echo?n=1", "/bytes/10"])
            #expect(replay.output.contains("[replay]"), "\(replay)")
            await origin.shutdown()
        }

        // -S with the origin gone: the recorded responses answer; --norefresh keeps the recorded Date.
        let server = try await RunningMitmDump.start([
            "--set", "confdir=\(confdir)", "--listen-host", "127.0.0.1", "-p", "0", "-S", file, "--norefresh", "--kill",
        ])
        defer { server.kill() }
        let proxy = "http://127.0.0.1:\(try await server.waitForPort())"
        let bytes = try await Curl.transfer(["-x", proxy, "http://127.0.0.1:\(originPort)/bytes/10"])
        #expect(bytes.statusCode == 200 && bytes.body.count == 10, "\(bytes)")
        let unknown = try await CommandRunner.run("curl", ["-s", "--max-time", "10", "-x", proxy, "http://127.0.0.1:\(originPort)/other"])
        #expect(unknown.exitCode == 52, "--kill closes unmatched requests: \(unknown)")
        server.interrupt()
        _ = try await server.waitForExit(timeout: 10)
    }

    @Test(
        "a malformed spec or an unreadable file stops mitmdump at start, naming the option and the spec",
        arguments: [
            (["--setheader", "/X-A"], "Invalid value '/X-A' for option modify_headers: expected 2 or 3 parts"),
            (["-B", "/~q/(/x"], "Invalid value '/~q/(/x' for option modify_body: invalid regular expression"),
            (["-M", "|~q ~|a|b"], "Invalid value '|~q ~|a|b' for option map_remote: invalid filter"),
            (["--replace-from-file", "/~q/a//nonexistent/file"], "for option modify_body: cannot read replacement file"),
            (["--set", "block_list=/~q/teapot"], "Invalid value '/~q/teapot' for option block_list:"),
            (["-S", "/nonexistent/flows.mitm"], "Invalid value '/nonexistent/flows.mitm' for option server_replay:"),
            (["-C", "/nonexistent/flows.mitm"], "Invalid value '/nonexistent/flows.mitm' for option client_replay:"),
            (["-t", "~q ~"], "Invalid value '~q ~' for option stickycookie: invalid filter expression"),
        ]
    )
    func badSpecs(arguments: [String], message: String) async throws {
        let confdir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: confdir) }
        let result = try await CommandRunner.run(
            MitmDumpCLITests.binary.path, ["--set", "confdir=\(confdir)", "--listen-host", "127.0.0.1", "-p", "0"] + arguments, timeout: 10
        )
        #expect(result.exitCode != 0)
        #expect((result.errorOutput + result.output).contains(message), "\(result)")
        #expect(!result.output.contains("listening"), "\(result)")
    }
}
