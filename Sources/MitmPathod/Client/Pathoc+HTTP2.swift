import Foundation
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL
import NIOTLS

extension Pathoc {
    typealias HTTP2ClientStream = NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>

    /// `--http2`: every request of a round on its own stream of one TLS connection, HTTP/2 chosen
    /// by ALPN. The HTTP/1-only parts of a spec (raw flag, d/i/p actions) do not apply; frames and
    /// CONNECT are refused.
    public func runHTTP2(_ messages: [ClientMessage], rounds: Int = 1) async -> Bool {
        if configuration.connectTo != nil {
            output("--http2 with CONNECT (-c) is not supported")
            return false
        }
        if messages.contains(where: { if case .frame = $0 { true } else { false } }) {
            output("websocket frames need HTTP/1: not sent over --http2")
            return false
        }
        return await runRounds(rounds) {
            try await withHTTP2Connection { multiplexer -> Bool in
                for message in messages {
                    guard case .request(let request) = message.withoutTimes else { continue }
                    for _ in 0..<message.repeatCount {
                        if Task.isCancelled { return true }
                        let printed = try await http2Request(request, multiplexer: multiplexer)
                        if printed && configuration.oneshot { return true }
                        try await waitAfterRequest()
                    }
                }
                return false
            }
        }
    }

    private func withHTTP2Connection<T>(
        _ body: (NIOHTTP2Handler.AsyncStreamMultiplexer<Void>) async throws -> T
    ) async throws -> T {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        tls.applicationProtocols = ["h2", "http/1.1"]
        try configuration.applyClientCertificate(to: &tls)
        let context = try NIOSSLContext(configuration: tls)
        let name = configuration.sni ?? configuration.host
        let serverName = name.contains(where: { $0.isLetter }) && !name.contains(":") ? name : nil
        typealias Negotiated = NIONegotiatedHTTPVersion<any Channel, NIOHTTP2Handler.AsyncStreamMultiplexer<Void>>
        let negotiation: EventLoopFuture<Negotiated>
        let handshakeLimit = configuration.timeout ?? 10
        do {
            negotiation = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.milliseconds(Int64((configuration.timeout ?? 10) * 1000)))
                .connect(host: configuration.host, port: configuration.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: serverName))
                    }.flatMap {
                        channel.configureHTTP2AsyncSecureUpgrade(
                            http1ConnectionInitializer: { channel in channel.eventLoop.makeSucceededFuture(channel) },
                            http2ConnectionInitializer: { channel in
                                channel.configureAsyncHTTP2Pipeline(mode: .client) { stream in
                                    stream.eventLoop.makeSucceededVoidFuture()
                                }
                            }
                        )
                    }.map { negotiated in
                        // A server that never finishes the handshake (say, one without TLS) must not hang us.
                        let limit = channel.eventLoop.scheduleTask(in: .milliseconds(Int64(handshakeLimit * 1000))) {
                            channel.close(promise: nil)
                        }
                        negotiated.whenComplete { _ in limit.cancel() }
                        return negotiated
                    }
                }
        } catch {
            throw PathocError.connectFailed("Could not connect to \(configuration.host):\(configuration.port): \(error)")
        }
        let result: Negotiated
        do {
            result = try await negotiation.get()
        } catch {
            throw PathocError.connectFailed("TLS with \(configuration.host):\(configuration.port) failed: \(error)")
        }
        switch result {
        case .http1_1(let channel):
            try? await channel.close()
            throw PathocError.connectFailed("HTTP/2 not offered by the server (ALPN chose http/1.1)")
        case .http2(let multiplexer):
            return try await body(multiplexer)
        }
    }

    /// Sends one request on a new stream; returns whether its response was printed (not hidden by `-I`).
    private func http2Request(_ spec: RequestSpec, multiplexer: NIOHTTP2Handler.AsyncStreamMultiplexer<Void>) async throws -> Bool {
        let settings = RenderSettings(isClient: true, requestHost: configuration.host)
        let resolved = try configuration.resolve(spec, settings: settings)
        var lines = [">> " + (configuration.explain ? resolved.spec : spec.spec)]
        let method: String
        switch resolved.method ?? .standard("GET") {
        case .standard(let name): method = name
        case .value(let value): method = String(decoding: try value.source(settings: settings).readAll(), as: UTF8.self)
        }
        var path = String(decoding: try resolved.path.source(settings: settings).readAll(), as: UTF8.self)
        var headers = HTTPHeaders()
        var body: (any ByteSource)?
        for feature in resolved.features {
            if case .nestedResponse(let nested) = feature { path += Renderer.percentEncoded(nested.response.spec) }
            if case .body(let value) = feature { body = try value.source(settings: settings) }
            if let header = Header(feature) {
                let name = String(decoding: try header.name.source(settings: settings).readAll(), as: UTF8.self).lowercased()
                if ["connection", "transfer-encoding", "keep-alive", "upgrade"].contains(name) { continue }
                headers.add(name: name, value: String(decoding: try header.valueSource(settings: settings).readAll(), as: UTF8.self))
            }
        }
        let stream = try await multiplexer.openStream { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(HTTP2FramePayloadToHTTP1ClientCodec(httpProtocol: .https))
                return try HTTP2ClientStream(wrappingChannelSynchronously: channel)
            }
        }
        let timeout = configuration.timeout
        let (status, length) = try await stream.executeThenClose { inbound, outbound in
            let timer = timeout.map { seconds in
                Task {
                    guard (try? await Task.sleep(for: .seconds(seconds))) != nil else { return }
                    stream.channel.close(promise: nil)
                }
            }
            defer { timer?.cancel() }
            try await outbound.write(.head(HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: path, headers: headers)))
            if let body {
                var offset: UInt64 = 0
                while offset < body.length {
                    let block = try body.read(offset: offset, count: Renderer.blockSize)
                    if block.isEmpty { break }
                    try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: block))))
                    offset += UInt64(block.count)
                }
            }
            try await outbound.write(.end(nil))
            var status: HTTPResponseStatus?
            var length: UInt64 = 0
            for try await part in inbound {
                switch part {
                case .head(let head): status = head.status
                case .body(let buffer): length += UInt64(buffer.readableBytes)
                case .end: return (status, length)
                }
            }
            return (status, length)
        }
        guard let status else {
            lines.forEach(output)
            throw timeout == nil ? PathocError.invalidResponse("stream ended without a response") : PathocError.timeout
        }
        let code = UInt64(status.code)
        lines.append("<< \(code) \(StatusReasons.reason(for: code)): \(length) bytes")
        guard !configuration.ignoreCodes.contains(code) else { return false }
        lines.forEach(output)
        return true
    }
}
