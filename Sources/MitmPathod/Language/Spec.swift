/// The typed syntax tree of the pathod language: what ``SpecParser`` produces, what ``Resolver``
/// fixes and what ``Renderer`` turns into bytes. Features keep the order they were written in, so
/// ``spec`` prints a message back as written (pathod printed its tokens in order too).

/// Where an action happens, in bytes from the start of the message as rendered without actions.
public enum Offset: Hashable, Sendable, CustomStringConvertible {
    case bytes(UInt64)
    /// `r`: somewhere random, fixed by resolving.
    case random
    /// `a`: after the whole message.
    case end

    public var description: String {
        switch self {
        case .bytes(let n): return String(n)
        case .random: return "r"
        case .end: return "a"
        }
    }
}

/// How long a `p` action pauses.
public enum PauseDuration: Hashable, Sendable, CustomStringConvertible {
    case seconds(UInt64)
    /// `f`: until the peer goes away.
    case forever

    public var description: String {
        switch self {
        case .seconds(let n): return String(n)
        case .forever: return "f"
        }
    }
}

/// The `d`, `i` and `p` features, which act on the byte stream at an offset.
public enum SpecAction: Hashable, Sendable {
    case pause(Offset, PauseDuration)
    case disconnect(Offset)
    case inject(Offset, SpecValue)

    public var offset: Offset {
        switch self {
        case .pause(let offset, _), .disconnect(let offset), .inject(let offset, _): return offset
        }
    }

    func with(offset: Offset) -> SpecAction {
        switch self {
        case .pause(_, let duration): return .pause(offset, duration)
        case .disconnect: return .disconnect(offset)
        case .inject(_, let value): return .inject(offset, value)
        }
    }

    public var spec: String {
        switch self {
        case .pause(let offset, let duration): return "p\(offset),\(duration)"
        case .disconnect(let offset): return "d\(offset)"
        case .inject(let offset, let value): return "i\(offset),\(value.spec)"
        }
    }
}

/// A request method: one of the standard names (written bare) or any value.
public enum MethodSpec: Hashable, Sendable {
    case standard(String)
    case value(SpecValue)

    public static let standardNames = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "CONNECT"]

    public var spec: String {
        switch self {
        case .standard(let name): return name.lowercased()
        case .value(let value): return value.spec
        }
    }
}

/// The `u` feature: a shortcut name or any value.
public enum UserAgentSpec: Hashable, Sendable {
    case shortcut(UserAgent)
    case value(SpecValue)

    public var spec: String {
        switch self {
        case .shortcut(let agent): return agent.name
        case .value(let value): return value.spec
        }
    }
}

/// `s'…'`: a response spec carried in a request's path, parsed so mistakes show up at once.
public struct NestedResponse: Hashable, Sendable {
    public var response: ResponseSpec
    public init(_ response: ResponseSpec) { self.response = response }
}

/// A request's features (`method:path:[features]`).
public enum RequestFeature: Hashable, Sendable {
    case header(SpecValue, SpecValue)
    case contentType(SpecValue)
    case userAgent(UserAgentSpec)
    case raw
    case body(SpecValue)
    case nestedResponse(NestedResponse)
    case times(UInt64)
    case action(SpecAction)

    public var spec: String {
        switch self {
        case .header(let key, let value): return "h\(key.spec)=\(value.spec)"
        case .contentType(let value): return "c\(value.spec)"
        case .userAgent(let agent): return "u\(agent.spec)"
        case .raw: return "r"
        case .body(let value): return "b\(value.spec)"
        case .nestedResponse(let nested):
            return "s'" + Escaping.escape(Array(nested.response.spec.utf8), quote: true) + "'"
        case .times(let n): return "x\(n)"
        case .action(let action): return action.spec
        }
    }
}

/// A response's features (`code:[features]`).
public enum ResponseFeature: Hashable, Sendable {
    case header(SpecValue, SpecValue)
    case contentType(SpecValue)
    case location(SpecValue)
    case raw
    case reason(SpecValue)
    case body(SpecValue)
    case action(SpecAction)

    public var spec: String {
        switch self {
        case .header(let key, let value): return "h\(key.spec)=\(value.spec)"
        case .contentType(let value): return "c\(value.spec)"
        case .location(let value): return "l\(value.spec)"
        case .raw: return "r"
        case .reason(let value): return "m\(value.spec)"
        case .body(let value): return "b\(value.spec)"
        case .action(let action): return action.spec
        }
    }
}

/// A websocket frame opcode: a name or a number up to 15.
public enum OpcodeSpec: Hashable, Sendable {
    case named(String)
    case number(UInt8)

    public static let names: [(String, UInt8)] = [
        ("continue", 0), ("text", 1), ("binary", 2), ("close", 8), ("ping", 9), ("pong", 10),
    ]

    public var value: UInt8 {
        switch self {
        case .named(let name): return Self.names.first { $0.0 == name }?.1 ?? 1
        case .number(let n): return n
        }
    }

    public var spec: String {
        switch self {
        case .named(let name): return name
        case .number(let n): return String(n)
        }
    }
}

/// A websocket frame's features (`wf:[features]`).
public enum FrameFeature: Hashable, Sendable {
    case opcode(OpcodeSpec)
    case length(UInt64)
    case fin(Bool)
    case rsv1(Bool)
    case rsv2(Bool)
    case rsv3(Bool)
    case mask(Bool)
    case keyNone
    case key(SpecValue)
    case times(UInt64)
    case body(SpecValue)
    case rawBody(SpecValue)
    /// `f'…'` (client frames only): a frame spec pathod parses from the payload and sends back.
    case nestedFrame(FrameSpec)
    case action(SpecAction)

    public var spec: String {
        func flag(_ on: Bool, _ name: String) -> String { (on ? "" : "-") + name }
        switch self {
        case .opcode(let code): return "c\(code.spec)"
        case .length(let n): return "l\(n)"
        case .fin(let on): return flag(on, "fin")
        case .rsv1(let on): return flag(on, "rsv1")
        case .rsv2(let on): return flag(on, "rsv2")
        case .rsv3(let on): return flag(on, "rsv3")
        case .mask(let on): return flag(on, "mask")
        case .keyNone: return "knone"
        case .key(let value): return "k\(value.spec)"
        case .times(let n): return "x\(n)"
        case .body(let value): return "b\(value.spec)"
        case .rawBody(let value): return "r\(value.spec)"
        case .nestedFrame(let frame): return "f'" + Escaping.escape(Array(frame.spec.utf8), quote: true) + "'"
        case .action(let action): return action.spec
        }
    }
}

/// `method:path:[features]`, or `ws[:method]:path:[features]` for a websocket handshake.
public struct RequestSpec: Hashable, Sendable {
    public var isWebSocket: Bool
    public var method: MethodSpec?
    public var path: SpecValue
    public var features: [RequestFeature]

    public init(isWebSocket: Bool = false, method: MethodSpec?, path: SpecValue, features: [RequestFeature] = []) {
        self.isWebSocket = isWebSocket
        self.method = method
        self.path = path
        self.features = features
    }

    public var spec: String {
        var parts: [String] = []
        if isWebSocket { parts.append("ws") }
        if let method { parts.append(method.spec) }
        parts.append(path.spec)
        parts += features.map(\.spec)
        return parts.joined(separator: ":")
    }

    public var times: UInt64? {
        for case .times(let n) in features { return n }
        return nil
    }

    public var actions: [SpecAction] { features.compactMap { if case .action(let a) = $0 { a } else { nil } } }
}

/// `code:[features]`, or `ws[:code]:[features]` for a websocket handshake answer.
public struct ResponseSpec: Hashable, Sendable {
    public var isWebSocket: Bool
    public var code: UInt64?
    public var features: [ResponseFeature]

    public init(isWebSocket: Bool = false, code: UInt64?, features: [ResponseFeature] = []) {
        self.isWebSocket = isWebSocket
        self.code = code
        self.features = features
    }

    public var spec: String {
        var parts: [String] = []
        if isWebSocket { parts.append("ws") }
        if let code { parts.append(String(code)) }
        parts += features.map(\.spec)
        return parts.joined(separator: ":")
    }

    public var actions: [SpecAction] { features.compactMap { if case .action(let a) = $0 { a } else { nil } } }
}

/// `wf:[features]`.
public struct FrameSpec: Hashable, Sendable {
    public var features: [FrameFeature]

    public init(features: [FrameFeature] = []) { self.features = features }

    public var spec: String { (["wf"] + features.map(\.spec)).joined(separator: ":") }

    public var times: UInt64? {
        for case .times(let n) in features { return n }
        return nil
    }

    public var actions: [SpecAction] { features.compactMap { if case .action(let a) = $0 { a } else { nil } } }
}

/// One message of a pathoc spec list: a request or a websocket frame.
public enum ClientMessage: Hashable, Sendable {
    case request(RequestSpec)
    case frame(FrameSpec)

    public var spec: String {
        switch self {
        case .request(let r): return r.spec
        case .frame(let f): return f.spec
        }
    }

    /// How many times `x` asks for this message (1 without it).
    public var repeatCount: UInt64 {
        switch self {
        case .request(let r): return r.times ?? 1
        case .frame(let f): return f.times ?? 1
        }
    }

    /// The message without its `x` feature: what is sent each time.
    public var withoutTimes: ClientMessage {
        switch self {
        case .request(var r):
            r.features.removeAll { if case .times = $0 { true } else { false } }
            return .request(r)
        case .frame(var f):
            f.features.removeAll { if case .times = $0 { true } else { false } }
            return .frame(f)
        }
    }
}

/// What pathod serves for a spec: a response, or a bare websocket frame.
public enum ServerMessage: Hashable, Sendable {
    case response(ResponseSpec)
    case frame(FrameSpec)

    public var spec: String {
        switch self {
        case .response(let r): return r.spec
        case .frame(let f): return f.spec
        }
    }
}

/// pathod's User-Agent shortcuts (`u` feature): name, one-letter code, header value.
public struct UserAgent: Hashable, Sendable {
    public let name: String
    public let code: Character
    public let value: String

    public static let all: [UserAgent] = [
        .init(name: "android", code: "a", value: "Mozilla/5.0 (Linux; U; Android 4.1.1; en-gb; Nexus 7 Build/JRO03D) AFL/01.04.02"),
        .init(name: "blackberry", code: "l", value: "Mozilla/5.0 (BlackBerry; U; BlackBerry 9900; en) AppleWebKit/534.11+ (KHTML, like Gecko) Version/7.1.0.346 Mobile Safari/534.11+"),
        .init(name: "bingbot", code: "b", value: "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"),
        .init(name: "chrome", code: "c", value: "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.1 (KHTML, like Gecko) Chrome/22.0.1207.1 Safari/537.1"),
        .init(name: "firefox", code: "f", value: "Mozilla/5.0 (Windows NT 6.1; Win64; x64; rv:14.0) Gecko/20120405 Firefox/14.0a1"),
        .init(name: "googlebot", code: "g", value: "Googlebot/2.1 (+http://www.googlebot.com/bot.html)"),
        .init(name: "ie9", code: "i", value: "Mozilla/5.0 (Windows; U; MSIE 9.0; WIndows NT 9.0; en-US)"),
        .init(name: "ipad", code: "p", value: "Mozilla/5.0 (iPad; CPU OS 5_1 like Mac OS X) AppleWebKit/534.46 (KHTML, like Gecko) Version/5.1 Mobile/9B176 Safari/7534.48.3"),
        .init(name: "iphone", code: "h", value: "Mozilla/5.0 (iPhone; CPU iPhone OS 4_2_1 like Mac OS X) AppleWebKit/533.17.9 (KHTML, like Gecko) Version/5.0.2 Mobile/8C148a Safari/6533.18.5"),
        .init(name: "safari", code: "s", value: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_7_3) AppleWebKit/534.55.3 (KHTML, like Gecko) Version/5.1.3 Safari/534.53.10"),
    ]
}
