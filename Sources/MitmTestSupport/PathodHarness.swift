import Foundation
import MitmPathod

/// A pathod for a test, like pathod 0.18's `pathod.test.Daemon`: started in-process on
/// `127.0.0.1` and a free port, giving a URL per spec and the log of what it served.
///
///     try await withPathod { pathod in
///         let url = pathod.url(for: "200:b@100:d50")   // 100 bytes, cut off after 50
///         …
///         #expect(pathod.lastLog?.response?.disconnect == true)
///     }
public final class PathodHarness: Sendable {
    public let server: PathodServer
    public let port: Int

    private init(server: PathodServer, port: Int) {
        self.server = server
        self.port = port
    }

    /// Starts a pathod. `configure` edits the configuration after the harness has set the host
    /// (`127.0.0.1`) and port (0, a free one).
    public static func start(configure: (inout PathodConfiguration) -> Void = { _ in }) async throws -> PathodHarness {
        var configuration = PathodConfiguration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configure(&configuration)
        let server = try PathodServer(configuration: configuration)
        let port = try await server.start()
        return PathodHarness(server: server, port: port)
    }

    public func shutdown() async {
        await server.shutdown()
    }

    /// `127.0.0.1:PORT`.
    public var authority: String { "127.0.0.1:\(port)" }

    /// `http://127.0.0.1:PORT`.
    public var baseURL: String { "http://\(authority)" }

    /// The path that serves `spec`: the craft anchor and the spec, percent-encoded so any client
    /// sends it unchanged (pathod decodes it again).
    public func path(for spec: String) -> String {
        server.configuration.craftAnchor + Self.encode(spec)
    }

    /// `http://127.0.0.1:PORT/p/SPEC` (or `https://` with `scheme`).
    public func url(for spec: String, scheme: String = "http") -> String {
        "\(scheme)://\(authority)" + path(for: spec)
    }

    /// What has been served, oldest first.
    public var log: [PathodLogEntry] { server.log }

    /// The newest entry, if any.
    public var lastLog: PathodLogEntry? { server.log.last }

    /// Entries for requests (crafted responses and 800 errors), oldest first.
    public var requests: [PathodLogEntry] { server.log.filter { $0.request != nil } }

    public func clearLog() { server.clearLog() }

    /// Waits (up to `timeout` seconds) until the log has an entry satisfying `predicate`: the log
    /// entry is written once the response has been sent, which may be after the client saw it end.
    public func waitForLog(timeout: Double = 5, where predicate: (PathodLogEntry) -> Bool) async -> PathodLogEntry? {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let found = server.log.first(where: predicate) { return found }
            if Date() > deadline { return nil }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    static func encode(_ spec: String) -> String {
        let allowed = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:@,=/".utf8)
        var out = ""
        for byte in spec.utf8 {
            if allowed.contains(byte) {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }
}

/// Runs `body` with a started pathod, shutting it down afterwards whatever happens.
public func withPathod<T>(
    configure: (inout PathodConfiguration) -> Void = { _ in },
    _ body: (PathodHarness) async throws -> T
) async throws -> T {
    let pathod = try await PathodHarness.start(configure: configure)
    do {
        let result = try await body(pathod)
        await pathod.shutdown()
        return result
    } catch {
        await pathod.shutdown()
        throw error
    }
}
