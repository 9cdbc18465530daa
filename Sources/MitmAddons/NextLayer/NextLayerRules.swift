import MitmCore
import NIOCore

/// Which layer comes next for a connection: mitmproxy's `NextLayer` addon (`addons/next_layer.py`)
/// for the options `ignore_hosts`, `allow_hosts`, `tcp_hosts` and `rawtcp`. Pure: the proxy hands in
/// what it knows (the server address, the bytes the client sent so far, the TLS details) and wires
/// handlers by the answer.
///
/// mitmproxy's order, which we keep:
///
/// ```
/// 1. ignore_hosts / allow_hosts  ─► ignore: pass through, no TLS interception, no flow
/// 2. a TLS ClientHello           ─► intercept TLS, then decide again on the decrypted stream
/// 3. tcp_hosts                   ─► TCP flow
/// 4. an ALPN of HTTP             ─► HTTP
/// 5. not HTTP and rawtcp         ─► TCP flow;  otherwise HTTP (whose parser reports the error)
/// ```
public struct NextLayerRules: Sendable, Hashable {
    public let ignoreHosts: HostPatterns
    public let allowHosts: HostPatterns
    public let tcpHosts: HostPatterns
    public let rawTCP: Bool

    /// Compiles the options' patterns; a bad one throws an error naming its option.
    public init(options: ProxyOptions) throws(HostPatternError) {
        ignoreHosts = try HostPatterns(option: "ignore_hosts", options.ignoreHosts)
        allowHosts = try HostPatterns(option: "allow_hosts", options.allowHosts)
        tcpHosts = try HostPatterns(option: "tcp_hosts", options.tcpHosts)
        rawTCP = options.rawTCP
    }

    /// What to do with a tunnel (regular mode after CONNECT) or a reverse-mode connection, judged by
    /// the client's first bytes.
    public enum Decision: Sendable, Hashable {
        /// The bytes so far fit more than one answer.
        case needMoreData
        /// `ignore_hosts`/`allow_hosts` say: relay byte for byte, no interception, no flow.
        case ignore
        /// Intercept TLS; decide again (``decideAfterClientTLS(server:sni:alpn:inTunnel:)``) once the
        /// handshake is done.
        case tls(ClientHello)
        /// The bytes start like TLS but are no ClientHello we can read; the string says why.
        case malformedTLS(String)
        case http1
        /// HTTP/2 with prior knowledge (the connection preface).
        case http2
        /// A TCP flow: `tcp_hosts` matched, or the bytes are not HTTP and `rawtcp` is on.
        case tcp
        /// Not HTTP, not TLS, and no rule makes it a TCP flow (reverse mode): the caller's default.
        case unrecognized
    }

    /// Decides from `firstBytes` (all bytes the client has sent so far) for a connection to
    /// `server`. `inTunnel` is true in a CONNECT tunnel, where `tcp_hosts` and `rawtcp` apply; in
    /// reverse mode only the ignore rules do (mitmproxy derives the rest from the mode there).
    public func decide(firstBytes: ByteBuffer, server: Address?, inTunnel: Bool) -> Decision {
        let verdict = ProtocolSniffer.sniff(firstBytes)
        if verdict == .needMoreData { return .needMoreData }
        var hello: ClientHello.ParseResult?
        if verdict == .tls {
            hello = ClientHello.parse(firstBytes)
            if hello == .needMoreData { return .needMoreData }
        }
        if hasIgnoreRules, let server {
            // mitmproxy writes `host:port` without brackets, IPv6 included.
            var hostnames = ["\(server.host):\(server.port)"]
            if case .clientHello(let parsed) = hello, let sni = parsed.serverName {
                hostnames.append("\(sni):\(server.port)")
            }
            if verdict == .http1 {
                switch Self.hostHeader(firstBytes) {
                case .needMoreData: return .needMoreData
                case .found(let host): hostnames.append(Self.withPort(host, server.port))
                case .absent: break
                }
            }
            if ignores(hostnames: hostnames) { return .ignore }
        }
        switch verdict {
        case .tls:
            switch hello {
            case .clientHello(let parsed): return .tls(parsed)
            case .malformed(let reason): return .malformedTLS(reason)
            case .notTLS, .needMoreData, nil: return .malformedTLS("not TLS")
            }
        case .needMoreData:
            return .needMoreData
        case .http1, .http2Preface, .unknown:
            break
        }
        if inTunnel, let server, tcpHosts.matches(server.host) {
            return .tcp
        }
        switch verdict {
        case .http1: return .http1
        case .http2Preface: return .http2
        case .unknown, .tls, .needMoreData:
            guard inTunnel else { return .unrecognized }
            return rawTCP ? .tcp : .http1
        }
    }

    /// What runs inside intercepted TLS.
    public enum AfterTLS: Sendable, Hashable {
        case http1
        case http2
        case tcp
        /// The ALPN does not say: decide on the first decrypted bytes (``decideDecrypted(_:)``).
        case peek
    }

    /// Decides after the client handshake: `tcp_hosts` (matched against the server's host and the
    /// client's SNI) first, then the negotiated ALPN. Outside a tunnel (reverse mode) it is HTTP.
    public func decideAfterClientTLS(server: Address?, sni: String?, alpn: String?, inTunnel: Bool) -> AfterTLS {
        guard inTunnel else { return alpn == "h2" ? .http2 : .http1 }
        if let server, tcpHosts.matches(server.host) { return .tcp }
        if let sni, tcpHosts.matches(sni) { return .tcp }
        switch alpn {
        case "h2": return .http2
        case "http/1.1", "http/1.0", "http/0.9": return .http1
        default: return .peek
        }
    }

    /// Decides on the first decrypted bytes when the ALPN did not tell: HTTP if they look like it,
    /// else a TCP flow when `rawtcp` is on, else HTTP.
    public func decideDecrypted(_ firstBytes: ByteBuffer) -> Decision {
        switch ProtocolSniffer.sniff(firstBytes) {
        case .needMoreData: return .needMoreData
        case .http1: return .http1
        case .http2Preface: return .http2
        case .tls, .unknown: return rawTCP ? .tcp : .http1
        }
    }

    // MARK: - ignore_hosts and allow_hosts

    /// Whether either ignore option is set.
    public var hasIgnoreRules: Bool { !ignoreHosts.isEmpty || !allowHosts.isEmpty }

    /// mitmproxy's `_ignore_connection`: ignored when `allow_hosts` is set and matches none of
    /// `hostnames`, or when `ignore_hosts` matches any. `hostnames` are `host:port` strings: the
    /// server address, the SNI and the Host header, each with the server's port.
    public func ignores(hostnames: [String]) -> Bool {
        guard !hostnames.isEmpty else { return false }
        if !allowHosts.isEmpty, !allowHosts.matchesAny(hostnames) { return true }
        if !ignoreHosts.isEmpty, ignoreHosts.matchesAny(hostnames) { return true }
        return false
    }

    /// `host:port`, with `port` added when `host` does not end in one (mitmproxy's `:\d+$` test).
    static func withPort(_ host: String, _ port: Int) -> String {
        if let colon = host.lastIndex(of: ":"), host.index(after: colon) < host.endIndex,
            host[host.index(after: colon)...].allSatisfy(\.isASCIIDigit)
        {
            return host
        }
        return "\(host):\(port)"
    }

    enum HostHeader: Equatable {
        case needMoreData
        case found(String)
        case absent
    }

    /// The Host header of a request head in `bytes` (mitmproxy's `_get_host_header`): the first
    /// `Host:` line, `absent` when the head ends first, `needMoreData` while neither has arrived.
    static func hostHeader(_ bytes: ByteBuffer) -> HostHeader {
        let view = bytes.readableBytesView
        var lineStart = view.startIndex
        var isFirstLine = true
        var index = view.startIndex
        while index < view.endIndex {
            if view[index] == UInt8(ascii: "\n") {
                var lineEnd = index
                if lineEnd > lineStart, view[view.index(before: lineEnd)] == UInt8(ascii: "\r") {
                    lineEnd = view.index(before: lineEnd)
                }
                let line = view[lineStart..<lineEnd]
                if !isFirstLine {
                    if line.isEmpty { return .absent }
                    let text = String(decoding: line, as: UTF8.self)
                    if text.count > 5, text.prefix(5).lowercased() == "host:", text.dropFirst(5).first?.isWhitespace == true {
                        let value = text.dropFirst(5).trimmingWhitespace()
                        return value.isEmpty ? .absent : .found(value)
                    }
                }
                isFirstLine = false
                lineStart = view.index(after: index)
            }
            index = view.index(after: index)
        }
        return .needMoreData
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> String {
        String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}
