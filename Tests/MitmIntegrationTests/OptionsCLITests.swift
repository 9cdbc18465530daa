import Foundation
import MitmTestSupport
import Testing

/// mitmdump's options from its config files and `--options`, run as a user runs it.
@Suite("mitmdump options and config files", .timeLimit(.minutes(1)))
struct OptionsCLITests {
    @Test("--options prints every option with its help and default, as YAML")
    func listing() async throws {
        let result = try await CommandRunner.run(MitmDumpCLITests.binary.path, ["--options"], timeout: 10)
        #expect(result.exitCode == 0)
        for line in ["anticache: false", "block_global: true", "onboarding_host: mitm.it", "server_replay_extra: forward", "ignore_hosts: []", "listen_port:"] {
            #expect(result.output.contains("\n\(line)\n"), "\(line)")
        }
        #expect(result.output.contains("# Remove the request headers that let a server answer 304"))
        let names = result.output.split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.hasPrefix("-") && $0.contains(":") }
        #expect(names.count > 90)
    }

    @Test("config.yaml, common.conf and mitmdump.conf in the confdir are read; the command line wins")
    func configFiles() async throws {
        try await withLoopbackOrigin(.plain) { origin in
            let confdir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: confdir) }
            // mitmproxy 11's YAML…
            try "anticache: true\nlisten_port: 1\nflow_detail: 2\n".write(toFile: confdir + "/config.yaml", atomically: true, encoding: .utf8)
            // …and the classic files of 0.18, in their own syntax.
            try "# classic\n--anticomp\nlisten-host = 127.0.0.1\n".write(toFile: confdir + "/common.conf", atomically: true, encoding: .utf8)
            try "flow-detail: 1\n".write(toFile: confdir + "/mitmdump.conf", atomically: true, encoding: .utf8)
            let dump = try await RunningMitmDump.start(["--set", "confdir=\(confdir)", "-p", "0"])
            defer { dump.kill() }
            let port = try await dump.waitForPort()
            let result = try await CommandRunner.run("curl", [
                "-s", "--max-time", "10", "-x", "http://127.0.0.1:\(port)", "-H", "If-None-Match: \"x\"", origin.url("/echo"),
            ])
            let echo = try JSONDecoder().decode(EchoResponse.self, from: Data(result.output.utf8))
            #expect(echo.header("if-none-match") == nil, "config.yaml's anticache: \(echo)")
            #expect(echo.header("accept-encoding") == "identity", "common.conf's anticomp: \(echo)")
            _ = try await dump.waitForOutput(containing: "<< 200")
            // mitmdump.conf's flow detail 1 beat config.yaml's 2: no header lines.
            #expect(!dump.output.contains("content-type: application/json"), "\(dump.output)")
            dump.interrupt()
            _ = try await dump.waitForExit(timeout: 10)
        }
    }

    @Test(
        "a mistake in a config file stops mitmdump before it listens, naming the file, the position and the option",
        arguments: [
            ("config.yaml", "anticache: true\nanticahce: true\n", "config.yaml:2:1: No such option: anticahce (did you mean anticache?)"),
            ("config.yaml", "listen_port: [8080]\n", "config.yaml:1:14: option listen_port: expected an integer"),
            ("common.conf", "anticache\nnoap = true\n", "common.conf:2: Unknown option '--noap'"),
            ("mitmdump.conf", "flow-detail = many\n", "mitmdump.conf:1:"),
        ]
    )
    func mistakes(file: String, text: String, message: String) async throws {
        let confdir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: confdir) }
        try text.write(toFile: confdir + "/" + file, atomically: true, encoding: .utf8)
        let result = try await CommandRunner.run(
            MitmDumpCLITests.binary.path, ["--set", "confdir=\(confdir)", "--listen-host", "127.0.0.1", "-p", "0"], timeout: 10
        )
        #expect(result.exitCode != 0)
        #expect(result.errorOutput.contains(message), "\(result)")
        #expect(!result.output.contains("listening"), "\(result)")
    }
}

/// Options that meet on one flow, through mitmdump, as mitmproxy combines them.
@Suite("mitmdump: body_size_limit, keep_host_header, showhost and anticache together", .timeLimit(.minutes(1)))
struct OptionInterplayCLITests {
    @Test("reverse mode keeping the Host header, shown by showhost, anticache stripping, body_size_limit beating streaming")
    func together() async throws {
        try await withLoopbackOrigin(.plain) { origin in
            let confdir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: confdir) }
            let dump = try await RunningMitmDump.start([
                "--set", "confdir=\(confdir)", "--listen-host", "127.0.0.1", "-p", "0",
                "--mode", "reverse:http://127.0.0.1:\(origin.port)", "--keep-host-header", "--showhost", "--anticache",
                "--set", "body_size_limit=1k", "--set", "stream_large_bodies=512",
            ])
            defer { dump.kill() }
            let port = try await dump.waitForPort()
            let result = try await CommandRunner.run("curl", [
                "-s", "--max-time", "10", "-H", "Host: shop.example:8443", "-H", "If-None-Match: \"x\"",
                "http://127.0.0.1:\(port)/echo",
            ])
            let echo = try JSONDecoder().decode(EchoResponse.self, from: Data(result.output.utf8))
            // keep_host_header: the origin sees the client's Host; anticache: no conditional header.
            #expect(echo.header("host") == "shop.example:8443", "\(echo)")
            #expect(echo.header("if-none-match") == nil, "\(echo)")
            // showhost: mitmdump prints the URL with the Host header's host.
            _ = try await dump.waitForOutput(containing: "http://shop.example:8443/echo")
            // A body above body_size_limit is refused even though it is above stream_large_bodies too.
            let upload = try await CommandRunner.run("curl", [
                "-s", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", String(repeating: "x", count: 2048),
                "http://127.0.0.1:\(port)/echo",
            ])
            #expect(upload.output == "413", "\(upload)")
            #expect(origin.requests.count == 1)
            dump.interrupt()
            _ = try await dump.waitForExit(timeout: 10)
        }
    }
}
