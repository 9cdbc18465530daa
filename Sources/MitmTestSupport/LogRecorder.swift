import Foundation
import Logging
import Synchronization

/// Collects log messages in memory, so a test can assert that something was logged (an addon error,
/// a refused request). Set `MITM_TEST_LOG=1` in the environment to also print them to standard error.
public final class LogRecorder: Sendable {
    public struct Entry: Sendable, CustomStringConvertible {
        public var level: Logger.Level
        public var message: String
        public var description: String { "[\(level)] \(message)" }
    }

    private let entries = Mutex<[Entry]>([])
    let echo: Bool

    public init(echo: Bool = ProcessInfo.processInfo.environment["MITM_TEST_LOG"] != nil) {
        self.echo = echo
    }

    /// A logger writing into this recorder, at `level` and above.
    public func logger(label: String = "mitmproxy", level: Logger.Level = .debug) -> Logger {
        var logger = Logger(label: label) { _ in RecordingLogHandler(recorder: self) }
        logger.logLevel = level
        return logger
    }

    /// Every entry so far.
    public var all: [Entry] { entries.withLock { $0 } }
    /// Every message so far.
    public var messages: [String] { all.map(\.message) }

    /// Whether some message contains `text`.
    public func contains(_ text: String) -> Bool {
        messages.contains { $0.contains(text) }
    }

    /// Waits until some message contains `text` (or `timeout` seconds pass).
    @discardableResult
    public func wait(forMessageContaining text: String, timeout: Double = 5) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if contains(text) { return true }
            if Date() >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    func append(_ entry: Entry) {
        entries.withLock { $0.append(entry) }
        if echo {
            FileHandle.standardError.write(Data("\(entry)\n".utf8))
        }
    }
}

struct RecordingLogHandler: LogHandler {
    let recorder: LogRecorder
    var logLevel: Logger.Level = .debug
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        recorder.append(LogRecorder.Entry(level: event.level, message: "\(event.message)"))
    }
}
