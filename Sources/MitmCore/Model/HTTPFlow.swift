import Foundation

/// Identifies one flow.
public typealias FlowID = UUID

/// One HTTP request/response exchange with its connections (mitmproxy's `http.HTTPFlow`). Flows are
/// values: a hook receives one and hands back the edited copy.
///
/// The fields live in a copy-on-write box, so handing a flow to a hook and back costs one retain
/// rather than a copy of every header and connection field.
public struct HTTPFlow: Sendable, Hashable, Identifiable {
    public var id: FlowID {
        get { storage.id }
        set { mutableStorage.id = newValue }
    }
    public var request: HTTPRequest {
        get { storage.request }
        _modify { yield &mutableStorage.request }
    }
    public var response: HTTPResponse? {
        get { storage.response }
        _modify { yield &mutableStorage.response }
    }
    public var error: FlowError? {
        get { storage.error }
        _modify { yield &mutableStorage.error }
    }
    public var clientConnection: ClientConnection {
        get { storage.clientConnection }
        _modify { yield &mutableStorage.clientConnection }
    }
    public var serverConnection: ServerConnection? {
        get { storage.serverConnection }
        _modify { yield &mutableStorage.serverConnection }
    }
    /// Set once the connection has been upgraded to WebSocket: its messages and how it closed.
    public var websocket: WebSocketData? {
        get { storage.websocket }
        _modify { yield &mutableStorage.websocket }
    }
    /// `"request"` for a replayed request, `"response"` for a replayed response.
    public var isReplay: String? {
        get { storage.isReplay }
        _modify { yield &mutableStorage.isReplay }
    }
    public var marked: String {
        get { storage.marked }
        _modify { yield &mutableStorage.marked }
    }
    public var comment: String {
        get { storage.comment }
        _modify { yield &mutableStorage.comment }
    }
    public var timestampCreated: Double {
        get { storage.timestampCreated }
        _modify { yield &mutableStorage.timestampCreated }
    }
    /// Free-form data addons attach to the flow.
    public var metadata: [String: String] {
        get { storage.metadata }
        _modify { yield &mutableStorage.metadata }
    }
    /// mitmproxy's `flow.live`: the flow is passing through the proxy now, rather than read from a
    /// file. Addons that rewrite traffic (modify_headers, map_local, …) act on live flows only.
    /// Not saved to flow files.
    public var isLive: Bool {
        get { storage.isLive }
        _modify { yield &mutableStorage.isLive }
    }

    public init(
        request: HTTPRequest,
        clientConnection: ClientConnection,
        serverConnection: ServerConnection? = nil,
        isLive: Bool = false
    ) {
        self.storage = Storage(
            id: FlowID.fast(),
            request: request,
            clientConnection: clientConnection,
            serverConnection: serverConnection
        )
        self.storage.isLive = isLive
    }

    // MARK: - Storage

    private var storage: Storage

    private var mutableStorage: Storage {
        mutating get {
            if !isKnownUniquelyReferenced(&storage) {
                storage = storage.copy()
            }
            return storage
        }
    }

    /// Never mutated while shared (every mutation goes through `mutableStorage`, which copies a
    /// shared box first), which is what makes `@unchecked Sendable` sound.
    private final class Storage: @unchecked Sendable {
        var id: FlowID
        var request: HTTPRequest
        var response: HTTPResponse?
        var error: FlowError?
        var clientConnection: ClientConnection
        var serverConnection: ServerConnection?
        var websocket: WebSocketData?
        var isReplay: String?
        var marked = ""
        var comment = ""
        var timestampCreated: Double
        var metadata: [String: String] = [:]
        var isLive = false

        init(id: FlowID, request: HTTPRequest, clientConnection: ClientConnection, serverConnection: ServerConnection?) {
            self.id = id
            self.request = request
            self.clientConnection = clientConnection
            self.serverConnection = serverConnection
            self.timestampCreated = request.timestampStart
        }

        func copy() -> Storage {
            let copy = Storage(id: id, request: request, clientConnection: clientConnection, serverConnection: serverConnection)
            copy.response = response
            copy.error = error
            copy.websocket = websocket
            copy.isReplay = isReplay
            copy.marked = marked
            copy.comment = comment
            copy.timestampCreated = timestampCreated
            copy.metadata = metadata
            copy.isLive = isLive
            return copy
        }
    }

    public static func == (lhs: HTTPFlow, rhs: HTTPFlow) -> Bool {
        if lhs.storage === rhs.storage { return true }
        return lhs.id == rhs.id && lhs.request == rhs.request && lhs.response == rhs.response
            && lhs.error == rhs.error && lhs.clientConnection == rhs.clientConnection
            && lhs.serverConnection == rhs.serverConnection && lhs.websocket == rhs.websocket && lhs.isReplay == rhs.isReplay
            && lhs.marked == rhs.marked && lhs.comment == rhs.comment
            && lhs.timestampCreated == rhs.timestampCreated && lhs.metadata == rhs.metadata
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(id)
        hasher.combine(request)
        hasher.combine(response)
        hasher.combine(error)
    }
}

extension UUID {
    /// A random (version 4) UUID from a generator seeded once from the system, so making a flow
    /// does not cost a `getrandom` system call.
    public static func fast() -> UUID {
        var bytes = FastRandom.next128()
        return withUnsafeMutableBytes(of: &bytes) { raw in
            raw[6] = (raw[6] & 0x0F) | 0x40  // version 4
            raw[8] = (raw[8] & 0x3F) | 0x80  // RFC 4122 variant
            return UUID(uuid: raw.load(as: uuid_t.self))
        }
    }
}

/// xoshiro256** behind a lock, seeded from the system generator.
private enum FastRandom {
    private static let state = LockedState()

    static func next128() -> (UInt64, UInt64) {
        state.withLock { ($0.next(), $0.next()) }
    }

    private final class LockedState: @unchecked Sendable {
        private let lock = NSLock()
        private var generator = Xoshiro()

        func withLock<T>(_ body: (inout Xoshiro) -> T) -> T {
            lock.lock()
            defer { lock.unlock() }
            return body(&generator)
        }
    }

    private struct Xoshiro {
        var s: (UInt64, UInt64, UInt64, UInt64)

        init() {
            var system = SystemRandomNumberGenerator()
            s = (system.next(), system.next(), system.next(), system.next())
        }

        mutating func next() -> UInt64 {
            let result = rotl(s.1 &* 5, 7) &* 9
            let t = s.1 << 17
            s.2 ^= s.0
            s.3 ^= s.1
            s.1 ^= s.2
            s.0 ^= s.3
            s.2 ^= t
            s.3 = rotl(s.3, 45)
            return result
        }

        private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
    }
}
