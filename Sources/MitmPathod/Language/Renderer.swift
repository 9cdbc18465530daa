/// Turns a resolved message into what goes on the wire: a ``RenderedMessage`` (the byte sources of
/// the message in order, and its actions by offset), read as a ``RenderStream`` of data blocks,
/// pauses and a disconnect. Nothing is read from a source until the stream reaches it.
public enum Renderer {
    /// The most bytes one `.data` event carries.
    public static let blockSize = 64 * 1024

    public enum Message: Sendable {
        case request(RequestSpec)
        case response(ResponseSpec)
        case frame(FrameSpec)
    }

    /// The message's byte sources and actions. Call on a resolved message: unresolved `r`/`a`
    /// offsets are treated as the end.
    public static func layout(_ message: Message, settings: RenderSettings) throws -> RenderedMessage {
        switch message {
        case .response(let response): return try layout(response, settings: settings)
        case .request(let request): return try layout(request, settings: settings)
        case .frame(let frame): return try layout(frame, settings: settings)
        }
    }

    static func bytes(_ text: String) -> any ByteSource { LiteralSource(Array(text.utf8)) }

    static func layout(_ response: ResponseSpec, settings: RenderSettings) throws -> RenderedMessage {
        var pieces: [any ByteSource] = [bytes("HTTP/1.1 "), bytes(String(response.code ?? 101)), bytes(" ")]
        var reason: (any ByteSource)?
        var body: (any ByteSource)?
        for feature in response.features {
            if case .reason(let value) = feature { reason = try value.source(settings: settings) }
            if case .body(let value) = feature { body = try value.source(settings: settings) }
        }
        pieces.append(reason ?? bytes(StatusReasons.reason(for: response.code ?? 101)))
        pieces.append(bytes("\r\n"))
        for header in response.features.compactMap(Header.init) {
            pieces += [try header.name.source(settings: settings), bytes(": "), try header.valueSource(settings: settings), bytes("\r\n")]
        }
        pieces.append(bytes("\r\n"))
        if let body { pieces.append(body) }
        return try RenderedMessage(pieces: pieces, actions: response.actions, settings: settings)
    }

    static func layout(_ request: RequestSpec, settings: RenderSettings) throws -> RenderedMessage {
        var pieces: [any ByteSource] = []
        switch request.method ?? .standard("GET") {
        case .standard(let name): pieces.append(bytes(name))
        case .value(let value): pieces.append(try value.source(settings: settings))
        }
        pieces += [bytes(" "), try request.path.source(settings: settings)]
        var body: (any ByteSource)?
        for feature in request.features {
            if case .nestedResponse(let nested) = feature { pieces.append(bytes(percentEncoded(nested.response.spec))) }
            if case .body(let value) = feature { body = try value.source(settings: settings) }
        }
        pieces.append(bytes(" HTTP/1.1\r\n"))
        for header in request.features.compactMap(Header.init) {
            pieces += [try header.name.source(settings: settings), bytes(": "), try header.valueSource(settings: settings), bytes("\r\n")]
        }
        pieces.append(bytes("\r\n"))
        if let body { pieces.append(body) }
        return try RenderedMessage(pieces: pieces, actions: request.actions, settings: settings)
    }

    /// Escapes what cannot stand in a request target (space, controls, `%`, `#`, non-ASCII); pathod
    /// unquotes the path before reading the spec, so the embedded spec arrives intact.
    public static func percentEncoded(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            if byte <= 0x20 || byte >= 0x7F || byte == UInt8(ascii: "%") || byte == UInt8(ascii: "#") {
                let hex = String(byte, radix: 16, uppercase: true)
                out += "%" + (hex.count == 1 ? "0" + hex : hex)
            } else {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            }
        }
        return out
    }

    /// The bytes a nested-frame payload starts with; pathod parses the rest as frame specs.
    public static let nestedFrameLeader = Array("pathod!".utf8)

    static func layout(_ frame: FrameSpec, settings: RenderSettings) throws -> RenderedMessage {
        var opcode: UInt8 = 1
        var fin = true, rsv1 = false, rsv2 = false, rsv3 = false
        var mask: Bool?
        var key: [UInt8]?
        var keyNone = false
        var declaredLength: UInt64?
        var payload: (any ByteSource)?
        var raw = false
        for feature in frame.features {
            switch feature {
            case .opcode(let code): opcode = code.value
            case .length(let n): declaredLength = n
            case .fin(let on): fin = on
            case .rsv1(let on): rsv1 = on
            case .rsv2(let on): rsv2 = on
            case .rsv3(let on): rsv3 = on
            case .mask(let on): mask = on
            case .keyNone: keyNone = true
            case .key(let value):
                let bytes = try value.source(settings: settings).readAll()
                guard bytes.count == 4 else {
                    throw RenderError.invalid("Invalid value length: '\(value.spec)' is \(bytes.count) bytes, should be 4.")
                }
                key = bytes
            case .body(let value): payload = try value.source(settings: settings)
            case .rawBody(let value):
                payload = try value.source(settings: settings)
                raw = true
            case .nestedFrame(let inner): payload = LiteralSource(nestedFrameLeader + Array(inner.spec.utf8))
            case .times, .action: break
            }
        }
        if keyNone { key = nil }
        let maskBit = mask ?? (key != nil)
        let length = declaredLength ?? payload?.length ?? 0
        var header: [UInt8] = [
            (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (rsv2 ? 0x20 : 0) | (rsv3 ? 0x10 : 0) | (opcode & 0x0F)
        ]
        let maskFlag: UInt8 = maskBit ? 0x80 : 0
        if length < 126 {
            header.append(maskFlag | UInt8(length))
        } else if length <= 0xFFFF {
            header += [maskFlag | 126, UInt8(length >> 8), UInt8(length & 0xFF)]
        } else {
            header.append(maskFlag | 127)
            for shift in stride(from: 56, through: 0, by: -8) { header.append(UInt8((length >> UInt64(shift)) & 0xFF)) }
        }
        if let key { header += key }
        var pieces: [any ByteSource] = [LiteralSource(header)]
        if let payload {
            if let key, !raw {
                pieces.append(MaskedSource(inner: payload, key: key))
            } else {
                pieces.append(payload)
            }
        }
        return try RenderedMessage(pieces: pieces, actions: frame.actions, settings: settings)
    }
}

/// A message ready to send: its byte sources in order and its actions sorted by offset.
public struct RenderedMessage {
    public enum Action {
        case pause(PauseDuration)
        case disconnect
        case inject(any ByteSource)
    }

    public var pieces: [any ByteSource]
    /// Actions in offset order (stable, so two at one offset keep their spec order).
    public var actions: [(offset: UInt64, action: Action)]

    init(pieces: [any ByteSource], actions: [SpecAction], settings: RenderSettings) throws {
        self.pieces = pieces
        let length = pieces.reduce(UInt64(0)) { $0 &+ $1.length }
        var list: [(offset: UInt64, action: Action)] = []
        for action in actions {
            let offset: UInt64
            switch action.offset {
            case .bytes(let n): offset = n
            case .random, .end: offset = length &+ 1
            }
            switch action {
            case .pause(_, let duration): list.append((offset, .pause(duration)))
            case .disconnect: list.append((offset, .disconnect))
            case .inject(_, let value): list.append((offset, .inject(try value.source(settings: settings))))
            }
        }
        self.actions = list.enumerated().sorted { a, b in
            a.element.offset != b.element.offset ? a.element.offset < b.element.offset : a.offset < b.offset
        }.map(\.element)
    }

    /// The message's length without its actions (what offsets count).
    public var length: UInt64 { pieces.reduce(UInt64(0)) { $0 &+ $1.length } }

    /// The largest number of bytes sending it can take: the message plus every injection.
    public var maximumLength: UInt64 {
        actions.reduce(length) { total, entry in
            if case .inject(let source) = entry.action { return total &+ source.length }
            return total
        }
    }

    public func makeStream() -> RenderStream { RenderStream(self) }

    /// Every data byte, ignoring pauses and stopping at a disconnect. For tests and small messages.
    public func collect() throws -> [UInt8] {
        var stream = makeStream()
        var out: [UInt8] = []
        while let event = try stream.next() {
            if case .data(let bytes) = event { out += bytes }
        }
        return out
    }
}

/// What a ``RenderStream`` yields.
public enum RenderEvent {
    case data([UInt8])
    case pause(PauseDuration)
    case disconnect
}

/// Walks a rendered message: data in blocks of at most ``Renderer/blockSize``, with each action
/// performed once its offset has been sent (actions past the end run after the last byte).
public struct RenderStream {
    private let message: RenderedMessage
    private var piece = 0
    private var pieceOffset: UInt64 = 0
    private var sent: UInt64 = 0
    private var nextAction = 0
    private var injecting: (source: any ByteSource, offset: UInt64)?
    private var finished = false

    init(_ message: RenderedMessage) { self.message = message }

    public mutating func next() throws -> RenderEvent? {
        while !finished {
            if let (source, offset) = injecting {
                if offset < source.length {
                    let block = try source.read(offset: offset, count: Renderer.blockSize)
                    injecting = block.isEmpty ? nil : (source, offset + UInt64(block.count))
                    if !block.isEmpty { return .data(block) }
                } else {
                    injecting = nil
                }
                continue
            }
            let piecesDone = piece >= message.pieces.count
            if nextAction < message.actions.count, message.actions[nextAction].offset <= sent || piecesDone {
                let action = message.actions[nextAction].action
                nextAction += 1
                switch action {
                case .pause(let duration): return .pause(duration)
                case .disconnect:
                    finished = true
                    return .disconnect
                case .inject(let source):
                    injecting = (source, 0)
                    continue
                }
            }
            if piecesDone {
                finished = true
                return nil
            }
            let source = message.pieces[piece]
            let remaining = source.length - pieceOffset
            if remaining == 0 {
                piece += 1
                pieceOffset = 0
                continue
            }
            var count = min(UInt64(Renderer.blockSize), remaining)
            if nextAction < message.actions.count {
                count = min(count, message.actions[nextAction].offset - sent)
            }
            let block = try source.read(offset: pieceOffset, count: Int(count))
            if block.isEmpty {
                // A file that shrank: move on rather than loop.
                piece += 1
                pieceOffset = 0
                continue
            }
            pieceOffset += UInt64(block.count)
            sent += UInt64(block.count)
            return .data(block)
        }
        return nil
    }
}
