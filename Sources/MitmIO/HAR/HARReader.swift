import Foundation
import MitmCore
import NIOCore

/// Reads HAR (HTTP Archive) files into flows, as mitmproxy 11 imports them (`mitmproxy.io.har`).
///
/// - The file is JSON (`.har`, `.json`), optionally behind a UTF-8 BOM, or zlib-compressed JSON
///   (`.zhar`, as `savehar` writes it); the kind is told by the content.
/// - Each `log.entries` item becomes one flow with a request and a response (mitmproxy makes a
///   response even for entries whose request never got one: status 0).
/// - The request is made from `method`, `url` (scheme, host, port and path), `headers` and
///   `postData.text` (base64-decoded when `postData.encoding` is `base64`, an addition to
///   mitmproxy); like mitmproxy's `Request.make`, it gets a `content-length` header.
/// - The response gets `status`, the standard reason for it (not `statusText`, as mitmproxy),
///   `headers`, and `content.text`: base64-decoded when `content.encoding` is `base64`, otherwise
///   encoded in the charset the content type names (latin-1 by default, UTF-8 when it does not
///   fit), then compressed with the response's own `content-encoding`, so `rawContent` is what
///   crossed the wire.
/// - `startedDateTime` is every start timestamp, and `startedDateTime + time` every end.
/// - `serverIPAddress` becomes the server connection's address (port 80 for `http://` URLs,
///   443 otherwise); without it the flow has no server connection.
/// - HTTP versions: `HTTP/2`/`http/2.0` read as `HTTP/2.0`, `HTTP/3` as `HTTP/3`, anything else
///   (`h3`, `http/1.1`, missing…) as `HTTP/1.1`. mitmproxy writes `HTTP/2` here; we keep our
///   model's `HTTP/2.0` so that `isHTTP2` holds.
///
/// mitmproxy rejects a whole file with one generic message when any entry is bad; so do we, but
/// the error says what is wrong and where (`entry 3: request.url is missing`).
public enum HARReader {
    /// Reads every entry of a HAR or zlib-compressed HAR file.
    public static func read(data: Data) throws(HARError) -> [HTTPFlow] {
        try read(data: [UInt8](data))
    }

    /// Reads every entry of a HAR or zlib-compressed HAR file.
    public static func read(data bytes: [UInt8]) throws(HARError) -> [HTTPFlow] {
        let json = try parse(bytes)
        guard case .object = json else {
            throw HARError(message: "the file is \(json.typeName), not a JSON object with a \"log\"")
        }
        guard let log = json["log"] else { throw HARError(location: "log", message: "is missing") }
        guard case .object = log else { throw HARError(location: "log", message: "must be an object, not \(log.typeName)") }
        guard let entries = log["entries"] else { throw HARError(location: "log.entries", message: "is missing") }
        guard case .array(let items) = entries else {
            throw HARError(location: "log.entries", message: "must be an array, not \(entries.typeName)")
        }
        var flows: [HTTPFlow] = []
        flows.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            flows.append(try flow(from: item, entry: i))
        }
        return flows
    }

    /// Whether `bytes` start like a zlib stream (as a `.zhar` file does) rather than JSON text.
    public static func isZlibCompressed(_ bytes: [UInt8]) -> Bool {
        guard bytes.count >= 2 else { return false }
        let cmf = UInt16(bytes[0])
        let flg = UInt16(bytes[1])
        return cmf & 0x0F == 8 && cmf >> 4 <= 7 && (cmf << 8 | flg) % 31 == 0
    }

    /// The HAR JSON of a file, decompressed first when it is a `.zhar`.
    public static func parse(_ bytes: [UInt8]) throws(HARError) -> HARJSON {
        var bytes = bytes
        if isZlibCompressed(bytes) {
            do {
                let out = try ContentEncoding.decode(ByteBuffer(bytes: bytes), encoding: "deflate")
                bytes = Array(out.readableBytesView)
            } catch {
                throw HARError(message: "the file looks zlib-compressed (.zhar) but does not decompress: \(error)")
            }
        }
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        let firstNonSpace = bytes.first(where: { ![0x20, 0x09, 0x0A, 0x0D].contains($0) })
        guard firstNonSpace == UInt8(ascii: "{") else {
            if firstNonSpace == nil { throw HARError(message: "the file is empty") }
            throw HARError(message: "not a HAR file: it does not start with a JSON object")
        }
        return try HARJSONParser.parse(bytes)
    }

    // MARK: - One entry

    private struct Entry {
        let index: Int
        func fail(_ path: String, _ message: String) -> HARError {
            HARError(location: "entry \(index)", message: "\(path) \(message)")
        }
    }

    private static func member(_ value: HARJSON, _ key: String, path: String, in e: Entry) throws(HARError) -> HARJSON {
        guard case .object = value else { throw e.fail(path, "must be an object, not \(value.typeName)") }
        guard let v = value[key] else { throw e.fail(path.isEmpty ? key : "\(path).\(key)", "is missing") }
        return v
    }

    private static func string(_ value: HARJSON, _ key: String, path: String, in e: Entry) throws(HARError) -> String {
        let v = try member(value, key, path: path, in: e)
        guard case .string(let s) = v else { throw e.fail("\(path).\(key)", "must be a string, not \(v.typeName)") }
        return s
    }

    private static func flow(from entry: HARJSON, entry index: Int) throws(HARError) -> HTTPFlow {
        let e = Entry(index: index)
        guard case .object = entry else { throw e.fail("the entry", "must be an object, not \(entry.typeName)") }

        let started = try member(entry, "startedDateTime", path: "", in: e)
        guard case .string(let startedText) = started else {
            throw e.fail("startedDateTime", "must be a string, not \(started.typeName)")
        }
        guard let timestampStart = parseISODate(startedText) else {
            throw e.fail("startedDateTime", "is not an ISO 8601 date: \"\(startedText)\"")
        }
        let time = try member(entry, "time", path: "", in: e)
        guard let milliseconds = time.number else { throw e.fail("time", "must be a number, not \(time.typeName)") }
        let timestampEnd = timestampStart + milliseconds / 1000

        guard let requestJSON = entry["request"] else { throw e.fail("request", "is missing") }
        guard case .object = requestJSON else { throw e.fail("request", "must be an object, not \(requestJSON.typeName)") }
        let method = try string(requestJSON, "method", path: "request", in: e)
        let url = try string(requestJSON, "url", path: "request", in: e)
        let requestHeaders = try headers(try member(requestJSON, "headers", path: "request", in: e), path: "request.headers", in: e)
        let requestVersion = requestJSON["httpVersion"]
        if requestVersion == nil { throw e.fail("request.httpVersion", "is missing") }

        guard let responseJSON = entry["response"] else { throw e.fail("response", "is missing") }
        guard case .object = responseJSON else { throw e.fail("response", "must be an object, not \(responseJSON.typeName)") }
        let responseVersion = responseJSON["httpVersion"]
        if responseVersion == nil { throw e.fail("response.httpVersion", "is missing") }

        var serverAddress: String?
        if case .string(let s) = entry["serverIPAddress"], !s.isEmpty { serverAddress = s }

        guard let target = HARURLParts(url) else { throw e.fail("request.url", "is not an absolute http(s) URL: \"\(url)\"") }

        var requestBody: [UInt8] = []
        var requestBodyIsText = true
        if let postData = requestJSON["postData"] {
            guard case .object = postData else { throw e.fail("request.postData", "must be an object, not \(postData.typeName)") }
            let text: String
            switch postData["text"] {
            case .string(let s): text = s
            case nil, .null: text = ""
            case let other?: throw e.fail("request.postData.text", "must be a string, not \(other.typeName)")
            }
            if case .string("base64") = postData["encoding"] {
                guard let decoded = Data(base64Encoded: text, options: .ignoreUnknownCharacters) else {
                    throw e.fail("request.postData.text", "is not valid base64")
                }
                requestBody = [UInt8](decoded)
                requestBodyIsText = false
            } else {
                requestBody = Array(text.utf8)
            }
        }

        var request = HTTPRequest(
            method: method,
            scheme: target.scheme,
            host: target.host,
            port: target.port,
            path: target.path,
            httpVersion: httpVersion(requestVersion),
            headers: requestHeaders,
            timestampStart: timestampStart
        )
        do {
            if requestBodyIsText {
                // mitmproxy sets the text in the charset the content type names.
                let text = String(decoding: requestBody, as: UTF8.self)
                requestBody = encodeText(text, contentType: requestHeaders["content-type"] ?? "")
            }
            try request.setContent(ByteBuffer(bytes: requestBody))
        } catch {
            throw e.fail("request.postData", "cannot be encoded as the request's content-encoding says: \(error)")
        }
        request.timestampEnd = timestampEnd

        let statusJSON = try member(responseJSON, "status", path: "response", in: e)
        guard let statusNumber = statusJSON.number, statusNumber == statusNumber.rounded(), abs(statusNumber) < 1e9 else {
            throw e.fail("response.status", "must be an integer, not \(statusJSON.typeName)")
        }
        let status = Int(statusNumber)
        let contentJSON = try member(responseJSON, "content", path: "response", in: e)
        guard case .object = contentJSON else { throw e.fail("response.content", "must be an object, not \(contentJSON.typeName)") }
        let responseHeaders = try headers(try member(responseJSON, "headers", path: "response", in: e), path: "response.headers", in: e)

        var contentEncodingName: String?
        switch contentJSON["encoding"] {
        case .string(let s): contentEncodingName = s
        case nil, .null: contentEncodingName = nil
        case let other?: throw e.fail("response.content.encoding", "must be a string, not \(other.typeName)")
        }
        let text: String
        switch contentJSON["text"] {
        case .string(let s): text = s
        case nil, .null: text = ""
        case let other?: throw e.fail("response.content.text", "must be a string, not \(other.typeName)")
        }
        var body: [UInt8]
        if contentEncodingName == "base64" {
            guard let decoded = Data(base64Encoded: text, options: .ignoreUnknownCharacters) else {
                throw e.fail("response.content.text", "is not valid base64")
            }
            body = [UInt8](decoded)
        } else if let name = contentEncodingName, !name.isEmpty {
            body = encodeText(text, charset: name)
        } else {
            body = encodeText(text, contentType: responseHeaders["content-type"] ?? "")
        }
        var rawBody = ByteBuffer(bytes: body)
        if let ce = responseHeaders["content-encoding"], !ce.isEmpty {
            do {
                rawBody = try ContentEncoding.encode(rawBody, contentEncodingHeader: ce)
            } catch {
                throw e.fail("response.content", "cannot be encoded as the response's content-encoding says: \(error)")
            }
        }

        var response = HTTPResponse(
            httpVersion: httpVersion(responseVersion),
            statusCode: status,
            reason: standardReason(status),
            headers: responseHeaders,
            rawContent: rawBody,
            timestampStart: timestampStart
        )
        response.timestampEnd = timestampEnd

        var client = ClientConnection(
            peername: Address(host: "127.0.0.1", port: 0),
            sockname: Address(host: "127.0.0.1", port: 0),
            proxyMode: "regular",
            timestampStart: timestampStart
        )
        client.timestampEnd = timestampEnd
        var server: ServerConnection?
        if let serverAddress {
            let port = url.hasPrefix("http://") ? 80 : 443
            server = ServerConnection(address: Address(host: serverAddress, port: port), usesTLS: port == 443)
        }
        var flow = HTTPFlow(request: request, clientConnection: client, serverConnection: server)
        flow.response = response
        flow.timestampCreated = timestampStart
        return flow
    }

    // MARK: - Pieces

    private static func headers(_ value: HARJSON, path: String, in e: Entry) throws(HARError) -> Headers {
        guard case .array(let items) = value else { throw e.fail(path, "must be an array, not \(value.typeName)") }
        var fields: [(String, String)] = []
        for (i, item) in items.enumerated() {
            switch item {
            case .object:
                // {"name": …, "value": …}: Chrome, Firefox, Safari, Edge, Charles, Fiddler, Insomnia.
                guard case .string(let name)? = item["name"] else { throw e.fail("\(path)[\(i)].name", "is missing or not a string") }
                guard case .string(let v)? = item["value"] else { throw e.fail("\(path)[\(i)].value", "is missing or not a string") }
                fields.append((name, v))
            case .array(let pair):
                // [name, value]: Slack.
                guard pair.count >= 2 else { throw e.fail("\(path)[\(i)]", "must be a [name, value] pair") }
                guard case .string(let name) = pair[0], case .string(let v) = pair[1] else {
                    throw e.fail("\(path)[\(i)]", "must hold two strings")
                }
                fields.append((name, v))
            default:
                throw e.fail("\(path)[\(i)]", "must be an object or a [name, value] pair, not \(item.typeName)")
            }
        }
        return Headers(fields)
    }

    private static func httpVersion(_ value: HARJSON?) -> String {
        switch value {
        case .string("http/2.0"), .string("HTTP/2"): "HTTP/2.0"
        case .string("HTTP/3"): "HTTP/3"
        default: "HTTP/1.1"
        }
    }

    /// The reason phrases mitmproxy 11 knows (`mitmproxy.net.http.status_codes.RESPONSES`); a HAR
    /// import gives these, not the file's `statusText`.
    static let mitmproxyReasons: [Int: String] = [
        100: "Continue",
        101: "Switching Protocols",
        102: "Processing",
        103: "Early Hints",
        200: "OK",
        201: "Created",
        202: "Accepted",
        203: "Non-Authoritative Information",
        204: "No Content",
        205: "Reset Content.",
        206: "Partial Content",
        207: "Multi-Status",
        300: "Multiple Choices",
        301: "Moved Permanently",
        302: "Found",
        303: "See Other",
        304: "Not Modified",
        305: "Use Proxy",
        307: "Temporary Redirect",
        400: "Bad Request",
        401: "Unauthorized",
        402: "Payment Required",
        403: "Forbidden",
        404: "Not Found",
        405: "Method Not Allowed",
        406: "Not Acceptable",
        407: "Proxy Authentication Required",
        408: "Request Time-out",
        409: "Conflict",
        410: "Gone",
        411: "Length Required",
        412: "Precondition Failed",
        413: "Payload Too Large",
        414: "Request-URI Too Long",
        415: "Unsupported Media Type",
        416: "Requested Range not satisfiable",
        417: "Expectation Failed",
        418: "I'm a teapot",
        422: "Unprocessable Content",
        444: "No Response",
        499: "Client Closed Request",
        500: "Internal Server Error",
        501: "Not Implemented",
        502: "Bad Gateway",
        503: "Service Unavailable",
        504: "Gateway Time-out",
        505: "HTTP Version not supported",
        507: "Insufficient Storage Space",
        510: "Not Extended",
    ]

    /// The standard reason phrase for a status as mitmproxy names it, empty for one it does not know.
    public static func standardReason(_ status: Int) -> String {
        mitmproxyReasons[status] ?? ""
    }

    /// Text as bytes in the charset the content type names (mitmproxy's `infer_content_encoding`):
    /// its `charset`, UTF-8 for JSON, a `<meta charset>` in HTML, `@charset` in CSS, else latin-1;
    /// UTF-8 when the text does not fit the charset.
    static func encodeText(_ text: String, contentType: String) -> [UInt8] {
        encodeText(text, charset: inferCharset(contentType: contentType, content: text))
    }

    /// mitmproxy's `infer_content_encoding`: the content type's `charset`, UTF-8 for JSON, a
    /// `<meta charset>` in HTML, `@charset` in CSS, else latin-1. `content` is the body as text
    /// (any decoding that keeps ASCII will do).
    static func inferCharset(contentType: String, content: String) -> String {
        let lower = contentType.lowercased()
        var charset: String?
        if let range = lower.range(of: "charset=") {
            var value = lower[range.upperBound...].prefix(while: { $0 != ";" }).trimmingCharacters(in: .whitespaces)
            value = value.trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
            if !value.isEmpty { charset = value }
        }
        if charset == nil, lower.contains("json") { charset = "utf8" }
        if charset == nil, lower.contains("html") {
            charset = metaCharset(content)
        }
        if charset == nil, lower.contains("text/css"), content.lowercased().hasPrefix("@charset \"") {
            let rest = content.dropFirst(10)
            if let end = rest.firstIndex(of: "\""), rest[end...].hasPrefix("\";") { charset = String(rest[..<end]) }
        }
        return charset ?? "latin-1"
    }

    static func isLatin1(_ charset: String) -> Bool {
        ["latin-1", "latin1", "iso-8859-1", "iso8859-1", "l1", "8859", "cp819"].contains(charset.lowercased().replacingOccurrences(of: "_", with: "-"))
    }

    private static func metaCharset(_ text: String) -> String? {
        let lower = text.lowercased()
        var search = lower.startIndex
        while let meta = lower.range(of: "<meta", range: search..<lower.endIndex) {
            let tagEnd = lower[meta.upperBound...].firstIndex(of: ">") ?? lower.endIndex
            if let cs = lower.range(of: "charset=", range: meta.upperBound..<tagEnd) {
                var rest = lower[cs.upperBound..<tagEnd]
                if rest.first == "\"" || rest.first == "'" { rest = rest.dropFirst() }
                let value = rest.prefix(while: { $0 != "\"" && $0 != "'" && $0 != ">" })
                if !value.isEmpty { return String(value) }
            }
            search = meta.upperBound
        }
        return nil
    }

    static func encodeText(_ text: String, charset: String) -> [UInt8] {
        if isLatin1(charset) {
            var out: [UInt8] = []
            out.reserveCapacity(text.utf8.count)
            for scalar in text.unicodeScalars {
                guard scalar.value < 256 else { return Array(text.utf8) }
                out.append(UInt8(scalar.value))
            }
            return out
        }
        // UTF-8, ASCII (a subset), and charsets we do not know (mitmproxy would use Python's codec).
        return Array(text.utf8)
    }

    /// Seconds since the epoch of an ISO 8601 date as HAR writes it (`2023-03-30T00:00:54.250Z`,
    /// `…+02:00`, `…+0200`, no zone = UTC, as Python's `fromisoformat` on a UTC machine).
    public static func parseISODate(_ text: String) -> Double? {
        let b = Array(text.utf8)
        var i = 0
        func num(_ count: Int) -> Int? {
            guard i + count <= b.count else { return nil }
            var v = 0
            for k in 0..<count {
                let c = b[i + k]
                guard c >= 0x30, c <= 0x39 else { return nil }
                v = v * 10 + Int(c - 0x30)
            }
            i += count
            return v
        }
        func expect(_ c: UInt8) -> Bool {
            guard i < b.count, b[i] == c else { return false }
            i += 1
            return true
        }
        guard let year = num(4), expect(UInt8(ascii: "-")), let month = num(2), expect(UInt8(ascii: "-")), let day = num(2) else {
            return nil
        }
        var hour = 0
        var minute = 0
        var second = 0
        var fraction = 0.0
        var offset = 0
        if i < b.count {
            guard b[i] == UInt8(ascii: "T") || b[i] == UInt8(ascii: " ") || b[i] == UInt8(ascii: "t") else { return nil }
            i += 1
            guard let h = num(2), expect(UInt8(ascii: ":")), let m = num(2) else { return nil }
            hour = h
            minute = m
            if expect(UInt8(ascii: ":")) {
                guard let s = num(2) else { return nil }
                second = s
                if i < b.count, b[i] == UInt8(ascii: ".") || b[i] == UInt8(ascii: ",") {
                    i += 1
                    var scale = 0.1
                    let start = i
                    while i < b.count, b[i] >= 0x30, b[i] <= 0x39 {
                        fraction += Double(b[i] - 0x30) * scale
                        scale /= 10
                        i += 1
                    }
                    if i == start { return nil }
                }
            }
            if i < b.count {
                if b[i] == UInt8(ascii: "Z") || b[i] == UInt8(ascii: "z") {
                    i += 1
                } else if b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
                    let sign = b[i] == UInt8(ascii: "-") ? -1 : 1
                    i += 1
                    guard let oh = num(2) else { return nil }
                    _ = expect(UInt8(ascii: ":"))
                    let om = num(2) ?? 0
                    offset = sign * (oh * 3600 + om * 60)
                } else {
                    return nil
                }
            }
            guard i == b.count else { return nil }
        }
        guard (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        let days = CivilDate.days(year: year, month: month, day: day)
        let seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset
        return Double(seconds) + fraction
    }
}

/// The parts of an absolute URL as mitmproxy's `Request.make` splits it.
struct HARURLParts {
    var scheme: String
    var host: String
    var port: Int
    var path: String

    init?(_ url: String) {
        guard let sep = url.range(of: "://") else { return nil }
        let scheme = url[..<sep.lowerBound].lowercased()
        guard !scheme.isEmpty, scheme.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "+" || $0 == "-" || $0 == "." }) else { return nil }
        let rest = url[sep.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        var authority = rest[..<authorityEnd]
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
        var pathPart = String(rest[authorityEnd...])
        if let hash = pathPart.firstIndex(of: "#") { pathPart = String(pathPart[..<hash]) }
        if pathPart.isEmpty || pathPart.first == "?" { pathPart = "/" + pathPart }
        var host: Substring
        var port: Int?
        if authority.first == "[" {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if after.first == ":" {
                guard let p = Int(after.dropFirst()), (0...65535).contains(p) else { return nil }
                port = p
            } else if !after.isEmpty {
                return nil
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            let p = authority[authority.index(after: colon)...]
            if !p.isEmpty {
                guard let n = Int(p), (0...65535).contains(n) else { return nil }
                port = n
            }
        } else {
            host = authority
        }
        guard !host.isEmpty else { return nil }
        self.scheme = scheme
        self.host = String(host)
        self.port = port ?? HTTPRequest.defaultPort(for: scheme)
        self.path = pathPart
    }
}
