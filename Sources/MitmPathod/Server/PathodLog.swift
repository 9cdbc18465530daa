import Foundation

/// One entry of pathod's log: a crafted response, a frame received on a websocket, or an error.
/// Encoded as JSON for `--json-log`, `/api/log` and tests.
public struct PathodLogEntry: Codable, Sendable, Hashable {
    /// Increases by one per entry, from 0.
    public var id: Int
    /// `crafted`, `frame`, `error` or `timeout`.
    public var type: String
    /// The request answered (crafted and error entries with a request).
    public var request: Request?
    /// What was sent (crafted entries, and frames pathod sent back).
    public var response: Response?
    /// A frame received from the client (`frame` entries).
    public var frame: Frame?
    /// What went wrong (`error` entries).
    public var message: String?

    public struct Request: Codable, Sendable, Hashable {
        public var method: String
        public var path: String
        public var httpVersion: String
        public var headers: [[String]]
        public var remoteAddress: String?
        /// Whether the request came over TLS (after CONNECT, or with `-s`).
        public var tls: Bool
        /// The server name the client sent in its TLS ClientHello, if any.
        public var sni: String?
    }

    public struct Response: Codable, Sendable, Hashable {
        /// The spec as served: resolved, so `r` and `a` offsets are numbers and added headers show.
        public var spec: String
        public var statusCode: UInt64?
        public var reason: String?
        /// The start of the body, escaped, at most 1 KiB (as pathod logged it).
        public var body: String?
        /// Whether the spec disconnected (or the client went away) before it was all sent.
        public var disconnect: Bool
        /// Bytes written, injections included.
        public var bytesWritten: UInt64
        public var duration: Double
    }

    public struct Frame: Codable, Sendable, Hashable {
        public var opcode: UInt8
        public var fin: Bool
        public var masked: Bool
        public var length: UInt64
        /// The start of the payload, escaped, at most 1 KiB.
        public var payload: String
    }
}

/// The log kept in memory (the newest `capacity` entries) and handed to an optional sink.
final class PathodLogStore: @unchecked Sendable {
    // Guarded by `lock`: entries are added from connection tasks on any thread.
    private let lock = NSLock()
    private var entries: [PathodLogEntry] = []
    private var nextID = 0
    private let capacity: Int
    private let sink: (@Sendable (PathodLogEntry) -> Void)?

    init(capacity: Int = 500, sink: (@Sendable (PathodLogEntry) -> Void)?) {
        self.capacity = capacity
        self.sink = sink
    }

    @discardableResult
    func add(_ make: (Int) -> PathodLogEntry) -> PathodLogEntry {
        lock.lock()
        let entry = make(nextID)
        nextID += 1
        entries.append(entry)
        if entries.count > capacity { entries.removeFirst(entries.count - capacity) }
        lock.unlock()
        sink?(entry)
        return entry
    }

    var all: [PathodLogEntry] {
        lock.lock()
        defer { lock.unlock() }
        return entries
    }

    func clear() {
        lock.lock()
        entries.removeAll()
        lock.unlock()
    }
}
