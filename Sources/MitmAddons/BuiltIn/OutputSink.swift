import Synchronization

#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Where console output (mitmdump's flow dump and its terminal log) goes.
///
/// A sink takes whole groups of lines: everything one flow prints is handed over in one call and
/// written in one piece, so the output of flows finishing at the same time on different connections
/// never interleaves (mitmproxy runs on one thread and gets this for free).
public protocol OutputSink: Sendable {
    /// Whether the output understands ANSI escape codes (mitmproxy: `vt_codes.ensure_supported`,
    /// which is `isatty` outside Windows). When false nothing is coloured.
    var supportsColor: Bool { get }

    /// The terminal width in columns, used to shorten long URLs at flow detail 1. mitmproxy asks
    /// `shutil.get_terminal_size()`: `$COLUMNS`, else the terminal's size, else 80.
    var terminalWidth: Int { get }

    /// Writes `lines`, each followed by a newline, as one unit.
    func write(lines: [String])
}

/// Standard output. Each `write(lines:)` becomes one buffer written with `write(2)` while holding a
/// lock, so concurrent callers never mix their lines.
public final class StandardOutputSink: OutputSink {
    public let supportsColor: Bool
    private let fileDescriptor: Int32
    /// Serialises writers; holds nothing but the right to write.
    private let lock = Mutex<Void>(())

    /// - Parameters:
    ///   - fileDescriptor: The descriptor to write to; standard output by default.
    ///   - color: Force colour on or off; `nil` colours only when the descriptor is a terminal.
    public init(fileDescriptor: Int32 = 1, color: Bool? = nil) {
        self.fileDescriptor = fileDescriptor
        self.supportsColor = color ?? (isatty(fileDescriptor) == 1)
    }

    public var terminalWidth: Int {
        if let columns = getenv("COLUMNS").flatMap({ Int(String(cString: $0)) }), columns > 0 {
            return columns
        }
        var size = winsize()
        // mitmproxy asks about stdout whatever file it prints to; so do we.
        if ioctl(1, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 {
            return Int(size.ws_col)
        }
        return 80
    }

    public func write(lines: [String]) {
        guard !lines.isEmpty else { return }
        var text = ""
        for line in lines {
            text += line
            text += "\n"
        }
        var bytes = Array(text.utf8)
        lock.withLock { _ in
            bytes.withUnsafeMutableBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let written = systemWrite(fileDescriptor, buffer.baseAddress! + offset, buffer.count - offset)
                    if written > 0 {
                        offset += written
                    } else if written < 0 && errno == EINTR {
                        continue
                    } else {
                        // The terminal went away (EPIPE, EIO…): drop the output rather than spin.
                        return
                    }
                }
            }
        }
    }
}

/// `write(2)`, named apart from `StandardOutputSink.write(lines:)`.
private func systemWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    #if canImport(Darwin)
    return Darwin.write(fd, buffer, count)
    #elseif canImport(Glibc)
    return Glibc.write(fd, buffer, count)
    #else
    return Musl.write(fd, buffer, count)
    #endif
}

/// Collects output in memory, for tests.
public final class MemoryOutputSink: OutputSink {
    public let supportsColor: Bool
    public let terminalWidth: Int
    private let storage = Mutex<[String]>([])

    public init(color: Bool = false, terminalWidth: Int = 80) {
        self.supportsColor = color
        self.terminalWidth = terminalWidth
    }

    public func write(lines: [String]) {
        storage.withLock { $0.append(contentsOf: lines) }
    }

    /// Every line written so far, without newlines.
    public var lines: [String] {
        storage.withLock { $0 }
    }

    /// Everything written so far, exactly as it would have reached a terminal.
    public var text: String {
        lines.map { $0 + "\n" }.joined()
    }

    public func clear() {
        storage.withLock { $0.removeAll() }
    }
}
