import Foundation
import MitmCore

/// Writes flows as mitmproxy 11 flow files: one version-21 tnetstring state after another.
/// Opening the file for appending (mitmproxy's `save_stream_file` with `+`) is the caller's job.
///
/// Each flow is encoded whole and handed to the sink in one call, so concurrent writers of one
/// file handle never interleave inside a flow. `write(_:)` and `close()` match MitmAddons'
/// `FlowSink` requirements.
public struct FlowWriter: Sendable {
    private let sink: @Sendable ([UInt8]) throws -> Void
    private let closer: @Sendable () throws -> Void

    /// Writes to `fileHandle` at its current position; `close()` closes it.
    public init(fileHandle: FileHandle) {
        self.sink = { bytes in try fileHandle.write(contentsOf: bytes) }
        self.closer = { try fileHandle.close() }
    }

    /// Hands every encoded flow to `sink`; `close()` calls `onClose`.
    public init(sink: @escaping @Sendable ([UInt8]) throws -> Void, onClose: @escaping @Sendable () throws -> Void = {}) {
        self.sink = sink
        self.closer = onClose
    }

    /// Writes `flow`.
    public func write(_ flow: HTTPFlow) throws {
        try sink(Self.encode(flow))
    }

    /// Writes any flow.
    public func write(_ flow: Flow) throws {
        try sink(TNetValue.dict(FlowState.encode(flow)).serialized())
    }

    /// Writes a record read by `FlowReader`: its (possibly edited) flow with the state our model
    /// does not hold (see `FlowState.encode(_:carryingOver:)`), or the raw state of a type we do not model.
    public func write(_ record: FlowRecord) throws {
        if let flow = record.flow {
            try sink(TNetValue.dict(FlowState.encode(flow, carryingOver: record.state)).serialized())
        } else {
            try sink(TNetValue.dict(record.state).serialized())
        }
    }

    public func close() throws {
        try closer()
    }

    /// The bytes `write(_:)` produces for `flow`.
    public static func encode(_ flow: HTTPFlow) -> [UInt8] {
        TNetValue.dict(FlowState.encode(flow)).serialized()
    }
}
