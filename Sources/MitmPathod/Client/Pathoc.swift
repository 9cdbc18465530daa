import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import X509

/// How pathoc connects and what it prints.
public struct PathocConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// `-s`: TLS to the server (after the CONNECT, with `connectTo`). Certificates are not verified:
    /// pathoc is for talking to broken servers.
    public var ssl = false
    /// `--sni`: the TLS server name; defaults to the host (or the CONNECT host).
    public var sni: String?
    /// `-c host:port`: ask the server (a proxy) to CONNECT there first.
    public var connectTo: (host: String, port: Int)?
    /// `-t`: give up on a response (or a connection) after this many seconds.
    public var timeout: Double?
    /// `-I`: status codes whose exchanges are not printed.
    public var ignoreCodes: Set<UInt64> = []
    /// `-e`: print each spec resolved and frozen (random choices fixed) instead of as written.
    public var explain = false
    /// `-q`: print each request's bytes.
    public var showRequest = false
    /// `-r`: print each response's bytes.
    public var showResponse = false
    /// `-x`: show the bytes of `-q` and `-r` as a hex dump.
    public var hexdump = false
    /// `-S`: after a connection's first exchange, print its TLS version and the server's certificate.
    public var showTLS = false
    /// `-T`: a timeout ends the connection quietly, and is not a failure.
    public var ignoreTimeout = false
    /// `-o`: stop after the first response that is printed (not ignored by `-I`).
    public var oneshot = false
    /// `-w`: seconds to wait after each request.
    public var wait: Double = 0
    /// `-C`: a PEM file with the client certificate (chain) and its private key, for TLS.
    public var clientCertificate: String?

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }
}

/// What a request got back.
public struct PathocResponse: Sendable {
    public var statusCode: UInt64
    public var reason: String
    public var httpVersion: String
    public var headers: [(name: String, value: String)]
    /// The body's length (decoded, for a chunked body).
    public var bodyLength: UInt64
    /// The body's first MiB.
    public var body: [UInt8]
}

/// Why a pathoc exchange failed.
public enum PathocError: Error, CustomStringConvertible, Sendable {
    case timeout
    case connectFailed(String)
    case invalidResponse(String)
    case disconnected
    case render(String)

    public var description: String {
        switch self {
        case .timeout: return "Timeout"
        case .connectFailed(let s): return s
        case .invalidResponse(let s): return "Invalid server response: \(s)"
        case .disconnected: return "Server disconnected"
        case .render(let s): return "Error rendering spec: \(s)"
        }
    }
}

/// A perverse HTTP client: sends the requests and websocket frames specs describe, pauses,
/// injections and disconnects included, over one connection, and reports what came back.
public struct Pathoc: Sendable {
    public let configuration: PathocConfiguration
    let output: @Sendable (String) -> Void

    /// - Parameter output: receives each line pathoc prints.
    public init(configuration: PathocConfiguration, output: @escaping @Sendable (String) -> Void = { print($0) }) {
        self.configuration = configuration
        self.output = output
    }

    /// Runs `messages` on one connection per round, `rounds` times (`-n`; a negative count repeats
    /// until cancelled). Returns false if a connection could not be made or an exchange failed.
    public func run(_ messages: [ClientMessage], rounds: Int = 1) async -> Bool {
        await runRounds(rounds) {
            try await withConnection { connection -> Bool in
                for message in messages {
                    let once = message.withoutTimes
                    for _ in 0..<message.repeatCount {
                        if Task.isCancelled { return true }
                        let carryOn = try await connection.perform(once)
                        if connection.printedResponse && configuration.oneshot { return true }
                        if !carryOn { return false }
                        try await waitAfterRequest()
                    }
                }
                try await connection.drainFrames()
                return false
            }
        }
    }

    /// Runs `round` (one connection's work) `rounds` times, or until it returns true (`-o` is
    /// satisfied) or the task is cancelled. A failed round is printed and makes the result false;
    /// with `-T`, a timeout is neither.
    func runRounds(_ rounds: Int, _ round: () async throws -> Bool) async -> Bool {
        var success = true
        var count = 0
        while rounds < 0 || count < max(1, rounds), !Task.isCancelled {
            count += 1
            do {
                if try await round() { return success }
            } catch PathocError.timeout where configuration.ignoreTimeout {
                continue
            } catch let error as PathocError {
                output(error.description)
                success = false
            } catch {
                output("\(error)")
                success = false
            }
        }
        return success
    }

    /// `-w`: the pause after each request.
    func waitAfterRequest() async throws {
        if configuration.wait > 0 { try await Task.sleep(for: .seconds(configuration.wait)) }
    }

    /// Opens a connection (CONNECT and TLS as configured), runs `body` with it, closes it.
    public func withConnection<T: Sendable>(_ body: (PathocConnection) async throws -> T) async throws -> T {
        let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.milliseconds(Int64((configuration.timeout ?? 10) * 1000)))
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            channel = try await bootstrap.connect(host: configuration.host, port: configuration.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        } catch {
            throw PathocError.connectFailed("Could not connect to \(configuration.host):\(configuration.port): \(error)")
        }
        return try await channel.executeThenClose { inbound, outbound in
            let connection = PathocConnection(
                configuration: configuration, channel: channel.channel, reader: WireReader(inbound), outbound: outbound,
                output: output
            )
            if let target = configuration.connectTo { try await connection.connectTunnel(to: target) }
            if configuration.ssl { try await connection.startTLS() }
            return try await body(connection)
        }
    }
}

/// One open pathoc connection.
public final class PathocConnection: @unchecked Sendable {
    // Used from one task at a time (the one running `withConnection`'s body); frames read in the
    // background only touch `reader` while no exchange is running.
    let configuration: PathocConfiguration
    let channel: any Channel
    let reader: WireReader
    let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    let output: @Sendable (String) -> Void
    private var timedOut = false
    private var isWebSocket = false
    private var shownTLS = false
    private let lock = NSLock()
    /// Whether a response has been printed (not hidden by `-I`), for `-o`.
    private(set) var printedResponse = false

    init(
        configuration: PathocConfiguration, channel: any Channel, reader: WireReader,
        outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>, output: @escaping @Sendable (String) -> Void
    ) {
        self.configuration = configuration
        self.channel = channel
        self.reader = reader
        self.outbound = outbound
        self.output = output
    }

    var settings: RenderSettings {
        RenderSettings(isClient: true, requestHost: configuration.connectTo?.host ?? configuration.host)
    }

    /// Runs `operation`, closing the connection if it takes longer than the timeout.
    func withTimeout<T>(_ operation: () async throws -> T) async throws -> T {
        guard let timeout = configuration.timeout else { return try await operation() }
        let channel = self.channel
        let timer = Task { [weak self] in
            guard (try? await Task.sleep(for: .seconds(timeout))) != nil else { return }
            self?.lock.withLock { self?.timedOut = true }
            channel.close(promise: nil)
        }
        defer { timer.cancel() }
        let result: T
        do {
            result = try await operation()
        } catch {
            if lock.withLock({ timedOut }) { throw PathocError.timeout }
            throw error
        }
        // A body read until the connection closed may have been ended by our own timer.
        if lock.withLock({ timedOut }) { throw PathocError.timeout }
        return result
    }

    func connectTunnel(to target: (host: String, port: Int)) async throws {
        let authority = "\(target.host):\(target.port)"
        try await outbound.write(ByteBuffer(string: "CONNECT \(authority) HTTP/1.1\r\nHost: \(authority)\r\n\r\n"))
        let head = try await withTimeout { try await reader.readHead() }
        guard let head, let parsed = try? HTTPHead(parsing: head) else {
            throw PathocError.connectFailed("Proxy closed the connection instead of answering CONNECT")
        }
        guard parsed.second == "200" else {
            throw PathocError.connectFailed("Proxy CONNECT failed: \(parsed.second) \(parsed.third)")
        }
    }

    func startTLS() async throws {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        tls.applicationProtocols = ["http/1.1"]
        try configuration.applyClientCertificate(to: &tls)
        let context = try NIOSSLContext(configuration: tls)
        let name = configuration.sni ?? configuration.connectTo?.host ?? configuration.host
        // SNI must be a host name, not an address.
        let serverName = name.contains(where: { $0.isLetter }) && !name.contains(":") ? name : nil
        let channel = self.channel
        try await channel.eventLoop.submit {
            let handler = try NIOSSLClientHandler(context: context, serverHostname: serverName)
            try channel.pipeline.syncOperations.addHandler(handler, position: .first)
        }.get()
    }

    /// Sends one message and, for a request, reads and reports the response. Returns false when the
    /// connection is over (a disconnect in the spec, or the server went away).
    public func perform(_ message: ClientMessage) async throws -> Bool {
        switch message {
        case .request(let request):
            do {
                _ = try await self.request(request)
                return true
            } catch PathocError.disconnected {
                return false
            }
        case .frame(let frame):
            return try await send(frame: frame)
        }
    }

    /// Sends a request and reads the response (nil when the spec disconnected first).
    @discardableResult
    public func request(_ spec: RequestSpec) async throws -> PathocResponse? {
        let resolved = try configuration.resolve(spec, settings: settings)
        var lines = [">> " + (configuration.explain ? resolved.spec : spec.spec)]
        let rendered = try Renderer.layout(.request(resolved), settings: settings)
        let (disconnected, sent) = try await stream(rendered)
        if configuration.showRequest { lines.append(display(sent)) }
        if disconnected {
            lines.forEach(output)
            throw PathocError.disconnected
        }
        let response: PathocResponse
        do {
            response = try await withTimeout { try await readResponse(method: resolved.method ?? .standard("GET")) }
        } catch PathocError.invalidResponse("server closed the connection") {
            lines.forEach(output)
            output("Server disconnected")
            throw PathocError.disconnected
        } catch {
            lines.forEach(output)
            if let error = error as? PathocError { throw error }
            throw PathocError.invalidResponse("\(error)")
        }
        lines.append("<< \(response.statusCode) \(response.reason): \(response.bodyLength) bytes")
        if configuration.showResponse {
            lines.append(response.headers.map { "\($0.name): \($0.value)" }.joined(separator: "\n"))
            lines.append(display(response.body))
        }
        if configuration.showTLS && configuration.ssl && !shownTLS {
            shownTLS = true
            lines += await tlsSummary()
        }
        if !configuration.ignoreCodes.contains(response.statusCode) {
            lines.forEach(output)
            printedResponse = true
        }
        if resolved.isWebSocket && response.statusCode == 101 { isWebSocket = true }
        return response
    }

    /// The bytes of `-q`/`-r`: escaped text, or a hex dump with `-x`.
    func display(_ bytes: [UInt8]) -> String {
        configuration.hexdump ? hexDump(bytes, limit: 64 * 1024) : escapedForDisplay(bytes, limit: 64 * 1024)
    }

    /// `-S`: the negotiated TLS version and the server's certificate.
    func tlsSummary() async -> [String] {
        let channel = self.channel
        let version = try? await channel.nioSSL_tlsVersion().get()
        let certificate = try? await channel.nioSSL_peerCertificate().get()
        var lines = ["TLS version: \(version.map { "\($0)" } ?? "unknown")"]
        if let der = try? certificate?.toDERBytes(), let parsed = try? Certificate(derEncoded: der) {
            lines.append("Server certificate:")
            lines.append("  subject: \(parsed.subject)")
            lines.append("  issuer: \(parsed.issuer)")
            lines.append("  valid: \(parsed.notValidBefore) to \(parsed.notValidAfter)")
            if let names = try? parsed.extensions.subjectAlternativeNames {
                lines.append("  subject alternative names: \(names.map(describe).joined(separator: ", "))")
            }
        } else {
            lines.append("Server certificate: none")
        }
        return lines
    }

    /// Sends a websocket frame; false if its spec disconnected.
    public func send(frame spec: FrameSpec) async throws -> Bool {
        let resolved = try configuration.resolve(spec, settings: settings)
        output(">> " + (configuration.explain ? resolved.spec : spec.spec))
        let (disconnected, _) = try await stream(try Renderer.layout(.frame(resolved), settings: settings))
        return !disconnected
    }

    /// After the last message of a websocket connection: print the frames the server sends until it
    /// closes, sends a close frame, or is quiet for the timeout (1 s without `-t`).
    func drainFrames() async throws {
        guard isWebSocket else { return }
        let wait = configuration.timeout ?? 1
        let channel = self.channel
        let timer = Task {
            guard (try? await Task.sleep(for: .seconds(wait))) != nil else { return }
            channel.close(promise: nil)
        }
        defer { timer.cancel() }
        while let frame = try? await reader.readFrame(keep: 1 << 20) {
            output("<< frame \(frame.opcodeName)\(frame.fin ? "" : " -fin"): \(frame.length) bytes: \(escapedForDisplay(frame.payload, limit: 256))")
            if frame.opcode == 8 { return }
        }
    }

    /// Writes a rendered message, honouring its pauses; returns whether its spec disconnected, and
    /// the first 64 KiB sent (for `-q`). A server that stops reading early is not an error here: the
    /// response (or its absence) tells.
    func stream(_ rendered: RenderedMessage) async throws -> (Bool, [UInt8]) {
        var stream = rendered.makeStream()
        var sent: [UInt8] = []
        do {
            while let event = try stream.next() {
                switch event {
                case .data(let bytes):
                    if configuration.showRequest && sent.count < 64 * 1024 { sent += bytes.prefix(64 * 1024 - sent.count) }
                    try await outbound.write(ByteBuffer(bytes: bytes))
                    await Task.yield()
                case .pause(.seconds(let seconds)):
                    try await Task.sleep(for: .seconds(Double(seconds)))
                case .pause(.forever):
                    while channel.isActive { try await Task.sleep(for: .milliseconds(200)) }
                    return (true, sent)
                case .disconnect:
                    channel.close(promise: nil)
                    return (true, sent)
                }
            }
        } catch let error as RenderError {
            throw PathocError.render("\(error)")
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            // The server closed before taking the whole request; it may still have answered (a 400, say).
            return (false, sent)
        }
        return (false, sent)
    }

    func readResponse(method: MethodSpec) async throws -> PathocResponse {
        guard let bytes = try await reader.readHead() else { throw PathocError.invalidResponse("server closed the connection") }
        let head = try HTTPHead(parsing: bytes)
        guard head.first.hasPrefix("HTTP/"), let code = UInt64(head.second) else {
            throw PathocError.invalidResponse("bad status line '\(head.first) \(head.second) \(head.third)'")
        }
        let isHead: Bool
        switch method {
        case .standard(let name): isHead = name == "HEAD"
        case .value(let value): isHead = value.literalBytes.map { String(decoding: $0, as: UTF8.self).uppercased() == "HEAD" } ?? false
        }
        var length: UInt64 = 0
        var body: [UInt8] = []
        let keep = 1 << 20
        if isHead || (100..<200).contains(code) || code == 204 || code == 304 {
        } else if head.isChunked {
            (length, body) = try await reader.readChunked(keep: keep)
        } else if let declared = head.contentLength {
            body = try await reader.read(count: declared, keep: keep)
            length = declared
        } else {
            (length, body) = try await reader.readToEnd(keep: keep)
        }
        return PathocResponse(
            statusCode: code, reason: head.third, httpVersion: head.first, headers: head.headers, bodyLength: length, body: body
        )
    }
}

extension PathocConfiguration {
    /// The spec with its random choices made, and frozen with `-e` so it prints as sent. A spec
    /// that cannot be rendered (say, a file outside the static directory) is a ``PathocError/render(_:)``.
    func resolve(_ spec: RequestSpec, settings: RenderSettings) throws -> RequestSpec {
        do {
            return try Resolver.resolve(spec, settings: settings, freezing: explain)
        } catch {
            throw PathocError.render("\(error)")
        }
    }

    /// Frames: see ``resolve(_:settings:)-(RequestSpec,_)``.
    func resolve(_ spec: FrameSpec, settings: RenderSettings) throws -> FrameSpec {
        do {
            return try Resolver.resolve(spec, settings: settings, freezing: explain)
        } catch {
            throw PathocError.render("\(error)")
        }
    }

    /// `-C`: presents the certificate chain and key in ``clientCertificate``.
    func applyClientCertificate(to tls: inout TLSConfiguration) throws {
        guard let path = clientCertificate else { return }
        do {
            tls.certificateChain = try NIOSSLCertificate.fromPEMFile(path).map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: path, format: .pem))
        } catch {
            throw PathocError.connectFailed("Cannot load the client certificate \(path): \(error)")
        }
    }
}

/// `DNS:example.com`, `IP:127.0.0.1`, as openssl shows names.
private func describe(_ name: GeneralName) -> String {
    switch name {
    case .dnsName(let host): return "DNS:" + host
    case .ipAddress(let octets):
        let bytes = Array(octets.bytes)
        guard bytes.count == 16 else { return "IP:" + bytes.map(String.init).joined(separator: ".") }
        return "IP:" + stride(from: 0, to: bytes.count, by: 2).map { String(format: "%x", Int(bytes[$0]) << 8 | Int(bytes[$0 + 1])) }.joined(separator: ":")
    case .uniformResourceIdentifier(let uri): return "URI:" + uri
    case .rfc822Name(let mail): return "email:" + mail
    default: return "\(name)"
    }
}

/// Lines of 16 bytes: the offset, the bytes in hex, and the printable ones as text.
func hexDump(_ bytes: [UInt8], limit: Int) -> String {
    let shown = bytes.prefix(limit)
    var lines: [String] = []
    var offset = 0
    while offset < shown.count {
        let row = shown[shown.startIndex + offset..<shown.startIndex + min(offset + 16, shown.count)]
        let hex = row.map { String(format: "%02x", $0) }.joined(separator: " ")
        let text = String(row.map { (32..<127).contains($0) ? Character(UnicodeScalar($0)) : "." })
        lines.append(String(format: "%08x", offset) + "  " + hex.padding(toLength: 47, withPad: " ", startingAt: 0) + "  " + text)
        offset += 16
    }
    if bytes.count > limit { lines.append("... \(bytes.count - limit) more bytes") }
    return lines.joined(separator: "\n")
}
