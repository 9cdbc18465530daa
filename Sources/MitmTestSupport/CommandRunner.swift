import Foundation
import Synchronization

/// What a finished command printed and how it ended.
public struct CommandResult: Sendable, CustomStringConvertible {
    public var arguments: [String]
    public var exitCode: Int32
    public var stdout: Data
    public var stderr: Data
    /// Whether the command was killed for running past its time limit.
    public var timedOut: Bool
    public var duration: Double

    public var output: String { String(decoding: stdout, as: UTF8.self) }
    public var errorOutput: String { String(decoding: stderr, as: UTF8.self) }
    public var succeeded: Bool { exitCode == 0 && !timedOut }

    public var description: String {
        let shown = arguments.map { $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " ")
        return """
            $ \(shown)
            exit \(exitCode)\(timedOut ? " (killed after time limit)" : "") in \(String(format: "%.2f", duration)) s
            stdout: \(output.prefix(2000))
            stderr: \(errorOutput.prefix(4000))
            """
    }
}

/// Runs real clients (curl, openssl, python3) for loopback tests, each to its end.
public enum CommandRunner {
    /// Runs `executable` (a path, or a name looked up in PATH) with `arguments`, feeding `stdin`,
    /// killing it after `timeout` seconds. Proxy and CA-bundle variables are removed from its
    /// environment (see ``ChildProcess``).
    public static func run(
        _ executable: String,
        _ arguments: [String],
        stdin: Data? = nil,
        timeout: Double = 15,
        environment: [String: String] = [:]
    ) async throws -> CommandResult {
        let start = Date()
        let child = try await ChildProcess.start(executable, arguments, environment: environment, stdin: stdin)
        var exitCode = await child.waitForExit(timeout: timeout)
        let timedOut = exitCode == nil
        if timedOut {
            child.kill()
            exitCode = await child.waitForExit()
        }
        return CommandResult(
            arguments: child.arguments,
            exitCode: exitCode ?? -1,
            stdout: child.standardOutput,
            stderr: child.standardError,
            timedOut: timedOut,
            duration: Date().timeIntervalSince(start)
        )
    }

    /// Whether `executable` is found in PATH.
    public static func isAvailable(_ executable: String) -> Bool {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(executable)") }
    }
}
