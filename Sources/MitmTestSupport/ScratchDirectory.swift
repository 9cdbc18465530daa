import Foundation

/// A scratch directory for one test's files (bodies, certificates, logs), deleted by `remove()`.
public struct ScratchDirectory: Sendable {
    public let path: String

    public init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("mitm-test-\(UUID().uuidString.prefix(12))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    public func file(_ name: String) -> String { path + "/" + name }

    public func write(_ name: String, _ data: Data) throws -> String {
        let target = file(name)
        try data.write(to: URL(fileURLWithPath: target))
        return target
    }

    public func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}
