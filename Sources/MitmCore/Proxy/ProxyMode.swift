import Foundation

/// How connections arriving at a listener are handled (mitmproxy's `proxy_mode` values).
public enum ProxyMode: Sendable, Hashable, CustomStringConvertible {
    /// An explicit HTTP proxy: absolute-form requests and CONNECT.
    case regular
    /// Clients don't know about us: a firewall rule redirected their connections, and the original
    /// destination is read from the socket (Linux `SO_ORIGINAL_DST`).
    case transparent
    /// A SOCKS5 proxy (RFC 1928); what flows through it is handled as after a CONNECT.
    case socks5
    /// A regular proxy that sends everything on through another proxy.
    case upstream(UpstreamProxy)
    /// Everything goes to one server; clients talk to us as if we were it.
    case reverse(ReverseTarget)

    public struct ReverseTarget: Sendable, Hashable {
        /// `http` or `https`: how we talk to the server.
        public var scheme: String
        public var address: Address

        public init(scheme: String, address: Address) {
            self.scheme = scheme
            self.address = address
        }

        public var usesTLS: Bool { scheme == "https" }
    }

    /// The proxy that upstream mode sends everything through.
    public struct UpstreamProxy: Sendable, Hashable {
        public enum Scheme: String, Sendable, Hashable {
            /// An HTTP proxy: plain requests in absolute form, everything else through CONNECT.
            case http
            /// The same, with TLS to the proxy.
            case https
            /// A SOCKS5 proxy: every server connection is opened through it (mitmproxy #211).
            case socks5
        }

        public var scheme: Scheme
        public var address: Address

        public init(scheme: Scheme, address: Address) {
            self.scheme = scheme
            self.address = address
        }
    }

    /// Parses a mode without its listen address: `regular`, `transparent`, `socks5`,
    /// `upstream:[http|https|socks5://]host[:port]`, `reverse:[http|https://]host[:port]`. Mode names
    /// are case-insensitive, as in mitmproxy.
    public init(parsing spec: String) throws(ProxyModeError) {
        let (rawName, data) = spec.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            .map(String.init).pairOrSingle
        let name = rawName.lowercased()
        func noArgument(_ mode: ProxyMode) throws(ProxyModeError) -> ProxyMode {
            guard data == nil else { throw ProxyModeError(spec: spec, reason: "\(name) mode takes no argument") }
            return mode
        }
        switch name {
        case "regular":
            self = try noArgument(.regular)
        case "transparent":
            self = try noArgument(.transparent)
        case "socks5":
            self = try noArgument(.socks5)
        case "upstream":
            guard let data, !data.isEmpty else {
                throw ProxyModeError(spec: spec, reason: "upstream mode needs a proxy URL, as in upstream:http://proxy.example:8080")
            }
            let (scheme, address) = try Self.parseServerSpec(data, defaultScheme: "http", schemes: ["http", "https", "socks5"], spec: spec)
            self = .upstream(UpstreamProxy(scheme: UpstreamProxy.Scheme(rawValue: scheme) ?? .http, address: address))
        case "reverse":
            guard let data, !data.isEmpty else {
                throw ProxyModeError(spec: spec, reason: "reverse mode needs a server URL, as in reverse:https://example.com")
            }
            let (scheme, address) = try Self.parseServerSpec(data, defaultScheme: "https", schemes: ["http", "https"], spec: spec)
            self = .reverse(ReverseTarget(scheme: scheme, address: address))
        case "wireguard", "local", "tun", "dns":
            throw ProxyModeError(spec: spec, reason: "\(name) mode is not supported")
        default:
            throw ProxyModeError(
                spec: spec,
                reason: "unknown mode '\(rawName)'; expected regular, transparent, socks5, upstream:URL or reverse:URL"
            )
        }
    }

    /// `[scheme://]host[:port][/]`, as mitmproxy's `server_spec.parse`: the port defaults by scheme.
    private static func parseServerSpec(
        _ url: String,
        defaultScheme: String,
        schemes: [String],
        spec: String
    ) throws(ProxyModeError) -> (String, Address) {
        var rest = Substring(url)
        var scheme = defaultScheme
        if let range = rest.range(of: "://") {
            scheme = rest[..<range.lowerBound].lowercased()
            rest = rest[range.upperBound...]
        }
        guard schemes.contains(scheme) else {
            let expected = schemes.dropLast().joined(separator: ", ") + " or " + schemes.last!
            throw ProxyModeError(spec: spec, reason: "unsupported scheme '\(scheme)' (expected \(expected))")
        }
        if let slash = rest.firstIndex(of: "/") {
            // mitmproxy ignores a path; so do we, but only a bare "/".
            guard rest[slash...] == "/" else {
                throw ProxyModeError(spec: spec, reason: "a proxy or server URL takes no path")
            }
            rest = rest[..<slash]
        }
        guard let authority = Authority(parsing: String(rest)) else {
            throw ProxyModeError(spec: spec, reason: "invalid host or port in '\(rest)'")
        }
        let port = authority.port ?? (scheme == "socks5" ? 1080 : HTTPRequest.defaultPort(for: scheme))
        return (scheme, Address(host: authority.host, port: port))
    }

    /// The spec this mode was parsed from, normalized.
    public var description: String {
        switch self {
        case .regular:
            return "regular"
        case .transparent:
            return "transparent"
        case .socks5:
            return "socks5"
        case .upstream(let proxy):
            return "upstream:\(proxy.scheme.rawValue)://\(proxy.address)"
        case .reverse(let target):
            let request = HTTPRequest(method: "GET", scheme: target.scheme, host: target.address.host, port: target.address.port, path: "/")
            return "reverse:\(target.scheme)://\(request.hostHeaderValue)"
        }
    }

    /// How mitmproxy names a listener of this mode in its start-up line.
    public var listenerDescription: String {
        switch self {
        case .regular: "HTTP(S) proxy"
        case .transparent: "Transparent proxy"
        case .socks5: "SOCKS v5 proxy"
        case .upstream: "HTTP(S) proxy (upstream mode)"
        case .reverse: "Reverse proxy to \(description.dropFirst("reverse:".count))"
        }
    }

    /// The port a listener of this mode binds when neither the spec nor `listen_port` says.
    public var defaultPort: Int {
        if case .socks5 = self { return 1080 }
        return 8080
    }
}

/// One `--mode` value: the mode and, after `@`, where its listener binds (mitmproxy 11's
/// `mode[:data][@[host:]port]`, e.g. `socks5@1080`, `reverse:https://example.com@127.0.0.1:8443`).
public struct ProxyModeSpec: Sendable, Hashable, CustomStringConvertible {
    public var mode: ProxyMode
    /// The listen address from the spec; `nil` means `listen_host`.
    public var listenHost: String?
    /// The port from the spec; `nil` means `listen_port`, or the mode's default port.
    public var listenPort: Int?
    /// The spec as the user wrote it: what flows record as their client's `proxy_mode`.
    public var spec: String

    public init(_ mode: ProxyMode, listenHost: String? = nil, listenPort: Int? = nil) {
        self.mode = mode
        self.listenHost = listenHost
        self.listenPort = listenPort
        var spec = mode.description
        if let listenPort {
            spec += "@" + (listenHost.map { (($0.contains(":") ? "[\($0)]" : $0)) + ":" } ?? "") + String(listenPort)
        }
        self.spec = spec
    }

    public init(parsing spec: String) throws(ProxyModeError) {
        var head = Substring(spec)
        var host: String?
        var port: Int?
        if let at = spec.lastIndex(of: "@") {
            head = spec[..<at]
            let listenAt = spec[spec.index(after: at)...]
            var portText = listenAt
            if let colon = listenAt.lastIndex(of: ":") {
                var hostText = listenAt[..<colon]
                if hostText.hasPrefix("[") && hostText.hasSuffix("]") { hostText = hostText.dropFirst().dropLast() }
                host = String(hostText)
                portText = listenAt[listenAt.index(after: colon)...]
            }
            guard let value = Int(portText), (0...65535).contains(value) else {
                throw ProxyModeError(spec: spec, reason: "invalid port '\(portText)'")
            }
            port = value
        }
        do throws(ProxyModeError) {
            self.mode = try ProxyMode(parsing: String(head))
        } catch {
            throw ProxyModeError(spec: spec, reason: error.reason)
        }
        self.listenHost = host
        self.listenPort = port
        self.spec = spec
    }

    public var description: String { spec }
}

/// A `--mode` value that could not be parsed.
public struct ProxyModeError: Error, Hashable, CustomStringConvertible {
    public var spec: String
    public var reason: String
    public var description: String { "invalid proxy mode '\(spec)': \(reason)" }
}

/// `host[:port]` as found in a request target, a Host header or a URL, IPv6 in brackets.
public struct Authority: Sendable, Hashable {
    public var host: String
    public var port: Int?

    public init?(parsing text: String) {
        var host = Substring(text)
        var port: Int?
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return nil }
            let after = host[host.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = Int(after.dropFirst()), (0...65535).contains(p) else { return nil }
                port = p
            } else if !after.isEmpty {
                return nil
            }
            host = host[host.index(after: host.startIndex)..<close]
        } else if let colon = host.lastIndex(of: ":") {
            guard !host[..<colon].contains(":") else { return nil }
            guard let p = Int(host[host.index(after: colon)...]), (0...65535).contains(p) else { return nil }
            port = p
            host = host[..<colon]
        }
        guard !host.isEmpty, !host.contains(where: { $0 == " " || $0 == "/" || $0 == "@" }) else { return nil }
        self.host = String(host)
        self.port = port
    }
}

extension Array where Element == String {
    fileprivate var pairOrSingle: (String, String?) {
        (self.first ?? "", self.count > 1 ? self[1] : nil)
    }
}
