import Foundation
import MitmCore
import NIOCore

/// A flow (HTTP, with its WebSocket messages, or TCP) as mitmproxy's state dictionary at flow
/// format version 21 (what mitmproxy 11's `Flow.get_state()` returns and its flow files hold), and
/// back.
///
/// Field mapping notes:
/// - Header names and values, methods, paths and bodies are bytes in the file; our model keeps
///   headers as `String`, so non-UTF-8 header bytes are decoded with replacement characters.
/// - Certificates are PEM in the file and DER in `TLSInfo.certificateChain`.
/// - `metadata` keeps only text values; the complete state stays available on `FlowRecord.state`.
public enum FlowState {
    /// The flow format version this module reads and writes (mitmproxy 11).
    public static let formatVersion = 21

    // MARK: Encoding

    /// The version-21 state of `flow`.
    public static func encode(_ flow: HTTPFlow) -> TNetDict {
        var state = encodeCommon(.http(flow))
        state["request"] = .dict(encode(flow.request))
        state["response"] = flow.response.map { .dict(encode($0)) } ?? .null
        state["websocket"] = flow.websocket.map { .dict(encode($0)) } ?? .null
        return state
    }

    /// The version-21 state of a TCP flow (mitmproxy 11's `TCPFlow.get_state()`).
    public static func encode(_ flow: TCPFlow) -> TNetDict {
        var state = encodeCommon(.tcp(flow))
        state["messages"] = .list(flow.messages.map {
            .list([.bool($0.fromClient), .bytes(Array($0.content.readableBytesView)), .float($0.timestamp)])
        })
        return state
    }

    /// The fields every flow type has (mitmproxy's `Flow.get_state()`).
    private static func encodeCommon(_ flow: Flow) -> TNetDict {
        // mitmproxy always has a server connection; an HTTP flow that never got one is given an
        // unconnected one for the request's host.
        let fallback = flow.httpFlow.map { Address(host: $0.request.host, port: $0.request.port) } ?? Address(host: "", port: 0)
        return [
            "id": .string(flow.id.uuidString.lowercased()),
            "error": flow.error.map(encode) ?? .null,
            "client_conn": .dict(encode(flow.clientConnection)),
            "server_conn": .dict(encode(flow.serverConnection, fallbackAddress: fallback)),
            "type": .string(flow.type),
            "intercepted": .bool(false),
            "is_replay": flow.isReplay.map { .string($0) } ?? .null,
            "marked": .string(flow.marked),
            "metadata": .dict(TNetDict(flow.metadata.sorted { $0.key < $1.key }.map { ($0.key, TNetValue.string($0.value)) })),
            "comment": .string(flow.comment),
            "timestamp_created": .float(flow.timestampCreated),
            "version": .int(formatVersion),
        ]
    }

    /// The version-21 state of any flow.
    public static func encode(_ flow: Flow) -> TNetDict {
        switch flow {
        case .http(let http): encode(http)
        case .tcp(let tcp): encode(tcp)
        }
    }

    /// mitmproxy's `WebSocketData` state.
    static func encode(_ websocket: WebSocketData) -> TNetDict {
        [
            "messages": .list(websocket.messages.map {
                .list([
                    .int($0.kind.rawValue), .bool($0.fromClient), .bytes(Array($0.content.readableBytesView)),
                    .float($0.timestamp), .bool($0.dropped), .bool($0.injected),
                ])
            }),
            "closed_by_client": websocket.closedByClient.map { .bool($0) } ?? .null,
            "close_code": websocket.closeCode.map { .int($0) } ?? .null,
            "close_reason": websocket.closeReason.map { .string($0) } ?? .null,
            "timestamp_end": websocket.timestampEnd.map { .float($0) } ?? .null,
        ]
    }

    /// The version-21 state of `flow`, keeping from `original` (the state it was read from) what our
    /// model does not hold: non-text metadata, the connections' `mitmcert`,
    /// `cipher_list`, `transport_protocol` and `via`, and IPv6 flow info/scope of peer addresses.
    public static func encode(_ flow: Flow, carryingOver original: TNetDict) -> TNetDict {
        var state = encode(flow)
        if case .dict(var metadata)? = original["metadata"] {
            for (key, value) in metadata.entries where value.text != nil && flow.metadata[key] == nil {
                metadata[key] = nil  // removed since it was read
            }
            for (key, value) in flow.metadata.sorted(by: { $0.key < $1.key }) { metadata[key] = .string(value) }
            state["metadata"] = .dict(metadata)
        }
        for conn in ["client_conn", "server_conn"] {
            guard case .dict(var ours)? = state[conn], case .dict(let theirs)? = original[conn] else { continue }
            for key in ["mitmcert", "cipher_list", "transport_protocol", "via"] {
                if let value = theirs[key] { ours[key] = value }
            }
            for key in ["peername", "sockname", "address"] {
                // Keep [host, port, flowinfo, scope_id] when host and port are unchanged.
                if let long = theirs[key]?.list, long.count > 2, let short = ours[key]?.list, Array(long.prefix(2)) == short {
                    ours[key] = theirs[key]
                }
            }
            if conn == "server_conn", theirs["address"] == .null, ours["address"] == encode(Address(host: "", port: 0)) {
                ours["address"] = .null
            }
            state[conn] = .dict(ours)
        }
        return state
    }

    static func encode(_ request: HTTPRequest) -> TNetDict {
        var state = encodeMessage(request)
        state["host"] = .string(request.host)
        state["port"] = .int(request.port)
        state["method"] = .bytes(Array(request.method.utf8))
        state["scheme"] = .bytes(Array(request.scheme.utf8))
        state["authority"] = .bytes(Array(request.authority.utf8))
        state["path"] = .bytes(Array(request.path.utf8))
        return state
    }

    static func encode(_ response: HTTPResponse) -> TNetDict {
        var state = encodeMessage(response)
        state["status_code"] = .int(response.statusCode)
        state["reason"] = .bytes(Array(response.reason.utf8))
        return state
    }

    /// The fields requests and responses share (mitmproxy's `Message` state).
    private static func encodeMessage(_ message: some HTTPMessage) -> TNetDict {
        [
            "http_version": .bytes(Array(message.httpVersion.utf8)),
            "headers": encode(message.headers),
            "content": message.rawContent.map { .bytes(Array($0.readableBytesView)) } ?? .null,
            "trailers": message.trailers.map(encode) ?? .null,
            "timestamp_start": .float(message.timestampStart),
            "timestamp_end": message.timestampEnd.map { .float($0) } ?? .null,
        ]
    }

    static func encode(_ headers: Headers) -> TNetValue {
        .list(headers.fields.map { .list([.bytes(Array($0.name.utf8)), .bytes(Array($0.value.utf8))]) })
    }

    static func encode(_ error: FlowError) -> TNetValue {
        .dict(["msg": .string(error.message), "timestamp": .float(error.timestamp)])
    }

    static func encode(_ address: Address?) -> TNetValue {
        address.map { .list([.string($0.host), .int($0.port)]) } ?? .null
    }

    static func encode(_ conn: ClientConnection) -> TNetDict {
        let tls = conn.tls
        return [
            "id": .string(conn.id.description),
            "peername": encode(conn.peername),
            "sockname": encode(conn.sockname),
            "error": conn.error.map { .string($0) } ?? .null,
            "tls": .bool(conn.tls != nil || conn.tlsAttempted),
            "certificate_list": .list((tls?.certificateChain ?? []).map { .bytes(PEM.encode($0)) }),
            "alpn": tls?.alpn.map { .bytes(Array($0.utf8)) } ?? .null,
            "cipher": tls?.cipher.map { .string($0) } ?? .null,
            "cipher_list": .list([]),
            "alpn_offers": .list((tls?.alpnOffers ?? []).map { .bytes(Array($0.utf8)) }),
            "tls_version": tls?.tlsVersion.map { .string($0) } ?? .null,
            "sni": tls?.sni.map { .string($0) } ?? .null,
            "timestamp_start": .float(conn.timestampStart),
            "timestamp_tls_setup": conn.timestampTLSSetup.map { .float($0) } ?? .null,
            "timestamp_end": conn.timestampEnd.map { .float($0) } ?? .null,
            "transport_protocol": .string("tcp"),
            "proxy_mode": .string(conn.proxyMode),
            "mitmcert": .null,
        ]
    }

    /// mitmproxy always has a server connection; a flow without one gets an unconnected one.
    static func encode(_ conn: ServerConnection?, fallbackAddress: Address) -> TNetDict {
        let conn = conn ?? ServerConnection(address: fallbackAddress, usesTLS: false)
        let tls = conn.tls
        return [
            "id": .string(conn.id.description),
            "peername": encode(conn.peername),
            "sockname": encode(conn.sockname),
            "error": conn.error.map { .string($0) } ?? .null,
            "tls": .bool(conn.usesTLS),
            "certificate_list": .list((tls?.certificateChain ?? []).map { .bytes(PEM.encode($0)) }),
            "alpn": tls?.alpn.map { .bytes(Array($0.utf8)) } ?? .null,
            "cipher": tls?.cipher.map { .string($0) } ?? .null,
            "cipher_list": .list([]),
            "alpn_offers": .list((tls?.alpnOffers ?? conn.alpnOffers).map { .bytes(Array($0.utf8)) }),
            "tls_version": tls?.tlsVersion.map { .string($0) } ?? .null,
            "sni": (conn.sni ?? tls?.sni).map { .string($0) } ?? .null,
            "timestamp_start": conn.timestampStart.map { .float($0) } ?? .null,
            "timestamp_tcp_setup": conn.timestampTCPSetup.map { .float($0) } ?? .null,
            "timestamp_tls_setup": conn.timestampTLSSetup.map { .float($0) } ?? .null,
            "timestamp_end": conn.timestampEnd.map { .float($0) } ?? .null,
            "address": encode(conn.address),
            "transport_protocol": .string("tcp"),
            "via": .null,
        ]
    }

    // MARK: Decoding

    /// The flow in a version-21 `http` state (see `FlowMigration.migrate` for older ones).
    public static func decode(_ state: TNetDict) throws(FlowStateError) -> HTTPFlow {
        let requestState = try state.dict("request")
        let request = try decodeRequest(requestState)
        let clientConn = try decodeClient(try state.dict("client_conn"))
        let serverConn = try state.optionalDict("server_conn").map { (s) throws(FlowStateError) in try decodeServer(s) }
        var flow = HTTPFlow(request: request, clientConnection: clientConn, serverConnection: serverConn)
        if let id = state["id"]?.text, let uuid = UUID(uuidString: id) { flow.id = uuid }
        if let response = try state.optionalDict("response") { flow.response = try decodeResponse(response) }
        if let websocket = try state.optionalDict("websocket") { flow.websocket = try decodeWebSocket(websocket) }
        _ = try state.optionalDict("error")
        let common = CommonFields(state)
        flow.error = common.error
        flow.isReplay = common.isReplay
        flow.marked = common.marked
        flow.comment = common.comment
        flow.metadata = common.metadata
        flow.timestampCreated = state["timestamp_created"]?.double ?? request.timestampStart
        return flow
    }

    /// The flow in a version-21 state of type `http` or `tcp`.
    public static func decodeFlow(_ state: TNetDict) throws(FlowStateError) -> Flow {
        switch state["type"]?.text {
        case "http": return .http(try decode(state))
        case "tcp": return .tcp(try decodeTCP(state))
        case let type: throw FlowStateError("\(type.map { "\($0) flows" } ?? "untyped flows") are not supported")
        }
    }

    /// The flow in a version-21 `tcp` state.
    public static func decodeTCP(_ state: TNetDict) throws(FlowStateError) -> TCPFlow {
        let client = try decodeClient(try state.dict("client_conn"))
        let server = try decodeServer(try state.dict("server_conn"))
        var flow = TCPFlow(clientConnection: client, serverConnection: server, timestampCreated: state["timestamp_created"]?.double ?? 0)
        if let id = state["id"]?.text, let uuid = UUID(uuidString: id) { flow.id = uuid }
        guard case .list(let messages)? = state["messages"] else { throw FlowStateError("tcp flow 'messages' is missing or not a list") }
        for item in messages {
            guard let fields = item.list, fields.count == 3, let fromClient = fields[0].boolValue, let content = fields[1].byteArray
            else { throw FlowStateError("tcp flow holds a message that is not [from_client, content, timestamp]") }
            flow.messages.append(TCPMessage(fromClient: fromClient, content: ByteBuffer(bytes: content), timestamp: fields[2].double ?? 0))
        }
        let common = CommonFields(state)
        (flow.error, flow.isReplay, flow.marked, flow.comment, flow.metadata) =
            (common.error, common.isReplay, common.marked, common.comment, common.metadata)
        return flow
    }

    static func decodeWebSocket(_ s: TNetDict) throws(FlowStateError) -> WebSocketData {
        var websocket = WebSocketData(
            closedByClient: s["closed_by_client"]?.boolValue,
            closeCode: s["close_code"]?.int,
            closeReason: s["close_reason"]?.text,
            timestampEnd: s["timestamp_end"]?.double
        )
        for item in s["messages"]?.list ?? [] {
            guard let fields = item.list, fields.count >= 4, let opcode = fields[0].int, let fromClient = fields[1].boolValue,
                let content = fields[2].byteArray
            else { throw FlowStateError("websocket holds a message that is not [type, from_client, content, timestamp, …]") }
            guard let kind = WebSocketMessage.Kind(rawValue: opcode) else {
                throw FlowStateError("websocket message type \(opcode) is not text (1) or binary (2)")
            }
            websocket.messages.append(
                WebSocketMessage(
                    kind: kind,
                    fromClient: fromClient,
                    content: ByteBuffer(bytes: content),
                    timestamp: fields[3].double ?? 0,
                    dropped: fields.count > 4 ? fields[4].boolValue ?? false : false,
                    injected: fields.count > 5 ? fields[5].boolValue ?? false : false
                )
            )
        }
        return websocket
    }

    /// The fields every flow type has (mitmproxy's `Flow` state).
    private struct CommonFields {
        var error: FlowError?
        var isReplay: String?
        var marked: String
        var comment: String
        var metadata: [String: String] = [:]

        init(_ state: TNetDict) {
            if case .dict(let e)? = state["error"] {
                error = FlowError(e["msg"]?.text ?? "", timestamp: e["timestamp"]?.double ?? 0)
            }
            isReplay = state["is_replay"]?.text
            marked = state["marked"]?.text ?? ""
            comment = state["comment"]?.text ?? ""
            if case .dict(let values)? = state["metadata"] {
                for (key, value) in values.entries {
                    if case .string(let s) = value { metadata[key] = s }
                }
            }
        }
    }

    static func decodeHeaders(_ value: TNetValue?, _ field: String) throws(FlowStateError) -> Headers {
        guard case .list(let items)? = value else { throw FlowStateError("\(field) is not a list of fields") }
        var headers = Headers()
        for item in items {
            guard case .list(let pair) = item, pair.count == 2, let name = pair[0].text, let value = pair[1].text else {
                throw FlowStateError("\(field) holds a field that is not a [name, value] pair")
            }
            headers.add(name, value)
        }
        return headers
    }

    static func decodeRequest(_ s: TNetDict) throws(FlowStateError) -> HTTPRequest {
        var request = HTTPRequest(
            method: try s.text("method", in: "request"),
            scheme: try s.text("scheme", in: "request"),
            host: try s.text("host", in: "request"),
            port: try s.int("port", in: "request"),
            authority: s["authority"]?.text ?? "",
            path: try s.text("path", in: "request"),
            httpVersion: try s.text("http_version", in: "request"),
            headers: try decodeHeaders(s["headers"], "request headers"),
            rawContent: s["content"]?.byteArray.map { ByteBuffer(bytes: $0) },
            timestampStart: s["timestamp_start"]?.double ?? 0
        )
        request.timestampEnd = s["timestamp_end"]?.double
        if let trailers = s["trailers"], trailers != .null { request.trailers = try decodeHeaders(trailers, "request trailers") }
        return request
    }

    static func decodeResponse(_ s: TNetDict) throws(FlowStateError) -> HTTPResponse {
        var response = HTTPResponse(
            httpVersion: try s.text("http_version", in: "response"),
            statusCode: try s.int("status_code", in: "response"),
            reason: s["reason"]?.text ?? "",
            headers: try decodeHeaders(s["headers"], "response headers"),
            rawContent: s["content"]?.byteArray.map { ByteBuffer(bytes: $0) },
            timestampStart: s["timestamp_start"]?.double ?? 0
        )
        response.timestampEnd = s["timestamp_end"]?.double
        if let trailers = s["trailers"], trailers != .null { response.trailers = try decodeHeaders(trailers, "response trailers") }
        return response
    }

    static func decodeAddress(_ value: TNetValue?) -> Address? {
        guard case .list(let items)? = value, items.count >= 2, let host = items[0].text, let port = items[1].int else { return nil }
        return Address(host: host, port: port)
    }

    static func decodeTLS(_ s: TNetDict) -> TLSInfo {
        TLSInfo(
            sni: s["sni"]?.text,
            alpn: s["alpn"]?.text,
            alpnOffers: s["alpn_offers"]?.list?.compactMap(\.text) ?? [],
            tlsVersion: s["tls_version"]?.text,
            cipher: s["cipher"]?.text,
            certificateChain: s["certificate_list"]?.list?.compactMap { $0.byteArray.flatMap(PEM.decode) } ?? []
        )
    }

    static func decodeClient(_ s: TNetDict) throws(FlowStateError) -> ClientConnection {
        var conn = ClientConnection(
            peername: decodeAddress(s["peername"]) ?? Address(host: "", port: 0),
            sockname: decodeAddress(s["sockname"]) ?? Address(host: "", port: 0),
            proxyMode: s["proxy_mode"]?.text ?? "regular",
            timestampStart: s["timestamp_start"]?.double ?? 0
        )
        if let id = s["id"]?.text, let uuid = UUID(uuidString: id) { conn.id = ConnectionID(uuid: uuid) }
        if s["tls"]?.boolValue == true {
            conn.tls = decodeTLS(s)
            conn.tlsAttempted = true
        }
        conn.timestampTLSSetup = s["timestamp_tls_setup"]?.double
        conn.timestampEnd = s["timestamp_end"]?.double
        conn.error = s["error"]?.text
        return conn
    }

    static func decodeServer(_ s: TNetDict) throws(FlowStateError) -> ServerConnection {
        let usesTLS = s["tls"]?.boolValue == true
        var conn = ServerConnection(
            address: decodeAddress(s["address"]) ?? Address(host: "", port: 0),
            usesTLS: usesTLS,
            sni: s["sni"]?.text,
            alpnOffers: s["alpn_offers"]?.list?.compactMap(\.text) ?? []
        )
        if let id = s["id"]?.text, let uuid = UUID(uuidString: id) { conn.id = ConnectionID(uuid: uuid) }
        conn.peername = decodeAddress(s["peername"])
        conn.sockname = decodeAddress(s["sockname"])
        if usesTLS {
            let tls = decodeTLS(s)
            if tls != TLSInfo(sni: tls.sni, alpnOffers: tls.alpnOffers) || s["timestamp_tls_setup"]?.double != nil {
                conn.tls = tls
            }
        }
        conn.timestampStart = s["timestamp_start"]?.double
        conn.timestampTCPSetup = s["timestamp_tcp_setup"]?.double
        conn.timestampTLSSetup = s["timestamp_tls_setup"]?.double
        conn.timestampEnd = s["timestamp_end"]?.double
        conn.error = s["error"]?.text
        return conn
    }
}

/// A flow state that does not describe a flow: the field and what is wrong with it.
public struct FlowStateError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

// MARK: - Value access helpers

extension TNetValue {
    /// Text for `.string`, and `.bytes` decoded as UTF-8 (invalid bytes replaced).
    public var text: String? {
        switch self {
        case .string(let s): s
        case .bytes(let b): String(decoding: b, as: UTF8.self)
        default: nil
        }
    }

    /// The bytes of `.bytes`, or the UTF-8 of `.string`.
    public var byteArray: [UInt8]? {
        switch self {
        case .bytes(let b): b
        case .string(let s): Array(s.utf8)
        default: nil
        }
    }

    public var int: Int? {
        switch self {
        case .int(let i): i
        case .float(let d) where d.rounded() == d && abs(d) < 1e18: Int(d)
        default: nil
        }
    }

    public var double: Double? {
        switch self {
        case .float(let d): d
        case .int(let i): Double(i)
        default: nil
        }
    }

    public var boolValue: Bool? {
        switch self {
        case .bool(let b): b
        case .int(let i): i != 0
        default: nil
        }
    }

    public var list: [TNetValue]? {
        if case .list(let l) = self { return l }
        return nil
    }

    public var dictValue: TNetDict? {
        if case .dict(let d) = self { return d }
        return nil
    }
}

extension TNetDict {
    init(_ pairs: [(String, TNetValue)]) {
        self.init()
        for (key, value) in pairs { self[key] = value }
    }

    func dict(_ key: String) throws(FlowStateError) -> TNetDict {
        guard case .dict(let d)? = self[key] else { throw FlowStateError("'\(key)' is missing or not a dictionary") }
        return d
    }

    func optionalDict(_ key: String) throws(FlowStateError) -> TNetDict? {
        switch self[key] {
        case nil, .null?: return nil
        case .dict(let d)?: return d
        default: throw FlowStateError("'\(key)' is not a dictionary")
        }
    }

    func text(_ key: String, in owner: String) throws(FlowStateError) -> String {
        guard let t = self[key]?.text else { throw FlowStateError("\(owner) '\(key)' is missing or not text") }
        return t
    }

    func int(_ key: String, in owner: String) throws(FlowStateError) -> Int {
        guard let i = self[key]?.int else { throw FlowStateError("\(owner) '\(key)' is missing or not an integer") }
        return i
    }
}

/// PEM (what mitmproxy stores) ⇄ DER (what our model keeps).
enum PEM {
    static func encode(_ der: [UInt8]) -> [UInt8] {
        let b64 = Data(der).base64EncodedString()
        var out = "-----BEGIN CERTIFICATE-----\n"
        var index = b64.startIndex
        while index < b64.endIndex {
            let end = b64.index(index, offsetBy: 64, limitedBy: b64.endIndex) ?? b64.endIndex
            out += b64[index..<end] + "\n"
            index = end
        }
        out += "-----END CERTIFICATE-----\n"
        return Array(out.utf8)
    }

    static func decode(_ pem: [UInt8]) -> [UInt8]? {
        let text = String(decoding: pem, as: UTF8.self)
        let body = text.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        return Data(base64Encoded: body.trimmingCharacters(in: .whitespacesAndNewlines)).map(Array.init)
    }
}
