import Foundation

/// The options the proxy core and server read, with mitmproxy's names in the doc comments. Options
/// that belong to one addon (`flow_detail`, …) live with that addon.
public struct ProxyOptions: Sendable, Hashable {
    /// `listen_host`: the address to bind; empty means every interface.
    public var listenHost: String = ""
    /// `listen_port`: `nil` means each mode's default (8080; 1080 for SOCKS5), as in mitmproxy.
    public var listenPort: Int? = nil
    /// `mode`: one listener serves each (`--mode` is repeatable; `@port` picks a listener's port).
    public var modes: [ProxyModeSpec] = [ProxyModeSpec(.regular)]
    /// `upstream_auth`: `user:pass` sent as Proxy-Authorization to the upstream proxy (or as the
    /// SOCKS5 username and password).
    public var upstreamAuth: String? = nil
    /// `proxyauth`: require proxy authentication — `user:pass`, `@htpasswd-path` or `any`.
    public var proxyauth: String? = nil
    /// `connection_strategy`: `eager` connects to the server as soon as the client names it (on
    /// CONNECT, in the SOCKS5 handshake), so an unreachable server gets the protocol's own error
    /// answer; `lazy` waits for the first request.
    public var connectionStrategy: ConnectionStrategy = .eager
    /// `anticache`: strip the headers that allow 304 answers (`AntiCache` addon).
    public var anticache: Bool = false
    /// `anticomp`: ask servers for uncompressed bodies (`AntiComp` addon).
    public var anticomp: Bool = false
    /// `confdir`: where the CA lives.
    public var confdir: String = "~/.mitmproxy"
    /// `upstream_cert`: connect to the server first and copy its certificate's names into ours.
    public var upstreamCert: Bool = true
    /// `ssl_insecure`: do not verify upstream certificates.
    public var sslInsecure: Bool = false
    /// `http2`: offer and accept HTTP/2.
    public var http2: Bool = true
    /// `keep_host_header`: in reverse mode, forward the client's Host header unchanged.
    public var keepHostHeader: Bool = false
    /// `certs`: user certificates, `[domain=]path.pem`.
    public var certs: [String] = []
    /// `body_size_limit`: larger bodies are refused with 413 (requests) or 502 (responses).
    public var bodySizeLimit: Int? = nil
    /// `stream_large_bodies`: bodies larger than this are streamed rather than buffered on the flow.
    /// mitmproxy leaves this unset; we default to 16 MiB so a large download never sits in memory.
    public var streamLargeBodies: Int? = 16 * 1024 * 1024
    /// `header_size_limit` (ours): a request head larger than this is answered with 431.
    public var headerSizeLimit: Int = 64 * 1024
    /// `idle_timeout` (ours, seconds): close a connection with no traffic for this long.
    public var idleTimeout: Double = 600
    /// `request_head_timeout` (ours, seconds): a client must send a complete request head within this
    /// time of starting it, or it is answered with 408 (slowloris protection).
    public var requestHeadTimeout: Double = 30
    /// `connect_timeout` (ours, seconds) for connections to servers.
    public var connectTimeout: Double = 30
    /// `threads` (ours): event loop threads; `nil` means one per core.
    public var threads: Int? = nil
    /// `ignore_hosts`: regular expressions (Python `re` syntax, case-insensitive, searched anywhere)
    /// matched against `host:port` of a connection's server address, its IP address, its TLS SNI
    /// and an HTTP Host header; a match passes the connection through untouched.
    public var ignoreHosts: [String] = []
    /// `allow_hosts`: the opposite of `ignore_hosts`: a connection matching none of these is passed
    /// through untouched.
    public var allowHosts: [String] = []
    /// `tcp_hosts`: regular expressions matched against the server's host (or the TLS SNI): such
    /// connections are relayed as TCP flows (TLS is still intercepted).
    public var tcpHosts: [String] = []
    /// `rawtcp`: relay traffic that is neither HTTP nor TLS as a TCP flow.
    public var rawTCP: Bool = true
    /// `show_ignored_hosts`: record connections that `ignore_hosts`/`allow_hosts` pass through as
    /// TCP flows (still without TLS interception: the flow holds what went over the wire).
    public var showIgnoredHosts: Bool = false
    /// `onboarding`: serve the onboarding app (the CA certificate and how to install it) at
    /// `onboarding_host` (`Onboarding` addon).
    public var onboarding: Bool = true
    /// `onboarding_host`: the host the onboarding app answers for, through the proxy.
    public var onboardingHost: String = "mitm.it"
    /// `onboarding_port`: the port it answers on; `nil` means any port.
    public var onboardingPort: Int? = nil


    public init() {}

    /// Whether requests to `host`:`port` are answered by the onboarding app. The server needs this
    /// too: that host need not exist, so it is neither connected to on CONNECT (`eager`) nor asked
    /// for its certificate (`upstream_cert`).
    public func isOnboardingTarget(host: String, port: Int) -> Bool {
        onboarding && host.lowercased() == onboardingHost.lowercased() && (onboardingPort == nil || onboardingPort == port)
    }

    public enum ConnectionStrategy: String, Sendable, Hashable {
        case eager
        case lazy
    }
}

/// Parses mitmproxy's size syntax: `1024`, `10k`, `5m`, `1g` (binary multiples).
public func parseSize(_ text: String) -> Int? {
    let lower = text.trimmingCharacters(in: .whitespaces).lowercased()
    guard let last = lower.last else { return nil }
    let multipliers: [Character: Int] = ["b": 1, "k": 1024, "m": 1024 * 1024, "g": 1024 * 1024 * 1024, "t": 1024 * 1024 * 1024 * 1024]
    if let multiplier = multipliers[last] {
        guard let value = Int(lower.dropLast()), value >= 0 else { return nil }
        return value * multiplier
    }
    guard let value = Int(lower), value >= 0 else { return nil }
    return value
}
