import Crypto
import Foundation

/// Fixes what a spec leaves open before it is sent, as pathod's `resolve` and `freeze` did.
///
/// ``resolve(_:settings:)`` adds the headers a message gets unless it is raw (`Content-Length`,
/// `Host`, the websocket handshake), fixes `r` and `a` offsets and picks a masking key.
/// ``freeze(_:settings:)`` also replaces generated values by the bytes drawn, so the result, printed
/// with `spec`, replays exactly (pathoc's `-e`).
public enum Resolver {
    /// The largest generated value ``freeze(_:settings:)`` will write out as a literal.
    public static let freezeLimit: UInt64 = 1 << 20

    // MARK: - Responses

    public static func resolve(_ response: ResponseSpec, settings: RenderSettings) throws -> ResponseSpec {
        var resolved = response
        if response.isWebSocket {
            guard let key = settings.websocketKey else {
                throw RenderError.invalid("No websocket key - have we seen a client handshake?")
            }
            if resolved.code == nil { resolved.code = 101 }
            let headers = resolved.features.compactMap { feature -> SpecValue? in
                if case .header(let name, _) = feature { name } else { nil }
            }
            for (name, value) in [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", acceptKey(for: key))]
            where !hasHeader(name, in: headers) {
                resolved.features.append(.header(.literal(Array(name.utf8)), .literal(Array(value.utf8))))
            }
        }
        let isRaw = resolved.features.contains(.raw)
        if !isRaw && !hasHeader("Content-Length", in: headerNames(resolved.features.map(Header.init))) {
            var length: UInt64 = 0
            for case .body(let body) in resolved.features { length = try body.source(settings: settings).length }
            resolved.features.append(.header(.literal(Array("Content-Length".utf8)), .literal(Array(String(length).utf8))))
        }
        let length = try Renderer.layout(.response(resolved), settings: settings).length
        resolved.features = resolved.features.map { feature in
            if case .action(let action) = feature { .action(fix(action, length: length)) } else { feature }
        }
        return resolved
    }

    public static func freeze(_ response: ResponseSpec, settings: RenderSettings) throws -> ResponseSpec {
        var frozen = try resolve(response, settings: settings)
        frozen.features = try frozen.features.map { feature in
            switch feature {
            case .header(let k, let v): return .header(try freeze(k, settings), try freeze(v, settings))
            case .contentType(let v): return .contentType(try freeze(v, settings))
            case .location(let v): return .location(try freeze(v, settings))
            case .reason(let v): return .reason(try freeze(v, settings))
            case .body(let v): return .body(try freeze(v, settings))
            case .action(let a): return .action(try freeze(a, settings))
            case .raw: return .raw
            }
        }
        return frozen
    }

    // MARK: - Requests

    public static func resolve(_ request: RequestSpec, settings: RenderSettings) throws -> RequestSpec {
        var resolved = request
        if request.isWebSocket {
            if resolved.method == nil { resolved.method = .standard("GET") }
            let names = headerNames(resolved.features.map(Header.init))
            var keyBytes = [UInt8](repeating: 0, count: 16)
            var generator = SystemRandomNumberGenerator()
            for index in keyBytes.indices { keyBytes[index] = generator.next() }
            for (name, value) in [
                ("Connection", "Upgrade"), ("Upgrade", "websocket"),
                ("Sec-WebSocket-Key", Data(keyBytes).base64EncodedString()), ("Sec-WebSocket-Version", "13"),
            ] where !names.contains(name.lowercased()) {
                resolved.features.append(.header(.literal(Array(name.utf8)), .literal(Array(value.utf8))))
            }
        }
        if !resolved.features.contains(.raw) {
            let names = headerNames(resolved.features.map(Header.init))
            for case .body(let body) in resolved.features where !names.contains("content-length") {
                let length = try body.source(settings: settings).length
                resolved.features.append(.header(.literal(Array("Content-Length".utf8)), .literal(Array(String(length).utf8))))
            }
            if let host = settings.requestHost, !names.contains("host") {
                resolved.features.append(.header(.literal(Array("Host".utf8)), .literal(Array(host.utf8))))
            }
        }
        let length = try Renderer.layout(.request(resolved), settings: settings).length
        resolved.features = resolved.features.map { feature in
            if case .action(let action) = feature { .action(fix(action, length: length)) } else { feature }
        }
        return resolved
    }

    public static func freeze(_ request: RequestSpec, settings: RenderSettings) throws -> RequestSpec {
        var frozen = try resolve(request, settings: settings)
        if case .value(let v) = frozen.method { frozen.method = .value(try freeze(v, settings)) }
        frozen.path = try freeze(frozen.path, settings)
        frozen.features = try frozen.features.map { feature in
            switch feature {
            case .header(let k, let v): return .header(try freeze(k, settings), try freeze(v, settings))
            case .contentType(let v): return .contentType(try freeze(v, settings))
            case .userAgent(.value(let v)): return .userAgent(.value(try freeze(v, settings)))
            case .body(let v): return .body(try freeze(v, settings))
            case .nestedResponse(let nested):
                var inner = settings
                inner.websocketKey = inner.websocketKey ?? "dGhlIHNhbXBsZSBub25jZQ=="
                return .nestedResponse(NestedResponse(try freeze(nested.response, settings: inner)))
            case .action(let a): return .action(try freeze(a, settings))
            case .userAgent, .raw, .times: return feature
            }
        }
        return frozen
    }

    // MARK: - Frames

    public static func resolve(_ frame: FrameSpec, settings: RenderSettings) throws -> FrameSpec {
        var resolved = frame
        let hasMask = resolved.features.contains { if case .mask = $0 { true } else { false } }
        if !hasMask && settings.isClient { resolved.features.append(.mask(true)) }
        let masked = resolved.features.contains(.mask(true))
        let hasKey = resolved.features.contains { if case .key = $0 { true } else { $0 == .keyNone } }
        if masked && !hasKey {
            let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".utf8)
            let key = (0..<4).map { _ in alphabet.randomElement()! }
            resolved.features.append(.key(.literal(key)))
        }
        let length = try Renderer.layout(.frame(resolved), settings: settings).length
        resolved.features = resolved.features.map { feature in
            if case .action(let action) = feature { .action(fix(action, length: length)) } else { feature }
        }
        return resolved
    }

    public static func freeze(_ frame: FrameSpec, settings: RenderSettings) throws -> FrameSpec {
        var frozen = try resolve(frame, settings: settings)
        frozen.features = try frozen.features.map { feature in
            switch feature {
            case .key(let v): return .key(try freeze(v, settings))
            case .body(let v): return .body(try freeze(v, settings))
            case .rawBody(let v): return .rawBody(try freeze(v, settings))
            case .nestedFrame(let inner):
                var serverSide = settings
                serverSide.isClient = false
                return .nestedFrame(try freeze(inner, settings: serverSide))
            case .action(let a): return .action(try freeze(a, settings))
            default: return feature
            }
        }
        return frozen
    }

    public static func freeze(_ message: ClientMessage, settings: RenderSettings) throws -> ClientMessage {
        switch message {
        case .request(let r): return .request(try freeze(r, settings: settings))
        case .frame(let f): return .frame(try freeze(f, settings: settings))
        }
    }

    public static func freeze(_ message: ServerMessage, settings: RenderSettings) throws -> ServerMessage {
        switch message {
        case .response(let r): return .response(try freeze(r, settings: settings))
        case .frame(let f): return .frame(try freeze(f, settings: settings))
        }
    }

    // MARK: - Resolve or freeze

    /// ``freeze(_:settings:)-(RequestSpec,_)`` when `freezing` (`-e`, explain), else
    /// ``resolve(_:settings:)-(RequestSpec,_)``.
    public static func resolve(_ request: RequestSpec, settings: RenderSettings, freezing: Bool) throws -> RequestSpec {
        freezing ? try freeze(request, settings: settings) : try resolve(request, settings: settings)
    }

    /// Frames: see ``resolve(_:settings:freezing:)-(RequestSpec,_,_)``.
    public static func resolve(_ frame: FrameSpec, settings: RenderSettings, freezing: Bool) throws -> FrameSpec {
        freezing ? try freeze(frame, settings: settings) : try resolve(frame, settings: settings)
    }

    /// Responses: see ``resolve(_:settings:freezing:)-(RequestSpec,_,_)``.
    public static func resolve(_ response: ResponseSpec, settings: RenderSettings, freezing: Bool) throws -> ResponseSpec {
        freezing ? try freeze(response, settings: settings) : try resolve(response, settings: settings)
    }

    /// What pathod serves: see ``resolve(_:settings:freezing:)-(RequestSpec,_,_)``.
    public static func resolve(_ message: ServerMessage, settings: RenderSettings, freezing: Bool) throws -> ServerMessage {
        switch message {
        case .response(let r): return .response(try resolve(r, settings: settings, freezing: freezing))
        case .frame(let f): return .frame(try resolve(f, settings: settings, freezing: freezing))
        }
    }

    // MARK: - Helpers

    /// `Sec-WebSocket-Accept` for a client key (RFC 6455 §4.2.2).
    public static func acceptKey(for key: String) -> String {
        let digest = Insecure.SHA1.hash(data: Array((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").utf8))
        return Data(digest).base64EncodedString()
    }

    static func fix(_ action: SpecAction, length: UInt64) -> SpecAction {
        switch action.offset {
        case .bytes: return action
        case .random: return action.with(offset: .bytes(length == 0 ? 0 : UInt64.random(in: 0..<length)))
        case .end: return action.with(offset: .bytes(length + 1))
        }
    }

    static func freeze(_ action: SpecAction, _ settings: RenderSettings) throws -> SpecAction {
        if case .inject(let offset, let value) = action { return .inject(offset, try freeze(value, settings)) }
        return action
    }

    static func freeze(_ value: SpecValue, _ settings: RenderSettings) throws -> SpecValue {
        guard case .generated = value, let size = value.generatedSize else { return value }
        guard size <= freezeLimit else {
            throw RenderError.invalid("\(value.spec) is too large to explain (at most \(freezeLimit) bytes)")
        }
        return .literal(try value.source(settings: settings).readAll())
    }

    /// The header names a message sets with literal names, lowercased; generated or file names never match.
    static func headerNames(_ headers: [Header?]) -> Set<String> {
        Set(headers.compactMap { $0?.name.literalBytes.map { String(decoding: $0, as: UTF8.self).lowercased() } })
    }

    static func hasHeader(_ name: String, in names: [SpecValue]) -> Bool {
        names.contains { $0.literalBytes.map { String(decoding: $0, as: UTF8.self).lowercased() } == name.lowercased() }
    }

    static func hasHeader(_ name: String, in names: Set<String>) -> Bool { names.contains(name.lowercased()) }
}

/// A header-like feature's name and value (`h`, `c`, `l`, `u`), in message order.
struct Header {
    var name: SpecValue
    var value: SpecValue?
    var userAgent: UserAgent?

    init?(_ feature: ResponseFeature) {
        switch feature {
        case .header(let k, let v): (name, value) = (k, v)
        case .contentType(let v): (name, value) = (.literal(Array("Content-Type".utf8)), v)
        case .location(let v): (name, value) = (.literal(Array("Location".utf8)), v)
        default: return nil
        }
    }

    init?(_ feature: RequestFeature) {
        switch feature {
        case .header(let k, let v): (name, value) = (k, v)
        case .contentType(let v): (name, value) = (.literal(Array("Content-Type".utf8)), v)
        case .userAgent(.value(let v)): (name, value) = (.literal(Array("User-Agent".utf8)), v)
        case .userAgent(.shortcut(let agent)): (name, value, userAgent) = (.literal(Array("User-Agent".utf8)), nil, agent)
        default: return nil
        }
    }

    func valueSource(settings: RenderSettings) throws -> any ByteSource {
        if let userAgent { return LiteralSource(Array(userAgent.value.utf8)) }
        return try value!.source(settings: settings)
    }
}
