import Foundation
import MitmTestSupport
import Testing

/// The test support's way of running programs (swift-subprocess, not Foundation's `Process`).
@Suite("Child processes of the tests", .timeLimit(.minutes(1)))
struct ChildProcessTests {
    @Test("stdin reaches the child, stdout and stderr come back apart, the exit code is kept")
    func inputOutputAndStatus() async throws {
        let result = try await CommandRunner.run(
            "sh", ["-c", "cat; echo oops >&2; exit 3"], stdin: Data("fed\n".utf8), timeout: 10
        )
        #expect(result.output == "fed\n" && result.errorOutput == "oops\n", "\(result)")
        #expect(result.exitCode == 3 && !result.timedOut)
    }

    @Test("a child past its time limit is killed and reported as timed out")
    func timeLimit() async throws {
        let result = try await CommandRunner.run("sh", ["-c", "echo started; sleep 30"], timeout: 0.5)
        #expect(result.timedOut && !result.succeeded, "\(result)")
        #expect(result.output == "started\n", "what it printed before is kept: \(result)")
        #expect(result.duration < 20)
    }

    @Test("a running child: output while it runs, several waiters, a signal ends it with 128 + the signal")
    func runningChild() async throws {
        let child = try await ChildProcess.start("sh", ["-c", "echo ready; sleep 30"])
        #expect(await child.waitForOutput(containing: "ready"))
        #expect(child.isRunning)
        #expect(await child.waitForExit(timeout: 0.2) == nil, "still running")
        async let first = child.waitForExit(timeout: 20)
        async let second = child.waitForExit(timeout: 20)
        child.terminate()
        let codes = await (first, second)
        #expect(codes.0 == 128 + SIGTERM && codes.1 == 128 + SIGTERM, "\(codes)")
        #expect(await child.waitForExit() == 128 + SIGTERM)
    }

    @Test("a program that does not exist is an error at start")
    func missingProgram() async {
        await #expect(throws: (any Error).self) {
            _ = try await ChildProcess.start("/nonexistent/program", [])
        }
    }
}
