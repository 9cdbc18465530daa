import Foundation
import Logging

/// Prints log messages the way mitmdump's terminal log does: `[HH:MM:SS.mmm] message`, or
/// `[HH:MM:SS.mmm][client] message` when the message concerns a client connection (the `client`
/// metadata key). Errors go to standard error, everything else to standard output.
struct TermLogHandler: LogHandler {
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var prefix = "[\(Self.timestamp())]"
        if let client = event.metadata?["client"] ?? metadata["client"] {
            prefix += "[\(client)]"
        }
        let line = "\(prefix) \(event.message)\n"
        if event.level >= .warning {
            FileHandle.standardError.write(Data(line.utf8))
        } else {
            FileHandle.standardOutput.write(Data(line.utf8))
        }
    }

    private static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        localtime_r(&seconds, &parts)
        let millis = Int(now.tv_nsec / 1_000_000)
        return String(format: "%02d:%02d:%02d.%03d", parts.tm_hour, parts.tm_min, parts.tm_sec, millis)
    }
}
