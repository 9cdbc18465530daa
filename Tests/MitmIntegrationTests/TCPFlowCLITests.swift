import Foundation
import MitmTestSupport
import Testing

/// `mitmdump` with TCP flows, run as a user runs it: the `-> tcp ->` lines, `-w`, `-nr`, and a bad
/// host pattern at start.
@Suite("mitmdump with TCP flows", .timeLimit(.minutes(1)))
struct TCPFlowCLITests {
    @Test("--tcp-hosts prints -> tcp -> lines, -w saves the TCP flow and -nr reads it back")
    func dumpAndSave() async throws {
        let origin = try await TCPOrigin.start()
        defer { Task { await origin.shutdown() } }
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/tcp.mitm"
        let dump = try await RunningMitmDump.start([
            "--set", "confdir=\(directory)", "--listen-host", "127.0.0.1", "-p", "0",
            "--tcp-hosts", "^127\\.", "--flow-detail", "3", "-w", file,
        ])
        defer { dump.kill() }
        let port = try await dump.waitForPort()

        let client = try await RawConnection.connect(port: port)
        try await client.send("CONNECT \(origin.address) HTTP/1.1\r\n\r\n")
        #expect(await client.waitForText("\r\n\r\n"))
        try await client.send("tcp payload")
        #expect(await client.waitForText("tcp payload"))
        try await client.shutdownOutput()
        #expect(await client.waitForClose())
        await client.close()

        let line = try await dump.waitForOutput(containing: "-> tcp -> 127.0.0.1:\(origin.port)")
        #expect(line.hasPrefix("127.0.0.1:"), "\(line)")
        _ = try await dump.waitForOutput(containing: "<- tcp <- 127.0.0.1:\(origin.port)")
        #expect(dump.output.contains("tcp payload"), "\(dump.output)")
        dump.interrupt()
        #expect(try await dump.waitForExit(timeout: 10) == 0)

        let read = try await CommandRunner.run(MitmDumpCLITests.binary.path, ["-nr", file, "--flow-detail", "3"])
        #expect(read.succeeded, "\(read)")
        #expect(read.output.contains("-> tcp -> 127.0.0.1:\(origin.port)"), "\(read)")
        #expect(read.output.contains("<- tcp <- 127.0.0.1:\(origin.port)"), "\(read)")
        #expect(read.output.contains("tcp payload"), "\(read)")
    }

    @Test("a host pattern that does not compile stops mitmdump at start, naming the option")
    func badPattern() async throws {
        for (flag, option) in [("--ignore-hosts", "ignore_hosts"), ("--allow-hosts", "allow_hosts"), ("--tcp-hosts", "tcp_hosts")] {
            let result = try await CommandRunner.run(MitmDumpCLITests.binary.path, [flag, "(", "-p", "0"])
            #expect(result.exitCode != 0)
            let text = result.output + result.errorOutput
            #expect(text.contains("Invalid value '(' for option \(option)"), "\(result)")
        }
        let set = try await CommandRunner.run(MitmDumpCLITests.binary.path, ["--set", "tcp_hosts=[", "-p", "0"])
        #expect((set.output + set.errorOutput).contains("option tcp_hosts"), "\(set)")
        let rawtcp = try await CommandRunner.run(MitmDumpCLITests.binary.path, ["--set", "rawtcp=maybe", "-p", "0"])
        #expect((rawtcp.output + rawtcp.errorOutput).contains("option rawtcp"), "\(rawtcp)")
    }
}
