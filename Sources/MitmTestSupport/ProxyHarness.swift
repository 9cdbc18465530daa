import Foundation
import Logging
import MitmAddons
import MitmCertificates
import MitmCore
import MitmServer
import NIOCore

/// A `ProxyServer` for a test: its own temporary confdir (with a copy of a test CA made once and
/// reused, since making an RSA CA is slow), `127.0.0.1` and a free port, logs captured in
/// ``logs``. Stop it with ``shutdown()``, which also deletes the confdir; or use ``withProxy``.
public final class ProxyHarness: Sendable {
    public let server: ProxyServer
    public let options: ProxyOptions
    /// The bound listeners' ports, one per mode, in the order of `options.modes`.
    public let ports: [Int]
    public let logs: LogRecorder

    /// The first listener's port.
    public var port: Int { ports[0] }
    /// `http://127.0.0.1:PORT`, for `curl -x` and `requests`' `proxies`.
    public var proxyURL: String { "http://127.0.0.1:\(port)" }
    public var confdir: String { options.confdir }
    /// The CA certificate clients must trust: `<confdir>/mitmproxy-ca-cert.pem`.
    public var caCertificatePath: String { confdir + "/" + CertificateAuthority.ConfdirFiles().certificatePEM }

    private init(server: ProxyServer, options: ProxyOptions, ports: [Int], logs: LogRecorder) {
        self.server = server
        self.options = options
        self.ports = ports
        self.logs = logs
    }

    /// Starts a proxy. `configure` edits the options after the harness has set `listenHost`,
    /// `listenPort` (0) and `confdir` (a new temporary directory); it may change them again.
    public static func start(
        addons: [any Addon] = [],
        configure: (inout ProxyOptions) -> Void = { _ in }
    ) async throws -> ProxyHarness {
        var options = ProxyOptions()
        options.listenHost = "127.0.0.1"
        options.listenPort = 0
        options.confdir = try makeConfdir()
        configure(&options)
        let logs = LogRecorder()
        let server = try ProxyServer(options: options, addons: addons, logger: logs.logger())
        do {
            let addresses = try await server.start()
            return ProxyHarness(server: server, options: options, ports: addresses.compactMap(\.port), logs: logs)
        } catch {
            await server.shutdown(grace: 0)
            try? FileManager.default.removeItem(atPath: options.confdir)
            throw error
        }
    }

    /// Stops the proxy (letting open flows finish for up to `grace` seconds) and deletes the confdir.
    public func shutdown(grace: Double = 1) async {
        await server.shutdown(grace: grace)
        try? FileManager.default.removeItem(atPath: options.confdir)
    }

    // MARK: - The CA

    /// A confdir holding the test CA, made once and kept in the temporary directory for later runs
    /// (an RSA-2048 CA takes a while to make in a debug build). Made under a unique name and renamed
    /// into place, so test processes running side by side never see a half-written one.
    private static let templateConfdir: Result<String, any Error> = Result {
        let fileManager = FileManager.default
        let temporary = fileManager.temporaryDirectory
        let shared = temporary.appendingPathComponent("mitm-test-ca-v1-\(getuid())").path
        let caFile = CertificateAuthority.ConfdirFiles().caPEM
        if fileManager.fileExists(atPath: shared + "/" + caFile) {
            return shared
        }
        let fresh = temporary.appendingPathComponent("mitm-test-ca-\(UUID().uuidString.prefix(12))").path
        _ = try CertificateAuthority.loadOrCreate(confdir: fresh)
        if (try? fileManager.moveItem(atPath: fresh, toPath: shared)) != nil {
            return shared
        }
        // Another process won the race; use its CA if it is complete, else our own.
        if fileManager.fileExists(atPath: shared + "/" + caFile) {
            try? fileManager.removeItem(atPath: fresh)
            return shared
        }
        return fresh
    }

    /// A fresh temporary confdir with a copy of the test CA.
    public static func makeConfdir() throws -> String {
        let template = try templateConfdir.get()
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("mitm-test-\(UUID().uuidString.prefix(12))")
            .path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for file in try FileManager.default.contentsOfDirectory(atPath: template) {
            try FileManager.default.copyItem(atPath: template + "/" + file, toPath: directory + "/" + file)
        }
        return directory
    }
}

/// Runs `body` with a started proxy, shutting it down afterwards whatever happens.
public func withProxy<T>(
    addons: [any Addon] = [],
    configure: (inout ProxyOptions) -> Void = { _ in },
    _ body: (ProxyHarness) async throws -> T
) async throws -> T {
    let proxy = try await ProxyHarness.start(addons: addons, configure: configure)
    do {
        let result = try await body(proxy)
        await proxy.shutdown()
        return result
    } catch {
        await proxy.shutdown()
        throw error
    }
}
