import NIOCore
import NIOHTTP1

/// An HTTP request as it crossed the proxy (mitmproxy's `http.Request`).
///
/// `host`, `port` and `scheme` name the server the request is for; `authority` is the request-target
/// authority (absolute form, CONNECT, or HTTP/2 `:authority`), empty for origin-form requests.
public struct HTTPRequest: Sendable, Hashable {
    public var method: String
    public var scheme: String
    public var host: String
    public var port: Int
    public var authority: String
    /// The path with query, as on the wire (`/index.html?x=1`); `*` or the authority for OPTIONS/CONNECT.
    public var path: String
    /// `HTTP/1.1`, `HTTP/2.0`, …
    public var httpVersion: String
    public var headers: Headers
    /// The body exactly as received (still content-encoded). `nil` while not read, or when streamed.
    public var rawContent: ByteBuffer?
    public var trailers: Headers?
    public var timestampStart: Double
    public var timestampEnd: Double?
    /// When true, the body is forwarded as it arrives instead of being buffered on the flow.
    public var stream: Bool

    public init(
        method: String,
        scheme: String,
        host: String,
        port: Int,
        authority: String = "",
        path: String,
        httpVersion: String = "HTTP/1.1",
        headers: Headers = Headers(),
        rawContent: ByteBuffer? = nil,
        timestampStart: Double = now()
    ) {
        self.method = method
        self.scheme = scheme
        self.host = host
        self.port = port
        self.authority = authority
        self.path = path
        self.httpVersion = httpVersion
        self.headers = headers
        self.rawContent = rawContent
        self.trailers = nil
        self.timestampStart = timestampStart
        self.timestampEnd = nil
        self.stream = false
    }

    /// The default port for `scheme`.
    public static func defaultPort(for scheme: String) -> Int {
        scheme == "https" || scheme == "wss" ? 443 : 80
    }

    /// `host[:port]`, with the port left out when it is the scheme's default.
    public var hostHeaderValue: String {
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return port == Self.defaultPort(for: scheme) ? hostPart : "\(hostPart):\(port)"
    }

    /// The full URL, built from scheme, host, port and path (mitmproxy's `request.url`); an
    /// asterisk-form target (`OPTIONS *`) adds no path.
    public var url: String {
        if method == "CONNECT" { return "\(host):\(port)" }
        return "\(scheme)://\(hostHeaderValue)\(urlPath)"
    }

    /// Like `url`, but naming the host the client asked for (mitmproxy 11's `pretty_url`), which is
    /// what a person wants to see in transparent and reverse mode, where `host` is only an address.
    ///
    /// - CONNECT: the `host:port` target (IPv6 in brackets).
    /// - Otherwise the host and port come from the client's host field: the Host header for HTTP/1,
    ///   the `:authority` (else the Host header) for HTTP/2 and HTTP/3. A missing port means the
    ///   scheme's default, and a default port is left out. A field that is not a valid `host[:port]`
    ///   is shown as it is. Without a host field this is `url`.
    ///
    /// Unlike mitmproxy, an IPv6 host keeps its brackets (`http://[::1]:8080/`), so the result stays a URL.
    /// Like mitmproxy, this trusts the client's field, which a client can spoof.
    public var prettyURL: String {
        if method == "CONNECT" {
            return Address(host: host, port: port).description
        }
        guard let field = clientHostField, !field.isEmpty else { return url }
        let hostPart: String
        let port: Int
        if let parsed = Authority(parsing: field) {
            hostPart = parsed.host.contains(":") ? "[\(parsed.host)]" : parsed.host
            port = parsed.port ?? Self.defaultPort(for: scheme)
        } else {
            hostPart = field
            port = Self.defaultPort(for: scheme)
        }
        let hostPort = port == Self.defaultPort(for: scheme) ? hostPart : "\(hostPart):\(port)"
        return "\(scheme)://\(hostPort)\(urlPath)"
    }

    /// The host the client named: the Host header, or for HTTP/2 and HTTP/3 the `:authority` first
    /// (mitmproxy's `host_header`).
    /// mitmproxy's `pretty_host`: the host the client named (the Host header; for HTTP/2 and 3 the
    /// `:authority` first) without its port, else ``host``. A field that is not a valid
    /// `host[:port]` is returned as it is.
    public var prettyHost: String {
        guard let field = clientHostField, !field.isEmpty else { return host }
        return Authority(parsing: field)?.host ?? field
    }

    private var clientHostField: String? {
        if isHTTP2 || httpVersion == "HTTP/3" {
            return authority.isEmpty ? headers["host"] : authority
        }
        return headers["host"]
    }

    /// The path as it appears in a URL: empty for an asterisk-form target.
    private var urlPath: String {
        path == "*" ? "" : path
    }

    /// Whether the message is an HTTP/2 one.
    public var isHTTP2: Bool { httpVersion == "HTTP/2.0" }
}
