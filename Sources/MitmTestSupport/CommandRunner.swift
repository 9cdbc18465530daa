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

/// Runs real clients (curl, openssl, python3) for loopback tests.
public enum CommandRunner {
    /// Environment variables that would send a client somewhere other than where the test points it.
    static let scrubbed: Set<String> = [
        "http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
        "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "SSLKEYLOGFILE",
    ]

    /// Runs `executable` (looked up in PATH) with `arguments`, feeding `stdin`, killing it after
    /// `timeout` seconds. Proxy and CA-bundle variables are removed from its environment.
    public static func run(
        _ executable: String,
        _ arguments: [String],
        stdin: Data? = nil,
        timeout: Double = 15,
        environment: [String: String] = [:]
    ) async throws -> CommandResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [executable] + arguments
        var env = ProcessInfo.processInfo.environment.filter { !scrubbed.contains($0.key) }
        env.merge(environment) { $1 }
        process.environment = env
        let outPipe = Pipe()
        let errPipe = Pipe()
        let inPipe = Pipe()
        process.standardOutput = outPipe
        process.standardError = errPipe
        process.standardInput = inPipe

        let start = Date()
        let timedOut = Atomic<Bool>(false)
        let exited = AsyncStream<Void>.makeStream()
        process.terminationHandler = { _ in
            exited.continuation.yield()
            exited.continuation.finish()
        }
        try process.run()

        // Read both pipes on their own threads so a chatty process never blocks on a full pipe.
        async let out = readAll(outPipe.fileHandleForReading)
        async let err = readAll(errPipe.fileHandleForReading)
        let writer = Thread {
            if let stdin { try? inPipe.fileHandleForWriting.write(contentsOf: stdin) }
            try? inPipe.fileHandleForWriting.close()
        }
        writer.start()

        let pid = process.processIdentifier
        let killer = Task {
            try await Task.sleep(for: .seconds(timeout))
            timedOut.store(true, ordering: .relaxed)
            kill(pid, SIGKILL)
        }
        for await _ in exited.stream {}
        killer.cancel()
        let stdout = await out
        let stderr = await err
        return CommandResult(
            arguments: [executable] + arguments,
            exitCode: process.terminationStatus,
            stdout: stdout,
            stderr: stderr,
            timedOut: timedOut.load(ordering: .relaxed),
            duration: Date().timeIntervalSince(start)
        )
    }

    private static func readAll(_ handle: FileHandle) async -> Data {
        await withCheckedContinuation { continuation in
            Thread {
                let data = (try? handle.readToEnd()) ?? Data()
                continuation.resume(returning: data)
            }.start()
        }
    }

    /// Whether `executable` is found in PATH.
    public static func isAvailable(_ executable: String) -> Bool {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(executable)") }
    }
}
