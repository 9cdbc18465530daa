import Foundation
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL
import NIOTLS
import Synchronization

/// An origin server on `127.0.0.1`, port 0, in the test process: the far end of a proxy test. It
/// speaks plain HTTP/1.1, or TLS (with a ``TestPKI`` certificate for `localhost` and `127.0.0.1`)
/// with HTTP/1.1 only or HTTP/2 chosen by ALPN, and records every request it receives exactly as it
/// arrived, header names in wire order and case, so a test can assert what the proxy forwarded.
///
/// Routes:
///
/// | path | response |
/// | --- | --- |
/// | `/echo` (any method) | 200, JSON ``EchoResponse``: method, target, version, headers, body |
/// | `/bytes/N` | N bytes of ``patternBytes(count:)`` with `Content-Length` |
/// | `/chunked/N` | the same bytes, `Transfer-Encoding: chunked` (HTTP/1.1) in four chunks |
/// | `/status/N` | status N; no body for 1xx, 204 and 304, else `status N` |
/// | `/slow?ms=M` | `slow` after M milliseconds (300 by default) |
/// | `/close-mid-body` | declares `Content-Length: 1000`, sends 10 bytes, closes the connection |
/// | `/headers-case` | headers whose names are in odd case and a fixed order (``headersCaseFields``) |
/// | `/ws` | a WebSocket echo (HTTP/1.1 upgrade; see `OriginWebSocket`) |
/// | `/` | `ok` |
/// | anything else | 404 |
///
/// `HEAD` gets the head `GET` would get, without the body. A request with `Expect: 100-continue` gets
/// `100 Continue` first.
public final class LoopbackOrigin: Sendable {
    public enum Kind: Sendable, Hashable {
        /// Plain HTTP/1.1.
        case plain
        /// TLS, ALPN `http/1.1` only (and no ALPN at all is fine too).
        case tlsHTTP1Only
        /// TLS, ALPN `h2` preferred, `http/1.1` accepted.
        case tlsH2

        public var usesTLS: Bool { self != .plain }
        var alpn: [String] {
            switch self {
            case .plain: []
            case .tlsHTTP1Only: ["http/1.1"]
            case .tlsH2: ["h2", "http/1.1"]
            }
        }
    }

    public let kind: Kind
    public let pki: TestPKI
    /// Always `127.0.0.1`.
    public let host = "127.0.0.1"
    public let port: Int
    private let channel: any Channel
    private let state: OriginState

    private init(kind: Kind, pki: TestPKI, channel: any Channel, state: OriginState) {
        self.kind = kind
        self.pki = pki
        self.channel = channel
        self.state = state
        self.port = channel.localAddress?.port ?? 0
    }

    /// Starts an origin of `kind` on `127.0.0.1` and a free port.
    public static func start(_ kind: Kind = .plain, pki: TestPKI = .shared) async throws -> LoopbackOrigin {
        let state = OriginState()
        let sslContext: NIOSSLContext? = kind.usesTLS ? try NIOSSLContext(configuration: pki.serverTLSConfiguration(alpn: kind.alpn)) : nil
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let connectionID = state.connectionOpened()
                    let sync = channel.pipeline.syncOperations
                    if let sslContext {
                        try sync.addHandler(NIOSSLServerHandler(context: sslContext))
                        try sync.addHandler(OriginALPNHandler(state: state, connectionID: connectionID))
                    } else {
                        try OriginPipeline.addHTTP1(to: channel, state: state, connectionID: connectionID, isTLS: false)
                    }
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        return LoopbackOrigin(kind: kind, pki: pki, channel: channel, state: state)
    }

    /// `http` or `https`.
    public var scheme: String { kind.usesTLS ? "https" : "http" }

    /// `host:port` with the given host name (`127.0.0.1` or `localhost`; both reach this origin).
    public func authority(host: String = "127.0.0.1") -> String { "\(host):\(port)" }

    /// A URL for `path` on this origin, e.g. `url("/echo")`; pass `host: "localhost"` for a name that
    /// matches the certificate's DNS SAN.
    public func url(_ path: String, host: String = "127.0.0.1") -> String {
        "\(scheme)://\(host):\(port)\(path)"
    }

    /// Every complete request received so far, in arrival order.
    public var requests: [RecordedRequest] { state.requests.withLock { $0 } }

    /// The payloads of the WebSocket data frames `/ws` received, in order.
    public var webSocketMessages: [[UInt8]] { state.webSocketMessages.withLock { $0 } }

    /// TCP connections accepted so far.
    public var connectionCount: Int { state.connectionCount }

    /// Forgets the recorded requests.
    public func clearRecords() {
        state.requests.withLock { $0.removeAll() }
    }

    /// Waits until at least `count` requests have been recorded (or `timeout` seconds pass) and
    /// returns what was recorded.
    @discardableResult
    public func waitForRequests(_ count: Int, timeout: Double = 5) async -> [RecordedRequest] {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let requests = self.requests
            if requests.count >= count { return requests }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return requests
    }

    /// Stops listening and closes every connection.
    public func shutdown() async {
        try? await channel.close()
        state.closeAll()
    }

    // MARK: - Test data

    /// The body of `/bytes/N` and `/chunked/N`: `count` deterministic, non-periodic-looking bytes
    /// (a 64 KiB pseudo-random block, rotated by a different amount for each 64 KiB), so a dropped,
    /// duplicated or reordered piece changes the hash.
    public static func patternBytes(count: Int) -> [UInt8] {
        var result = [UInt8]()
        result.reserveCapacity(count)
        var offset = 0
        while offset < count {
            let chunk = patternChunk(index: offset / patternBlock.count)
            let take = min(chunk.count, count - offset)
            result.append(contentsOf: chunk[..<take])
            offset += take
        }
        return result
    }

    static func patternChunk(index: Int) -> ArraySlice<UInt8> {
        let block = patternBlock
        let rotation = (index &* 7919) % block.count
        return ArraySlice(block[rotation...] + block[..<rotation])
    }

    static let patternBlock: [UInt8] = {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        return (0..<65536).map { _ in
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return UInt8(truncatingIfNeeded: state >> 24)
        }
    }()

    /// The response header fields of `/headers-case`, in the order they are sent (HTTP/1.1; HTTP/2
    /// lower-cases names on the wire).
    public static let headersCaseFields: [(name: String, value: String)] = [
        ("X-Zebra", "first"),
        ("x-MiXeD-CaSe", "yes"),
        ("X-UPPER-CASE", "UP"),
        ("x-lower", "down"),
        ("Content-Type", "text/plain"),
        ("X-Zebra", "second"),
        ("content-LENGTH", "2"),
    ]
}

/// Runs `body` with a started origin, shutting it down afterwards whatever happens.
public func withLoopbackOrigin<T>(
    _ kind: LoopbackOrigin.Kind = .plain,
    pki: TestPKI = .shared,
    _ body: (LoopbackOrigin) async throws -> T
) async throws -> T {
    let origin = try await LoopbackOrigin.start(kind, pki: pki)
    do {
        let result = try await body(origin)
        await origin.shutdown()
        return result
    } catch {
        await origin.shutdown()
        throw error
    }
}
