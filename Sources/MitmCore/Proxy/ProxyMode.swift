import Foundation

/// How connections arriving at a listener are handled (mitmproxy's `proxy_mode` values). Modes are
/// values so that later modes (upstream, SOCKS5, transparent) slot in beside these.
public enum ProxyMode: Sendable, Hashable, CustomStringConvertible {
    /// An explicit HTTP proxy: absolute-form requests and CONNECT.
    case regular
    /// Everything goes to one server; clients talk to us as if we were it.
    case reverse(ReverseTarget)

    public struct ReverseTarget: Sendable, Hashable {
        /// `http` or `https`: how we talk to the server.
        public var scheme: String
        public var address: Address

        public var usesTLS: Bool { scheme == "https" }
    }

    /// Parses a `--mode` spec: `regular`, `reverse:http://host[:port]`, `reverse:https://host[:port]`.
    public init(parsing spec: String) throws(ProxyModeError) {
        let (name, data) = spec.split(separator: ":", maxSplits: 1).map(String.init).pairOrSingle
        switch name {
        case "regular":
            guard data == nil else { throw ProxyModeError(spec: spec, reason: "regular mode takes no argument") }
            self = .regular
        case "reverse":
            guard let data, !data.isEmpty else {
                throw ProxyModeError(spec: spec, reason: "reverse mode needs a server URL, as in reverse:https://example.com")
            }
            self = .reverse(try Self.parseReverseTarget(data, spec: spec))
        case "upstream", "socks5", "transparent", "wireguard", "local", "tun", "dns":
            throw ProxyModeError(spec: spec, reason: "\(name) mode is not supported yet")
        default:
            throw ProxyModeError(spec: spec, reason: "unknown mode '\(name)'; expected regular or reverse:URL")
        }
    }

    private static func parseReverseTarget(_ url: String, spec: String) throws(ProxyModeError) -> ReverseTarget {
        var rest = Substring(url)
        var scheme = "https"
        if let range = rest.range(of: "://") {
            scheme = rest[..<range.lowerBound].lowercased()
            rest = rest[range.upperBound...]
        }
        guard scheme == "http" || scheme == "https" else {
            throw ProxyModeError(spec: spec, reason: "unsupported scheme '\(scheme)' (expected http or https)")
        }
        if let slash = rest.firstIndex(of: "/") {
            // mitmproxy ignores a path; so do we, but only a bare "/".
            guard rest[slash...] == "/" else {
                throw ProxyModeError(spec: spec, reason: "a reverse proxy URL takes no path")
            }
            rest = rest[..<slash]
        }
        guard let authority = Authority(parsing: String(rest)) else {
            throw ProxyModeError(spec: spec, reason: "invalid host or port in '\(rest)'")
        }
        let port = authority.port ?? HTTPRequest.defaultPort(for: scheme)
        return ReverseTarget(scheme: scheme, address: Address(host: authority.host, port: port))
    }

    /// The spec this mode was parsed from, normalized.
    public var description: String {
        switch self {
        case .regular:
            return "regular"
        case .reverse(let target):
            let request = HTTPRequest(method: "GET", scheme: target.scheme, host: target.address.host, port: target.address.port, path: "/")
            return "reverse:\(target.scheme)://\(request.hostHeaderValue)"
        }
    }
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
