import Foundation
import MitmTestSupport
import Testing

/// mitmdump with flow files: `-w` while proxying, `-nr` to read them back, filters, `hardump`.
@Suite("mitmdump flow files", .timeLimit(.minutes(1)))
struct FlowFileCLITests {
    @Test("-w records flows; -nr shows them; a filter selects what -nr -w saves; hardump writes a HAR")
    func recordReadFilter() async throws {
        try await withLoopbackOrigin(.plain) { origin in
            let directory = try temporaryDirectory()
            let capture = directory + "/out.mitm"
            let har = directory + "/out.har"
            let dump = try await RunningMitmDump.start([
                "--set", "confdir=\(directory)", "--listen-host", "127.0.0.1", "-p", "0",
                "-w", capture, "--set", "hardump=\(har)",
            ])
            defer { dump.kill() }
            let port = try await dump.waitForPort()
            let proxy = "http://127.0.0.1:\(port)"
            _ = try await CommandRunner.run("curl", ["-s", "--max-time", "10", "-x", proxy, origin.url("/bytes/10")])
            _ = try await CommandRunner.run("curl", ["-s", "--max-time", "10", "-x", proxy, "-d", "a=1", origin.url("/echo")])
            _ = try await dump.waitForOutput(containing: "POST")
            dump.interrupt()
            #expect(try await dump.waitForExit(timeout: 10) == 0)

            let all = try await CommandRunner.run(MitmDumpCLITests.binary.path, ["-n", "-r", capture], timeout: 20)
            #expect(all.exitCode == 0, "\(all)")
            #expect(all.output.contains("GET \(origin.url("/bytes/10"))"), "\(all.output)")
            #expect(all.output.contains("POST \(origin.url("/echo"))"), "\(all.output)")

            let filtered = directory + "/posts.mitm"
            let save = try await CommandRunner.run(
                MitmDumpCLITests.binary.path, ["-n", "-r", capture, "-w", filtered, "~m post"], timeout: 20
            )
            #expect(save.exitCode == 0, "\(save)")
            #expect(!save.output.contains("GET "), "the filter also selects what is shown: \(save.output)")
            let posts = try await CommandRunner.run(MitmDumpCLITests.binary.path, ["-n", "-r", filtered], timeout: 20)
            #expect(posts.output.contains("POST"), "\(posts.output)")
            #expect(!posts.output.contains("GET "), "\(posts.output)")

            let fromHAR = try await CommandRunner.run(MitmDumpCLITests.binary.path, ["-n", "-r", har], timeout: 20)
            #expect(fromHAR.output.contains("POST \(origin.url("/echo"))"), "\(fromHAR)")
        }
    }

    @Test("-nr shows WebSocket messages and TCP data as mitmdump does; filters and -w keep those flows")
    func webSocketAndTCPFlows() async throws {
        let websocket = try fixture("websocket")
        let shown = try await CommandRunner.run(MitmDumpCLITests.binary.path, ["-n", "-r", websocket], timeout: 20)
        #expect(shown.exitCode == 0, "\(shown)")
        #expect(shown.output.contains("<< 101 Switching Protocols"), "\(shown.output)")
        #expect(shown.output.contains("127.0.0.1:58246 <- WebSocket text message <- demo.piesocket.com:443/v3/channel_123"), "\(shown.output)")
        #expect(shown.output.contains("WebSocket connection closed by client: 1005"), "\(shown.output)")

        let mixed = try fixture("diff_data")
        let tcpOnly = try await CommandRunner.run(MitmDumpCLITests.binary.path, ["-n", "-r", mixed, "~tcp"], timeout: 20)
        let tcpLines = tcpOnly.output.split(separator: "\n")
        #expect(tcpLines.count == 7, "3 + 4 messages: \(tcpOnly.output)")
        #expect(tcpLines.allSatisfy { $0.contains(" tcp ") && $0.contains("mtalk.google.com:5228") }, "\(tcpOnly.output)")
        #expect(tcpLines.first == "127.0.0.1:57055 -> tcp -> mtalk.google.com:5228")

        let directory = try temporaryDirectory()
        let copy = directory + "/copy.mitm"
        let save = try await CommandRunner.run(MitmDumpCLITests.binary.path, ["-q", "-n", "-r", mixed, "-w", copy], timeout: 20)
        #expect(save.exitCode == 0, "\(save)")
        let again = try await CommandRunner.run(MitmDumpCLITests.binary.path, ["-n", "-r", copy], timeout: 20)
        let original = try await CommandRunner.run(MitmDumpCLITests.binary.path, ["-n", "-r", mixed], timeout: 20)
        #expect(again.output == original.output, "the copy shows the same flows, TCP included")
        #expect(again.output.contains(" tcp "), "\(again.output)")
    }

    private func fixture(_ name: String) throws -> String {
        try #require(Bundle.module.url(forResource: name, withExtension: "mitm", subdirectory: "Fixtures"), "fixture missing").path
    }

    @Test("a bad filter expression is refused at start with the position")
    func badFilter() async throws {
        let result = try await CommandRunner.run(MitmDumpCLITests.binary.path, ["-n", "~m ("], timeout: 10)
        #expect(result.exitCode != 0)
        #expect(result.errorOutput.contains("position"), "\(result)")
    }

    @Test("a truncated flow file shows the flows before the damage, then an error with the byte offset")
    func truncatedFile() async throws {
        let fixture = try #require(
            Bundle.module.url(forResource: "dumpfile-7", withExtension: "mitm", subdirectory: "Fixtures"),
            "fixture missing"
        )
        let bytes = try Data(contentsOf: fixture)
        let directory = try temporaryDirectory()
        let cut = directory + "/cut.mitm"
        try bytes.prefix(bytes.count - 100).write(to: URL(fileURLWithPath: cut))
        let result = try await CommandRunner.run(MitmDumpCLITests.binary.path, ["-n", "-r", cut], timeout: 20)
        #expect(result.exitCode != 0)
        #expect(result.output.contains("http://example.com/"), "the first flow is shown: \(result)")
        #expect((result.output + result.errorOutput).contains("byte"), "\(result)")
    }
}
