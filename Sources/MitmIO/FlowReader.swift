import Foundation
import MitmCore

/// One flow read from a flow file.
public struct FlowRecord: Sendable {
    /// The flow type mitmproxy recorded: `http`, `tcp`, `udp`, `dns`.
    public var type: String
    /// The flow; `nil` for the types our model does not have (`udp`, `dns`; see `skippedReason`).
    public var flow: Flow?
    /// The complete state, migrated to version 21. Keeps what `flow` cannot hold, such as a whole
    /// UDP or DNS flow. Pass it to `FlowWriter.write(_:)` to write the record back unchanged.
    public var state: TNetDict
    /// The flow if it is an HTTP flow (WebSocket connections included).
    public var httpFlow: HTTPFlow? { flow?.httpFlow }

    /// Why `flow` is `nil`.
    public var skippedReason: String?
    /// The byte offset at which the flow starts in the file.
    public var offset: Int
}

/// A flow file that cannot be read (further). Flows before the damage have been returned.
public struct FlowReadError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The byte offset of the damage, or of the flow that could not be used.
    public var offset: Int
    public var message: String

    public init(offset: Int, message: String) {
        self.offset = offset
        self.message = message
    }

    public var description: String { "flow file error at byte \(offset): \(message)" }
}

/// Reads mitmproxy flow files (a sequence of tnetstring flow states, any version mitmproxy 11.0.2
/// reads) flow by flow, in memory bounded by the largest flow, from a file or from bytes.
///
///     var reader = FlowReader(fileHandle: handle)
///     while let record = try reader.next() { … }
///
/// or `for try await record in reader.records { … }`. After a truncated or corrupt flow, the flows
/// before it have been returned and `next()` throws a `FlowReadError` naming the byte offset.
public struct FlowReader: Sendable {
    private enum Source: Sendable {
        case file(FileHandle)
        case bytes
    }

    private let source: Source
    private var parser: TNetParser
    private var atEnd: Bool
    private var failed = false
    /// Handshake flows of pre-12 WebSocket flows, by flow id (see `FlowMigration.mergeWebSocket`).
    private var webSocketHandshakes: [String: TNetDict] = [:]
    public let chunkSize: Int

    /// Reads from `fileHandle` in chunks of `chunkSize` bytes; one flow may be at most `maximumFlowSize`.
    public init(fileHandle: FileHandle, chunkSize: Int = 64 * 1024, maximumFlowSize: Int = 512 * 1024 * 1024) {
        self.source = .file(fileHandle)
        self.parser = TNetParser(maximumLength: maximumFlowSize)
        self.atEnd = false
        self.chunkSize = max(1, chunkSize)
    }

    /// Reads from bytes already in memory.
    public init(bytes: some Sequence<UInt8>, maximumFlowSize: Int = 512 * 1024 * 1024) {
        self.source = .bytes
        self.parser = TNetParser(maximumLength: maximumFlowSize)
        self.parser.append(bytes)
        self.atEnd = true
        self.chunkSize = 0
    }

    /// How many bytes of the file the reader holds in memory right now.
    public var bufferedByteCount: Int { parser.bufferedByteCount }

    /// The next flow, or `nil` at the end of the file.
    public mutating func next() throws(FlowReadError) -> FlowRecord? {
        guard !failed else { return nil }
        do throws(FlowReadError) {
            while true {
                let offset = parser.offset
                let value: TNetValue?
                do { value = try parser.next() } catch {
                    if offset == 0, looksLikeJSON(parser.pendingBytes) {
                        throw FlowReadError(offset: 0, message: "this is JSON (a HAR file?), not a mitmproxy flow file: read HAR with HARReader")
                    }
                    throw FlowReadError(offset: error.offset, message: "corrupt data: expected \(error.expected)")
                }
                if let value {
                    if let record = try record(from: value, offset: offset) { return record }
                    continue
                }
                if atEnd {
                    guard parser.hasPendingBytes else { return nil }
                    throw FlowReadError(offset: parser.offset, message: "the file ends inside a flow (truncated)")
                }
                try readChunk()
            }
        } catch {
            failed = true
            throw error
        }
    }

    /// `{`, after an optional UTF-8 byte order mark (which Fiddler writes).
    private func looksLikeJSON(_ bytes: ArraySlice<UInt8>) -> Bool {
        let body = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? bytes.dropFirst(3) : bytes
        return body.first == UInt8(ascii: "{")
    }

    private mutating func readChunk() throws(FlowReadError) {
        guard case .file(let handle) = source else { atEnd = true; return }
        do {
            if let data = try handle.read(upToCount: chunkSize), !data.isEmpty {
                parser.append(data)
            } else {
                atEnd = true
            }
        } catch {
            throw FlowReadError(offset: parser.offset, message: "read failed: \(error)")
        }
    }

    /// Turns one top-level value into a record; `nil` when it was consumed (a pre-12 handshake kept aside).
    private mutating func record(from value: TNetValue, offset: Int) throws(FlowReadError) -> FlowRecord? {
        guard case .dict(var state) = value else {
            throw FlowReadError(offset: offset, message: "a flow must be a dictionary")
        }
        do throws(FlowStateError) {
            // Before format 12, WebSocket messages were separate flows (see mergeWebSocket).
            let version = try FlowMigration.version(of: state)
            let before12: Bool = if case .numbered(let n) = version { n < 12 } else { true }
            if before12 && version.isSupported {
                let type = state["type"]?.text
                if type == "websocket" {
                    let handshakeID = state["metadata"]?.dictValue?["websocket_handshake"]?.text
                    let handshake = handshakeID.flatMap { webSocketHandshakes.removeValue(forKey: $0) }
                    state = FlowMigration.mergeWebSocket(state, handshake: handshake)
                } else if state["metadata"]?.dictValue?["websocket"] != nil, let id = state["id"]?.text {
                    webSocketHandshakes[id] = state
                }
            }
            let migrated = try FlowMigration.migrate(state)
            let type = migrated["type"]?.text ?? ""
            guard type == "http" || type == "tcp" else {
                return FlowRecord(type: type, flow: nil, state: migrated, skippedReason: "\(type.isEmpty ? "untyped" : type) flows are not supported", offset: offset)
            }
            return FlowRecord(type: type, flow: try FlowState.decodeFlow(migrated), state: migrated, skippedReason: nil, offset: offset)
        } catch {
            throw FlowReadError(offset: offset, message: error.message)
        }
    }

    /// All records as an async sequence (reading happens on the caller's task).
    public var records: FlowRecords { FlowRecords(reader: self) }

    /// Reads every flow of a file into memory; throws at the first error.
    public static func readAll(contentsOf url: URL) throws -> [FlowRecord] {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        var reader = FlowReader(fileHandle: handle)
        var records: [FlowRecord] = []
        while let record = try reader.next() { records.append(record) }
        return records
    }
}

/// `FlowReader` as an `AsyncSequence` of `FlowRecord`.
public struct FlowRecords: AsyncSequence, Sendable {
    public typealias Element = FlowRecord
    let reader: FlowReader

    public struct AsyncIterator: AsyncIteratorProtocol {
        var reader: FlowReader
        public mutating func next() async throws -> FlowRecord? { try reader.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(reader: reader) }
}
