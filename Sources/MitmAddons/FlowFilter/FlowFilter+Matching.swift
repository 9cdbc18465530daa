import Foundation
import MitmCore
import NIOCore

extension FlowFilter.Node {
    /// Evaluates the node against `flow` with mitmproxy 11's semantics: a filter about requests or
    /// responses is false for a TCP flow, one about bodies looks at TCP and WebSocket messages too.
    public func matches(_ flow: Flow) -> Bool {
        switch self {
        case .and(let items): return items.allSatisfy { $0.matches(flow) }
        case .or(let items): return items.contains { $0.matches(flow) }
        case .not(let inner): return !inner.matches(flow)
        case .flag(let flag): return flag.matches(flow)
        case .regex(let filter, let pattern): return filter.matches(flow, pattern)
        case .code(let code): return flow.httpFlow?.response?.statusCode == code
        }
    }

    public func matches(_ flow: HTTPFlow) -> Bool {
        matches(.http(flow))
    }
}

extension FlowFilter.Flag {
    func matches(_ flow: Flow) -> Bool {
        switch self {
        case .asset:
            guard let response = flow.httpFlow?.response else { return false }
            return FlowFilter.contentTypes(of: response).contains { value in
                Self.assetTypes.contains { value.contains($0) }
            }
        case .error: return flow.error != nil
        case .all: return true
        case .http: return flow.httpFlow != nil
        case .tcp: return flow.tcpFlow != nil
        case .websocket: return flow.httpFlow?.websocket != nil
        case .udp, .dns: return false
        case .marked: return !flow.marked.isEmpty
        case .replay: return flow.isReplay != nil
        case .replayRequest: return flow.isReplay == "request"
        case .replayResponse: return flow.isReplay == "response"
        case .request: return flow.httpFlow.map { $0.response == nil } ?? false
        case .response: return flow.httpFlow?.response != nil
        }
    }

    /// mitmproxy's asset content types; its patterns (`image/.*`, …) are unanchored searches, so
    /// each amounts to "contains this prefix".
    private static let assetTypes = [
        "text/javascript", "application/x-javascript", "application/javascript", "text/css",
        "image/", "font/", "application/font",
    ]
}

extension FlowFilter.RegexFilter {
    func matches(_ flow: Flow, _ pattern: FlowFilter.Pattern) -> Bool {
        switch self {
        case .body, .requestBody, .responseBody:
            return matchesBody(flow, pattern)
        case .source:
            let peer = flow.clientConnection.peername
            return pattern.search("\(peer.host):\(peer.port)")
        case .destination:
            guard let address = flow.serverConnection?.address else { return false }
            return pattern.search("\(address.host):\(address.port)")
        case .meta:
            let text = flow.metadata.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: "\n")
            return pattern.search(text)
        case .marker:
            return pattern.search(flow.marked)
        case .comment:
            return pattern.search(flow.comment)
        default:
            guard let http = flow.httpFlow else { return false }
            return matchesHTTP(http, pattern)
        }
    }

    /// `~b`, `~bq`, `~bs`: HTTP bodies and WebSocket messages, or TCP messages, from the side asked for.
    private func matchesBody(_ flow: Flow, _ pattern: FlowFilter.Pattern) -> Bool {
        let wantClient = self != .responseBody
        let wantServer = self != .requestBody
        func search(_ content: ByteBuffer, fromClient: Bool) -> Bool {
            (fromClient ? wantClient : wantServer) && pattern.search(String(buffer: content))
        }
        switch flow {
        case .http(let http):
            if wantClient, let text = FlowFilter.bodyText(http.request), pattern.search(text) { return true }
            if wantServer, let text = http.response.flatMap(FlowFilter.bodyText), pattern.search(text) { return true }
            return http.websocket?.messages.contains { search($0.content, fromClient: $0.fromClient) } ?? false
        case .tcp(let tcp):
            return tcp.messages.contains { search($0.content, fromClient: $0.fromClient) }
        }
    }

    private func matchesHTTP(_ flow: HTTPFlow, _ pattern: FlowFilter.Pattern) -> Bool {
        switch self {
        case .contentType:
            return FlowFilter.contentTypes(of: flow.request).contains(where: pattern.search)
                || (flow.response.map { FlowFilter.contentTypes(of: $0).contains(where: pattern.search) } ?? false)
        case .requestContentType:
            return FlowFilter.contentTypes(of: flow.request).contains(where: pattern.search)
        case .responseContentType:
            return flow.response.map { FlowFilter.contentTypes(of: $0).contains(where: pattern.search) } ?? false
        case .header:
            return pattern.search(FlowFilter.headerBlock(flow.request.headers))
                || (flow.response.map { pattern.search(FlowFilter.headerBlock($0.headers)) } ?? false)
        case .requestHeader:
            return pattern.search(FlowFilter.headerBlock(flow.request.headers))
        case .responseHeader:
            return flow.response.map { pattern.search(FlowFilter.headerBlock($0.headers)) } ?? false
        case .method:
            return pattern.search(flow.request.method)
        case .domain:
            return pattern.search(flow.request.host) || pattern.search(flow.request.prettyHost)
        case .url:
            return pattern.search(flow.request.prettyURL)
        case .body, .requestBody, .responseBody, .source, .destination, .meta, .marker, .comment:
            return false  // handled for every flow type in `matches(_:_:)`
        }
    }
}

extension FlowFilter {
    /// The decoded body as text, or the raw body when it does not decode (mitmproxy's
    /// `get_content(strict=False)`); `nil` without a body. Bytes that are not UTF-8 become U+FFFD.
    static func bodyText(_ message: some HTTPMessage) -> String? {
        guard let raw = message.rawContent else { return nil }
        let content = (try? message.content()) ?? raw
        return String(buffer: content)
    }

    /// The values of every Content-Type field.
    static func contentTypes(of message: some HTTPMessage) -> [String] {
        message.headers.values(for: "content-type")
    }

    /// The header fields as mitmproxy's `bytes(headers)`: `Name: value\r\n` per field, names in
    /// their original case; empty without fields.
    static func headerBlock(_ headers: Headers) -> String {
        var out = ""
        for field in headers {
            out += "\(field.name): \(field.value)\r\n"
        }
        return out
    }
}
