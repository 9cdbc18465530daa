import Foundation

/// Brings flow states written by older mitmproxy versions (0.11 onwards) to format version 21.
///
/// mitmproxy migrates one version at a time. We reach the same result in one pass: every field
/// rename, type change and default that those steps introduce is applied by looking at what the
/// state holds (old keys win only where the new key is absent), which keeps the code small.
/// Version checks are still exact: only the versions mitmproxy 11.0.2 accepts are accepted.
public enum FlowMigration {
    /// A flow format version as written: `[0, 11, 3]`-style lists up to 3.0, integers from 4 on.
    public enum Version: Sendable, Hashable, CustomStringConvertible {
        case legacy(Int, Int)
        case numbered(Int)

        public var description: String {
            switch self {
            case .legacy(let major, let minor): "(\(major), \(minor))"
            case .numbered(let n): String(n)
            }
        }

        /// Whether mitmproxy 11.0.2 can read (and migrate) this version.
        public var isSupported: Bool {
            switch self {
            case .legacy(0, let minor): (11...19).contains(minor)
            case .legacy(let major, 0): (1...3).contains(major)
            case .legacy: false
            case .numbered(let n): (4...FlowState.formatVersion).contains(n)
            }
        }
    }

    /// The state's version, or an error when it has none.
    public static func version(of state: TNetDict) throws(FlowStateError) -> Version {
        switch state["version"] {
        case .int(let n)?: return .numbered(n)
        case .list(let parts)? where parts.count >= 2:
            guard let major = parts[0].int, let minor = parts[1].int else { break }
            return .legacy(major, minor)
        default: break
        }
        throw FlowStateError("the flow has no valid 'version' field")
    }

    /// The version-21 form of `state`, or an error in mitmproxy's words for a version it refuses.
    public static func migrate(_ state: TNetDict) throws(FlowStateError) -> TNetDict {
        let version = try version(of: state)
        guard version.isSupported else {
            var message = "swift-mitmproxy (like mitmproxy 11) cannot read files with flow format version \(version)"
            if case .numbered(let n) = version, n > FlowState.formatVersion { message += ", please update" }
            throw FlowStateError(message + ".")
        }
        if version == .numbered(FlowState.formatVersion) { return state }
        var s = state
        if case .bytes(let b)? = s["type"] { s["type"] = .string(String(decoding: b, as: UTF8.self)) }
        if case .bytes(let b)? = s["id"] { s["id"] = .string(String(decoding: b, as: UTF8.self)) }
        if case .dict(var error)? = s["error"], case .bytes(let b)? = error["msg"] {
            error["msg"] = .string(String(decoding: b, as: UTF8.self))
            s["error"] = .dict(error)
        }

        // Replay flags moved from the messages to the flow (version 9).
        var replay: TNetValue = s["is_replay"] ?? .null
        if case .dict(var request)? = s["request"] {
            if s["is_replay"] == nil, request["is_replay"]?.boolValue == true { replay = .string("request") }
            request = migrateRequest(request)
            s["request"] = .dict(request)
        }
        if case .dict(var response)? = s["response"] {
            if s["is_replay"] == nil, replay == .null, response["is_replay"]?.boolValue == true { replay = .string("response") }
            response = migrateResponse(response, requestEnd: s["request"]?.dictValue?["timestamp_end"]?.double)
            s["response"] = .dict(response)
        }
        s["is_replay"] = replay
        let before10: Bool = if case .numbered(let n) = version { n < 10 } else { true }
        if case .dict(let c)? = s["client_conn"] { s["client_conn"] = .dict(migrateConnection(c, client: true, before10: before10)) }
        if case .dict(let c)? = s["server_conn"] { s["server_conn"] = .dict(migrateConnection(c, client: false, before10: before10)) }

        switch s["marked"] {
        case .bool(let marked)?: s["marked"] = .string(marked ? ":default:" : "")
        case nil: s["marked"] = .string("")
        default: break
        }
        if s["metadata"] == nil { s["metadata"] = .dict([:]) }
        if s["comment"] == nil { s["comment"] = .string("") }
        if s["websocket"] == nil, s["type"]?.text == "http" { s["websocket"] = .null }
        let before15: Bool = if case .numbered(let n) = version { n < 15 } else { true }
        if before15, case .dict(var ws)? = s["websocket"], let messages = ws["messages"]?.list {
            // Version 15 added a "dropped" flag to every message.
            ws["messages"] = .list(messages.map { if case .list(let parts) = $0 { .list(parts + [.bool(false)]) } else { $0 } })
            s["websocket"] = .dict(ws)
        }
        if s["timestamp_created"] == nil {
            let source = s["request"]?.dictValue ?? s["client_conn"]?.dictValue
            s["timestamp_created"] = source?["timestamp_start"] ?? .float(0)
        }
        s["mode"] = nil
        s["version"] = .int(FlowState.formatVersion)
        return s
    }

    static func migrateRequest(_ r: TNetDict) -> TNetDict {
        var r = r
        if r["http_version"] == nil, let parts = r["httpversion"]?.list {
            r["http_version"] = .bytes(Array(("HTTP/" + parts.map { String($0.int ?? 0) }.joined(separator: ".")).utf8))
        }
        r.rename("body", to: "content")
        for old in ["httpversion", "form_in", "form_out", "first_line_format", "is_replay", "stickyauth", "stickycookie"] { r[old] = nil }
        if r["authority"] == nil { r["authority"] = .bytes([]) }
        if r["trailers"] == nil { r["trailers"] = .null }
        return r
    }

    static func migrateResponse(_ r: TNetDict, requestEnd: Double?) -> TNetDict {
        var r = r
        if r["http_version"] == nil, let parts = r["httpversion"]?.list {
            r["http_version"] = .bytes(Array(("HTTP/" + parts.map { String($0.int ?? 0) }.joined(separator: ".")).utf8))
        }
        r.rename("code", to: "status_code")
        r.rename("msg", to: "reason")
        r.rename("body", to: "content")
        for old in ["httpversion", "is_replay"] { r[old] = nil }
        if r["trailers"] == nil { r["trailers"] = .null }
        if r["timestamp_start"] == nil || r["timestamp_start"] == .null, let requestEnd {
            r["timestamp_start"] = .float(requestEnd)
            r["timestamp_end"] = .float(requestEnd + 1)
        }
        return r
    }

    /// `{"address": [host, port], "use_ipv6": …}` (before 2.0) or `[host, port, …]` (IPv6 may add
    /// flow info and scope id), as a list with a text host.
    static func address(_ value: TNetValue?) -> TNetValue {
        var value = value ?? .null
        if case .dict(let d) = value { value = d["address"] ?? .null }
        guard case .list(let parts) = value, parts.count >= 2, let host = parts[0].text else { return .null }
        return .list([.string(host)] + parts.dropFirst())
    }

    static func migrateConnection(_ c: TNetDict, client: Bool, before10: Bool) -> TNetDict {
        var c = c
        if before10 {
            // Version 10 derived the offered ALPNs and the cipher list from the negotiated ones
            // (and dropped the server side's cipher).
            if !client { c["cipher_name"] = .null }
            let alpn = c["alpn_proto_negotiated"] ?? .null
            let cipher = c["cipher_name"] ?? .null
            c["alpn_offers"] = .list(alpn == .null || alpn.byteArray == [] ? [] : [alpn])
            c["cipher_list"] = .list(cipher == .null || cipher.byteArray == [] ? [] : [cipher])
        }
        if client {
            if c["peername"] == nil { c["peername"] = address(c["address"]); c["address"] = nil }
            if c["sockname"] == nil { c["sockname"] = .list([.string(""), .int(0)]) }
            if c["proxy_mode"] == nil { c["proxy_mode"] = .string("regular") }
            if c["timestamp_start"] == nil || c["timestamp_start"] == .null { c["timestamp_start"] = .float(0) }
            if c["certificate_list"] == nil {
                let cert = c["clientcert"] ?? .null
                c["certificate_list"] = .list(cert == .null ? [] : [cert])
            }
            for old in ["clientcert", "tls_extensions"] { c[old] = nil }
        } else {
            c["address"] = address(c["address"])
            if c["peername"] == nil { c["peername"] = address(c["ip_address"]) }
            if c["sockname"] == nil { c["sockname"] = address(c["source_address"]) }
            if c["certificate_list"] == nil {
                let cert = c["cert"] ?? .null
                c["certificate_list"] = .list(cert == .null ? [] : [cert])
            }
            if c["sni"] == .bool(true) { c["sni"] = c["address"]?.list?.first ?? .null }
            c["via"] = .null  // upstream proxy chains are not kept
            for old in ["ip_address", "source_address", "cert", "via2", "peer_address"] { c[old] = nil }
        }
        if c["tls"] == nil { c["tls"] = c["tls_established"] ?? c["ssl_established"] ?? .bool(false) }
        c.rename("timestamp_ssl_setup", to: "timestamp_tls_setup")
        c.rename("alpn_proto_negotiated", to: "alpn")
        c.rename("cipher_name", to: "cipher")
        if case .bytes(let sni)? = c["sni"] { c["sni"] = .string(String(decoding: sni, as: UTF8.self)) }
        for key in ["alpn_offers", "cipher_list"] where c[key] == nil || c[key] == .null { c[key] = .list([]) }
        if c["tls_version"] == .string("QUIC") { c["tls_version"] = .string("QUICv1") }
        if c["id"] == nil { c["id"] = .string(UUID().uuidString.lowercased()) }
        if c["transport_protocol"] == nil { c["transport_protocol"] = .string("tcp") }
        for old in ["ssl_established", "tls_established", "state", "use_ipv6"] { c[old] = nil }
        for key in ["error", "timestamp_end", "timestamp_tls_setup", "sni", "alpn", "cipher", "tls_version"] where c[key] == nil {
            c[key] = .null
        }
        return c
    }

    /// mitmproxy before format 12 kept WebSocket messages in a separate `websocket` flow pointing at
    /// its handshake flow. Like mitmproxy, we turn it into a copy of the handshake flow carrying the
    /// messages (marked in metadata as possibly duplicated), or a placeholder flow without the handshake.
    static func mergeWebSocket(_ ws: TNetDict, handshake: TNetDict?) -> TNetDict {
        var flow: TNetDict
        if let handshake {
            flow = handshake
        } else {
            flow = [
                "client_conn": ws["client_conn"] ?? .null, "error": ws["error"] ?? .null, "id": ws["id"] ?? .null,
                "intercepted": ws["intercepted"] ?? .bool(false), "is_replay": ws["is_replay"] ?? .null,
                "marked": ws["marked"] ?? .bool(false), "metadata": .dict([:]),
                "request": .dict([
                    "authority": .bytes([]), "content": .null, "headers": .list([]), "host": .bytes(Array("unknown".utf8)),
                    "http_version": .bytes(Array("HTTP/1.1".utf8)), "method": .bytes(Array("GET".utf8)),
                    "path": .bytes(Array("/".utf8)), "port": .int(80), "scheme": .bytes(Array("http".utf8)),
                    "timestamp_end": .int(0), "timestamp_start": .int(0), "trailers": .null,
                ]),
                "response": .null, "server_conn": ws["server_conn"] ?? .null, "type": .string("http"), "version": .int(12),
            ]
        }
        var metadata = flow["metadata"]?.dictValue ?? [:]
        metadata["duplicated"] = .string("This WebSocket flow has been migrated from an old file format version and may appear duplicated.")
        flow["metadata"] = .dict(metadata)
        flow["websocket"] = .dict([
            "messages": ws["messages"] ?? .list([]),
            "closed_by_client": .bool(ws["close_sender"]?.text == "client"),
            "close_code": ws["close_code"] ?? .null,
            "close_reason": ws["close_reason"] ?? .null,
            "timestamp_end": flow["server_conn"]?.dictValue?["timestamp_end"] ?? .null,
        ])
        return flow
    }
}

extension TNetDict {
    fileprivate mutating func rename(_ old: String, to new: String) {
        guard let value = self[old] else { return }
        if self[new] == nil { self[new] = value }
        self[old] = nil
    }
}
