import Foundation
import Subprocess
import Synchronization

#if canImport(System)
import System
#else
import SystemPackage
#endif

/// A program a test starts and watches: curl, python3, openssl, mitmdump, pathod.
///
/// It runs on swift-subprocess rather than Foundation's `Process`, whose `run()` on Linux reads
/// past a buffer while listing `/proc/self/fd` and now and then kills the whole test process
/// (swift-corelibs-foundation#5472, fixed after Swift 6.3.1). Waiting never blocks a thread of
/// Swift's cooperative pool, which the in-process proxies' hooks share.
///
/// Standard output and standard error are collected as they arrive (or go to a file handle), so a
/// test can wait for a line while the program runs. ``terminate()`` or ``kill()`` end it; a test
/// that starts one ends it, usually in a `defer`.
public final class ChildProcess: Sendable {
    /// Where a stream of the child's output goes.
    public enum Destination: Sendable {
        /// Kept in memory: ``standardOutput``, ``standardError``, ``output``.
        case collect
        /// Written to this file handle (which the caller keeps open).
        case file(FileHandle)
        case discard
    }

    public let pid: Int32
    public let arguments: [String]
    private let state: SharedState

    private struct State {
        var stdout = Data()
        var stderr = Data()
        /// Both streams in the order they arrived.
        var combined = Data()
        var exitCode: Int32?
    }

    /// What the task running the child and this object share.
    private final class SharedState: Sendable {
        private let mutex = Mutex(State())
        func withLock<T>(_ body: (inout State) -> T) -> T { mutex.withLock { body(&$0) } }
    }

    private init(pid: Int32, arguments: [String], state: SharedState) {
        self.pid = pid
        self.arguments = arguments
        self.state = state
    }

    // MARK: - Starting

    /// Starts `executable` (a path, or a name looked up in PATH) with `arguments`. Proxy and
    /// CA-bundle variables are removed from the environment it inherits, then `environment` is
    /// added, so curl goes where the test points it. `stdin` is written and closed.
    public static func start(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String] = [:],
        stdin: Data? = nil,
        stdout: Destination = .collect,
        stderr: Destination = .collect
    ) async throws -> ChildProcess {
        let state = SharedState()
        let (pids, pidContinuation) = AsyncThrowingStream<Int32, any Error>.makeStream()

        let target: Executable = executable.contains("/") ? .path(FilePath(executable)) : .name(executable)
        let variables = ProcessInfo.processInfo.environment.filter { !scrubbedEnvironment.contains($0.key) }
            .merging(environment) { $1 }
            .map { Array("\($0.key)=\($0.value)".utf8) }

        Task.detached {
            do {
                let result = try await run(
                    target,
                    arguments: Arguments(arguments),
                    environment: .custom(variables),
                    input: .inputWriter,
                    output: .sequence,
                    error: .sequence
                ) { execution in
                    pidContinuation.yield(execution.processIdentifier.value)
                    pidContinuation.finish()
                    let writer = execution.standardInputWriter
                    async let fedInput: Void = {
                        if let stdin { _ = try? await writer.write(Array(stdin)) }
                        try? await writer.finish()
                    }()
                    async let readOutput: Void = drain(execution.standardOutput, to: stdout, state: state, isError: false)
                    async let readError: Void = drain(execution.standardError, to: stderr, state: state, isError: true)
                    _ = await (fedInput, readOutput, readError)
                }
                let code: Int32
                switch result.terminationStatus {
                case .exited(let status): code = status
                case .signaled(let signal): code = 128 + signal
                }
                state.withLock { $0.exitCode = code }
            } catch {
                // Spawning failed: the caller hears of it through `pids`.
                pidContinuation.finish(throwing: error)
                state.withLock { $0.exitCode = 127 }
            }
        }

        var iterator = pids.makeAsyncIterator()
        guard let pid = try await iterator.next() else {
            throw SpawnError(description: "\(executable) did not start")
        }
        return ChildProcess(pid: pid, arguments: [executable] + arguments, state: state)
    }

    struct SpawnError: Error, CustomStringConvertible {
        var description: String
    }

    /// Variables that would send a client somewhere other than where the test points it.
    static let scrubbedEnvironment: Set<String> = [
        "http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
        "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "SSLKEYLOGFILE",
    ]

    private static func drain(
        _ sequence: SubprocessOutputSequence,
        to destination: Destination,
        state: SharedState,
        isError: Bool
    ) async {
        do {
            for try await buffer in sequence {
                let data = buffer.withUnsafeBytes { Data($0) }
                switch destination {
                case .collect:
                    state.withLock { state in
                        if isError { state.stderr.append(data) } else { state.stdout.append(data) }
                        state.combined.append(data)
                    }
                case .file(let handle):
                    try? handle.write(contentsOf: data)
                case .discard:
                    break
                }
            }
        } catch {
            // The child went away mid-read; what arrived is kept.
        }
    }

    // MARK: - Watching

    public var standardOutput: Data { state.withLock { $0.stdout } }
    public var standardError: Data { state.withLock { $0.stderr } }
    /// Standard output and standard error as text, in the order they arrived.
    public var output: String { String(decoding: state.withLock { $0.combined }, as: UTF8.self) }

    /// The exit code once the child has ended: its status, or 128 + the signal that ended it.
    public var exitCode: Int32? { state.withLock { $0.exitCode } }
    public var isRunning: Bool { exitCode == nil }

    /// Waits until the child has ended and its output is read, and returns its ``exitCode``; `nil`
    /// if it is still running after `timeout` seconds (or the waiting task is cancelled). Any
    /// number of tasks may wait.
    public func waitForExit(timeout: Double = .infinity) async -> Int32? {
        let deadline = Date().addingTimeInterval(timeout.isFinite ? timeout : 365 * 86400)
        while Date() < deadline, !Task.isCancelled {
            if let code = exitCode { return code }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return exitCode
    }

    /// Waits until the output so far contains `text`, or the child ends, or `timeout` passes.
    public func waitForOutput(containing text: String, timeout: Double = 15) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if output.contains(text) { return true }
            if !isRunning { return output.contains(text) }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return output.contains(text)
    }

    // MARK: - Ending

    /// Sends `signal` unless the child has already ended.
    public func send(signal: Int32) {
        guard isRunning else { return }
        deliver(signal, to: pid)
    }

    /// SIGINT, as Ctrl-C would.
    public func interrupt() { send(signal: SIGINT) }
    /// SIGTERM.
    public func terminate() { send(signal: SIGTERM) }
    /// SIGKILL.
    public func kill() { send(signal: SIGKILL) }
}

/// `kill(2)`, out of reach of ``ChildProcess/kill()`` inside the class.
private func deliver(_ signal: Int32, to pid: Int32) {
    _ = kill(pid, signal)
}
