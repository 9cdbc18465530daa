import Foundation
import MitmTestSupport
import Synchronization
import Testing

/// The `mitmdump` executable itself: flags, output, errors and Ctrl-C, run as a user runs it.
@Suite("mitmdump command line", .timeLimit(.minutes(1)))
struct MitmDumpCLITests {
    /// The `mitmdump` built next to this test bundle (`swift build --build-tests` builds it).
    static var binary: URL {
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent("mitmdump")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return URL(fileURLWithPath: ".build/debug/mitmdump")
    }

    @Test("an unknown --set option fails at start, naming the option")
    func unknownOption() async throws {
        let result = try await CommandRunner.run(Self.binary.path, ["--set", "nonsense=1", "-p", "0"], timeout: 10)
        #expect(result.exitCode != 0)
        #expect(result.errorOutput.contains("No such option: nonsense"), "\(result)")
    }

    @Test("a bad value names the option, the value and what was expected")
    func badValue() async throws {
        let result = try await CommandRunner.run(Self.binary.path, ["--set", "body_size_limit=lots", "-p", "0"], timeout: 10)
        #expect(result.exitCode != 0)
        #expect(result.errorOutput.contains("Invalid value 'lots' for option body_size_limit"), "\(result)")
    }

    @Test("a bad mode is refused with the reason")
    func badMode() async throws {
        let result = try await CommandRunner.run(Self.binary.path, ["--mode", "reverse:ftp://x", "-p", "0"], timeout: 10)
        #expect(result.exitCode != 0)
        #expect(result.errorOutput.contains("unsupported scheme 'ftp'"), "\(result)")
    }

    @Test("several --mode values start one listener each, @port choosing the port; classic -U/--socks/-T parse")
    func severalModes() async throws {
        let confdir = try temporaryDirectory()
        let dump = try await RunningMitmDump.start([
            "--set", "confdir=\(confdir)", "--listen-host", "127.0.0.1", "-p", "0", "--mode", "regular", "--socks",
            "--mode", "upstream:http://127.0.0.1:9@0",
        ])
        defer { dump.kill() }
        _ = try await dump.waitForOutput(containing: "HTTP(S) proxy listening at 127.0.0.1:")
        _ = try await dump.waitForOutput(containing: "SOCKS v5 proxy listening at 127.0.0.1:")
        _ = try await dump.waitForOutput(containing: "HTTP(S) proxy (upstream mode) listening at 127.0.0.1:")
        dump.interrupt()
        #expect(try await dump.waitForExit(timeout: 10) == 0)
    }

    @Test("--anticache and --anticomp: the origin sees no conditional headers and Accept-Encoding: identity")
    func anticacheAnticomp() async throws {
        try await withLoopbackOrigin(.plain) { origin in
            let confdir = try temporaryDirectory()
            let dump = try await RunningMitmDump.start([
                "--set", "confdir=\(confdir)", "--listen-host", "127.0.0.1", "-p", "0", "--anticache", "--anticomp",
            ])
            defer { dump.kill() }
            let port = try await dump.waitForPort()
            let result = try await CommandRunner.run("curl", [
                "-s", "--max-time", "10", "-x", "http://127.0.0.1:\(port)", "-H", "If-None-Match: \"x\"",
                "-H", "If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT", "--compressed", origin.url("/echo"),
            ])
            let echo = try JSONDecoder().decode(EchoResponse.self, from: Data(result.output.utf8))
            #expect(echo.header("if-none-match") == nil && echo.header("if-modified-since") == nil, "\(echo)")
            #expect(echo.header("accept-encoding") == "identity", "\(echo)")
            dump.interrupt()
            _ = try await dump.waitForExit(timeout: 10)
        }
    }

    @Test("two modes on one port are refused before binding, naming both")
    func clashingModes() async throws {
        let result = try await CommandRunner.run(Self.binary.path, ["--mode", "regular", "--mode", "socks5@8080"], timeout: 10)
        #expect(result.exitCode != 0)
        #expect(result.errorOutput.contains("regular socks5@8080"), "\(result)")
        #expect(result.errorOutput.contains("both listen on port 8080"), "\(result)")
    }

    @Test("--proxyauth with a missing htpasswd file fails at start naming it")
    func badProxyAuth() async throws {
        let confdir = try temporaryDirectory()
        let result = try await CommandRunner.run(
            Self.binary.path, ["--set", "confdir=\(confdir)", "-p", "0", "--proxyauth", "@/nonexistent/htpasswd"], timeout: 20
        )
        #expect(result.exitCode != 0)
        #expect((result.output + result.errorOutput).contains("invalid proxyauth '@/nonexistent/htpasswd'"), "\(result)")
    }

    @Test("an unreadable --certs file fails at start with its path")
    func badCertificateFile() async throws {
        let confdir = try temporaryDirectory()
        let result = try await CommandRunner.run(
            Self.binary.path,
            ["--set", "confdir=\(confdir)", "--certs", "example.com=/nonexistent/cert.pem", "-p", "0"],
            timeout: 20
        )
        #expect(result.exitCode != 0)
        #expect((result.output + result.errorOutput).contains("/nonexistent/cert.pem"), "\(result)")
    }

    @Test("prints one line per flow as mitmdump does, -q prints nothing, Ctrl-C finishes open flows")
    func outputAndShutdown() async throws {
        try await withLoopbackOrigin(.plain) { origin in
            let confdir = try temporaryDirectory()
            let dump = try await RunningMitmDump.start(["--set", "confdir=\(confdir)", "--listen-host", "127.0.0.1", "-p", "0"])
            defer { dump.kill() }
            let port = try await dump.waitForPort()

            let get = try await CommandRunner.run(
                "curl", ["-s", "--max-time", "10", "-x", "http://127.0.0.1:\(port)", origin.url("/bytes/1234")]
            )
            #expect(get.stdout.count == 1234)
            _ = try await dump.waitForOutput(containing: "<< 200 OK 1.2k")
            let requestLine = try await dump.waitForOutput(containing: "GET \(origin.url("/bytes/1234"))")
            #expect(requestLine.hasPrefix("127.0.0.1:"), "\(requestLine)")

            // A slow request in flight when SIGINT arrives still gets its response.
            async let slow = CommandRunner.run(
                "curl", ["-s", "--max-time", "10", "-x", "http://127.0.0.1:\(port)", origin.url("/slow?ms=700")]
            )
            // Interrupt once the slow request is in flight (its connection is the second one).
            let deadline = Date().addingTimeInterval(10)
            while dump.output.components(separatedBy: "client connect").count < 3 && Date() < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            try await Task.sleep(for: .milliseconds(150))
            dump.interrupt()
            let slowResult = try await slow
            #expect(slowResult.output == "slow", "\(slowResult)")
            let status = try await dump.waitForExit(timeout: 10)
            #expect(status == 0)
        }
    }

    @Test("-q prints nothing for flows")
    func quiet() async throws {
        try await withLoopbackOrigin(.plain) { origin in
            let confdir = try temporaryDirectory()
            let dump = try await RunningMitmDump.start(["-q", "--set", "confdir=\(confdir)", "--listen-host", "127.0.0.1", "-p", "0"])
            defer { dump.kill() }
            // -q hides the listening line too, so find the port from the process's sockets.
            let port = try await dump.waitForListeningPortFromProc()
            let get = try await CommandRunner.run(
                "curl", ["-s", "--max-time", "10", "-x", "http://127.0.0.1:\(port)", origin.url("/bytes/10")]
            )
            #expect(get.stdout.count == 10)
            try await Task.sleep(for: .milliseconds(200))
            #expect(!dump.output.contains("<<"), "\(dump.output)")
        }
    }

    @Test("--flow-detail 2 adds headers")
    func flowDetailHeaders() async throws {
        try await withLoopbackOrigin(.plain) { origin in
            let confdir = try temporaryDirectory()
            let dump = try await RunningMitmDump.start([
                "--flow-detail", "2", "--set", "confdir=\(confdir)", "--listen-host", "127.0.0.1", "-p", "0",
            ])
            defer { dump.kill() }
            let port = try await dump.waitForPort()
            _ = try await CommandRunner.run(
                "curl", ["-s", "--max-time", "10", "-x", "http://127.0.0.1:\(port)", "-H", "X-Detail: yes", origin.url("/bytes/5")]
            )
            _ = try await dump.waitForOutput(containing: "<< 200 OK")
            #expect(dump.output.contains("X-Detail: yes"), "\(dump.output)")
        }
    }
}

/// A mitmdump process whose output is collected as it runs.
final class RunningMitmDump: Sendable {
    let process: ChildProcess

    static func start(_ arguments: [String]) async throws -> RunningMitmDump {
        RunningMitmDump(process: try await ChildProcess.start(MitmDumpCLITests.binary.path, arguments))
    }

    private init(process: ChildProcess) {
        self.process = process
    }

    var output: String { process.output }

    /// The port from "… listening at 127.0.0.1:PORT."
    func waitForPort() async throws -> Int {
        let line = try await waitForOutput(containing: "listening at")
        guard let range = line.range(of: "listening at "),
            let port = line[range.upperBound...].split(separator: ":").last.flatMap({ Int($0.trimmingCharacters(in: CharacterSet(charactersIn: ". \n"))) })
        else {
            throw TestFailure("no port in '\(line)'")
        }
        return port
    }

    /// For -q: the listening port read from /proc (the process prints nothing).
    func waitForListeningPortFromProc() async throws -> Int {
        let pid = process.pid
        for _ in 0..<100 {
            let result = try await CommandRunner.run("ss", ["-ltnpH"], timeout: 5)
            for line in result.output.split(separator: "\n") where line.contains("pid=\(pid),") {
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                if fields.count >= 4, let port = fields[3].split(separator: ":").last.flatMap({ Int($0) }) {
                    return port
                }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestFailure("mitmdump -q never listened")
    }

    func waitForOutput(containing text: String, timeout: Double = 15) async throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let output = self.output
            if let line = output.split(separator: "\n").first(where: { $0.contains(text) }) {
                return String(line)
            }
            if let code = process.exitCode {
                throw TestFailure("mitmdump exited (\(code)) before printing '\(text)':\n\(self.output)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestFailure("mitmdump did not print '\(text)' within \(timeout) s:\n\(output)")
    }

    func interrupt() {
        process.interrupt()
    }

    func waitForExit(timeout: Double) async throws -> Int32 {
        guard let code = await process.waitForExit(timeout: timeout) else {
            throw TestFailure("mitmdump did not exit within \(timeout) s")
        }
        return code
    }

    func kill() {
        process.terminate()
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A new directory for a mitmdump run's files (confdir, flow files).
func temporaryDirectory() throws -> String {
    try ScratchDirectory().path
}
