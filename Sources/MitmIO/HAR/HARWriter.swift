import Foundation
import MitmCore
import NIOCore

/// Writes flows as a HAR 1.2 file, as mitmproxy 11's `savehar` addon does (`save.har` command,
/// `hardump` option; a `.zhar` path is zlib-compressed at level 9).
///
/// Each flow is one entry: `startedDateTime`, `time` (the sum of the non-negative timings),
/// `request` (method, URL, version, cookies, headers, queryString, headersSize, bodySize, and
/// `postData` for POST/PUT/PATCH), `response` (status, statusText, version, cookies, headers,
/// content with size/compression/mimeType/text — base64 with `encoding` when the body is mostly
/// binary —, redirectURL, headersSize, bodySize), `cache`, `timings` (connect and ssl only for the
/// first flow on a server connection), `serverIPAddress` when the server was reached, and
/// `connection` (the server connection's id; mitmproxy leaves that out), and for a WebSocket
/// connection `_resourceType` and `_webSocketMessages` as Chrome writes them. A flow without a response
/// gets mitmproxy's placeholder response (status 0, `_error` with the flow's error).
///
/// The JSON is laid out as Python's `json.dumps(…, indent=4)`: same key order, four spaces,
/// non-ASCII characters escaped.
public enum HARWriter {
    /// The `log.creator` written: mitmproxy's name and the mitmproxy version whose output we follow.
    public static let creatorName = "mitmproxy"
    public static let creatorVersion = "11.0.2"

    /// The HAR file for `flows`: JSON text, or zlib-compressed (`.zhar`) when `compressed`.
    public static func data(for flows: [HTTPFlow], compressed: Bool = false) throws -> Data {
        let text = Array(har(for: flows).serialized().utf8)
        guard compressed else { return Data(text) }
        let out = try ContentEncoding.encode(ByteBuffer(bytes: text), encoding: "deflate")
        return Data(out.readableBytesView)
    }

    /// The HAR document for `flows`.
    public static func har(for flows: [HTTPFlow]) -> HARJSON {
        var seen = Set<ConnectionID>()
        let entries = flows.map { entry(for: $0, serversSeen: &seen) }
        return .object([
            (
                "log",
                .object([
                    ("version", .string("1.2")),
                    (
                        "creator",
                        .object([
                            ("name", .string(creatorName)),
                            ("version", .string(creatorVersion)),
                            ("comment", .string("")),
                        ])
                    ),
                    ("pages", .array([])),
                    ("entries", .array(entries)),
                ])
            )
        ])
    }

    // MARK: - One entry

    static func entry(for flow: HTTPFlow, serversSeen: inout Set<ConnectionID>) -> HARJSON {
        var connect: HARJSON = .double(-1)
        var ssl: HARJSON = .double(-1)
        if let server = flow.serverConnection, !serversSeen.contains(server.id), let tcp = server.timestampTCPSetup {
            connect = .double(1000 * (tcp - (server.timestampStart ?? tcp)))
            if let tls = server.timestampTLSSetup { ssl = .double(1000 * (tls - tcp)) }
            serversSeen.insert(server.id)
        }
        let request = flow.request
        var send: HARJSON = .int(0)
        if let end = request.timestampEnd { send = .double(1000 * (end - request.timestampStart)) }
        var wait: HARJSON = .int(0)
        if let response = flow.response, let end = request.timestampEnd { wait = .double(1000 * (response.timestampStart - end)) }
        var receive: HARJSON = .int(0)
        if let response = flow.response, let end = response.timestampEnd { receive = .double(1000 * (end - response.timestampStart)) }
        let timings: [(String, HARJSON)] = [("connect", connect), ("ssl", ssl), ("send", send), ("receive", receive), ("wait", wait)]
        var totalInt = 0
        var totalDouble = 0.0
        var anyDouble = false
        for (_, v) in timings {
            switch v {
            case .int(let i) where i >= 0: totalInt += i
            case .double(let d) where d >= 0:
                totalDouble += d
                anyDouble = true
            default: break
            }
        }
        let time: HARJSON = anyDouble ? .double(Double(totalInt) + totalDouble) : .int(totalInt)

        let responseJSON: HARJSON
        if let response = flow.response {
            let raw = response.rawContent.map { Array($0.readableBytesView) } ?? []
            let decoded = decodedBody(response) ?? raw
            let contentType = response.headers["content-type"] ?? ""
            var content: [(String, HARJSON)] = [
                ("size", .int(raw.count)),
                ("compression", .int(decoded.count - raw.count)),
                ("mimeType", .string(contentType)),
            ]
            if !decoded.isEmpty, isMostlyBinary(decoded) {
                content.append(("text", .string(Data(decoded).base64EncodedString())))
                content.append(("encoding", .string("base64")))
            } else {
                content.append(("text", .string(decodeText(decoded, contentType: contentType))))
            }
            responseJSON = .object([
                ("status", .int(response.statusCode)),
                ("statusText", .string(response.reason)),
                ("httpVersion", .string(response.httpVersion)),
                ("cookies", .array(responseCookies(response.headers))),
                ("headers", pairs(response.headers.fields.map { ($0.name, $0.value) })),
                ("content", .object(content)),
                ("redirectURL", .string(response.headers["location"] ?? "")),
                ("headersSize", .int(headersSize(response.headers))),
                ("bodySize", .int(raw.count)),
            ])
        } else {
            responseJSON = .object([
                ("status", .int(0)),
                ("statusText", .string("")),
                ("httpVersion", .string("")),
                ("headers", .array([])),
                ("cookies", .array([])),
                ("content", .object([])),
                ("redirectURL", .string("")),
                ("headersSize", .int(-1)),
                ("bodySize", .int(-1)),
                ("_transferSize", .int(0)),
                ("_error", flow.error.map { .string($0.message) } ?? .null),
            ])
        }

        let url = request.method == "CONNECT" ? "https://\(request.prettyURL)/" : request.prettyURL
        let requestBody = decodedBody(request)
        var requestJSON: [(String, HARJSON)] = [
            ("method", .string(request.method)),
            ("url", .string(url)),
            ("httpVersion", .string(request.httpVersion)),
            ("cookies", pairs(requestCookies(request.headers))),
            ("headers", pairs(request.headers.fields.map { ($0.name, $0.value) })),
            ("queryString", pairs(FormURLEncoded.queryItems(ofPath: request.path))),
            ("headersSize", .int(headersSize(request.headers))),
            ("bodySize", .int(requestBody?.count ?? 0)),
        ]
        if ["POST", "PUT", "PATCH"].contains(request.method) {
            let contentType = request.headers["content-type"] ?? ""
            var params: [(String, String)] = []
            if let requestBody, contentType.lowercased().hasPrefix("application/x-www-form-urlencoded") {
                params = FormURLEncoded.decode(String(decoding: requestBody, as: UTF8.self))
            }
            requestJSON.append(
                (
                    "postData",
                    .object([
                        ("mimeType", .string(contentType)),
                        ("text", requestBody.map { .string(decodeText($0, contentType: contentType)) } ?? .null),
                        ("params", pairs(params)),
                    ])
                )
            )
        }

        var entry: [(String, HARJSON)] = [
            ("startedDateTime", .string(isoDate(request.timestampStart))),
            ("time", time),
            ("request", .object(requestJSON)),
            ("response", responseJSON),
            ("cache", .object([])),
            ("timings", .object(timings)),
        ]
        if let server = flow.serverConnection {
            if let peer = server.peername { entry.append(("serverIPAddress", .string(peer.host))) }
            entry.append(("connection", .string(server.id.description)))
        }
        if let websocket = flow.websocket {
            // Chrome's format for WebSocket frames, as mitmproxy writes it: text as text, binary as base64.
            let messages: [HARJSON] = websocket.messages.map { message in
                .object([
                    ("type", .string(message.fromClient ? "send" : "receive")),
                    ("time", .double(message.timestamp)),
                    ("opcode", .int(message.kind.rawValue)),
                    ("data", .string(message.isText ? message.text : Data(message.content.readableBytesView).base64EncodedString())),
                ])
            }
            entry.append(("_resourceType", .string("websocket")))
            entry.append(("_webSocketMessages", .array(messages)))
        }
        return .object(entry)
    }

    // MARK: - Pieces

    private static func pairs(_ items: [(String, String)]) -> HARJSON {
        .array(items.map { .object([("name", .string($0.0)), ("value", .string($0.1))]) })
    }

    /// The body with its content-encoding undone, or the raw body when that fails; nil without one.
    private static func decodedBody(_ message: some HTTPMessage) -> [UInt8]? {
        guard let raw = message.rawContent else { return nil }
        if let decoded = try? message.content() { return Array(decoded.readableBytesView) }
        return Array(raw.readableBytesView)
    }

    /// mitmproxy's `is_mostly_bin`: more than 30% of the first 100 bytes are control or non-ASCII bytes.
    static func isMostlyBinary(_ bytes: [UInt8]) -> Bool {
        let head = bytes.prefix(100)
        guard !head.isEmpty else { return false }
        let count = head.filter { $0 < 9 || (13 < $0 && $0 < 32) || 126 < $0 }.count
        return Double(count) / Double(head.count) > 0.3
    }

    /// Bytes as text in the charset the content type names (latin-1 by default), as mitmproxy's
    /// `get_text(strict=False)`; invalid UTF-8 becomes U+FFFD (Python keeps it as surrogates).
    static func decodeText(_ bytes: [UInt8], contentType: String) -> String {
        let latin1 = String(String.UnicodeScalarView(bytes.map { Unicode.Scalar($0) }))
        let charset = HARReader.inferCharset(contentType: contentType, content: latin1)
        return HARReader.isLatin1(charset) ? latin1 : String(decoding: bytes, as: UTF8.self)
    }

    /// The length of mitmproxy's `str(headers)`, which is `Headers[(b'name', b'value'), …]`.
    static func headersSize(_ headers: Headers) -> Int {
        var size = "Headers[]".count
        var first = true
        for field in headers {
            if !first { size += 2 }
            first = false
            size += 4 + pythonBytesReprLength(Array(field.name.utf8)) + pythonBytesReprLength(Array(field.value.utf8))
        }
        return size
    }

    private static func pythonBytesReprLength(_ bytes: [UInt8]) -> Int {
        let useDouble = bytes.contains(UInt8(ascii: "'")) && !bytes.contains(UInt8(ascii: "\""))
        var n = 3
        for b in bytes {
            switch b {
            case UInt8(ascii: "\\"), 0x09, 0x0A, 0x0D: n += 2
            case UInt8(ascii: "'"): n += useDouble ? 1 : 2
            case 0x20..<0x7F: n += 1
            default: n += 4
            }
        }
        return n
    }

    /// Python's `datetime.fromtimestamp(ts, timezone.utc).isoformat()`.
    static func isoDate(_ timestamp: Double) -> String {
        var micros = Int64((timestamp * 1_000_000).rounded(.toNearestOrEven))
        var seconds = micros >= 0 ? micros / 1_000_000 : (micros - 999_999) / 1_000_000
        micros -= seconds * 1_000_000
        let days = seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400
        seconds -= days * 86400
        let (year, month, day) = CivilDate.date(days: Int(days))
        var s = String(format: "%04lld-%02lld-%02lldT%02lld:%02lld:%02lld", year, month, day, seconds / 3600, seconds / 60 % 60, seconds % 60)
        if micros != 0 { s += String(format: ".%06lld", micros) }
        return s + "+00:00"
    }

    /// The `name=value` pairs of the Cookie headers.
    static func requestCookies(_ headers: Headers) -> [(String, String)] {
        var out: [(String, String)] = []
        for header in headers.values(for: "cookie") {
            for part in header.split(separator: ";") {
                let trimmed = part.trimmingCharacters(in: .whitespaces)
                if trimmed.isEmpty { continue }
                if let eq = trimmed.firstIndex(of: "=") {
                    out.append((String(trimmed[..<eq]).trimmingCharacters(in: .whitespaces), unquote(String(trimmed[trimmed.index(after: eq)...]).trimmingCharacters(in: .whitespaces))))
                } else {
                    out.append((trimmed, ""))
                }
            }
        }
        return out
    }

    private static func unquote(_ s: String) -> String {
        if s.count >= 2, s.hasPrefix("\""), s.hasSuffix("\"") { return String(s.dropFirst().dropLast()) }
        return s
    }

    /// The Set-Cookie headers as HAR cookies (name, value, path, domain, httpOnly, secure, sameSite).
    static func responseCookies(_ headers: Headers) -> [HARJSON] {
        var out: [HARJSON] = []
        for header in headers.values(for: "set-cookie") {
            let parts = header.split(separator: ";", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard let first = parts.first, let eq = first.firstIndex(of: "=") else { continue }
            let name = String(first[..<eq]).trimmingCharacters(in: .whitespaces)
            let value = unquote(String(first[first.index(after: eq)...]).trimmingCharacters(in: .whitespaces))
            var attrs: [(String, String)] = []
            for part in parts.dropFirst() where !part.isEmpty {
                if let e = part.firstIndex(of: "=") {
                    attrs.append((String(part[..<e]).trimmingCharacters(in: .whitespaces).lowercased(), String(part[part.index(after: e)...]).trimmingCharacters(in: .whitespaces)))
                } else {
                    attrs.append((part.lowercased(), ""))
                }
            }
            func attr(_ key: String) -> String? { attrs.first(where: { $0.0 == key })?.1 }
            var cookie: [(String, HARJSON)] = [
                ("name", .string(name)),
                ("value", .string(value)),
                ("path", .string(attr("path") ?? "/")),
                ("domain", .string(attr("domain") ?? "")),
                ("httpOnly", .bool(attr("httponly") != nil)),
                ("secure", .bool(attr("secure") != nil)),
            ]
            if let sameSite = attr("samesite") { cookie.append(("sameSite", .string(sameSite))) }
            out.append(.object(cookie))
        }
        return out
    }
}
