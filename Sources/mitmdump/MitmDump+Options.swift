import ArgumentParser
import Foundation
import MitmCore
import MitmOptions

extension MitmDump {
    /// The options, in mitmproxy's precedence: the defaults, then `config.yaml`, then the classic
    /// config files together with the flags (a flag given on the command line wins over the same
    /// flag in a file), then `--set`. Any bad value stops here, before anything starts.
    func loadOptions() throws -> Options {
        var options = Options()
        // The confdir says where the config files are, so it comes from the command line alone.
        let confdir = commandLineConfdir ?? options.proxy.confdir
        try ConfigYAML.load(confdir: confdir, into: &options)
        let entries = try ClassicConfig.load(confdir: confdir, tool: "mitmdump", extra: conf)
        var effective = self
        if !entries.isEmpty {
            for entry in entries where !entry.arguments.isEmpty {
                do {
                    _ = try MitmDump.parse(entry.arguments)
                } catch {
                    throw ConfigFileError(path: entry.path, line: entry.line, message: MitmDump.message(for: error))
                }
            }
            effective = try MitmDump.parse(entries.flatMap(\.arguments) + Array(CommandLine.arguments.dropFirst()))
        }
        try effective.applyFlags(to: &options)
        try options.apply(setArguments: effective.set)
        if effective.quiet {
            try options.update("flow_detail", .int(0))
            try options.update("termlog_verbosity", .string("error"))
        }
        try Self.checkListeners(options.proxy)
        return options
    }

    /// `--set confdir=…` or classic `--cadir`, the last one given.
    private var commandLineConfdir: String? {
        let fromSet = set.last { $0.hasPrefix("confdir=") }.map { String($0.dropFirst("confdir=".count)) }
        return fromSet ?? cadir
    }

    /// Each flag is an alias of an option (or, for the classic flags, of an option's value).
    private func applyFlags(to options: inout Options) throws(OptionError) {
        func update(_ name: String, _ value: OptionValue) throws(OptionError) {
            try options.update(name, value)
        }
        func append(_ name: String, _ items: [String]) throws(OptionError) {
            guard !items.isEmpty else { return }
            try update(name, .list(items))
        }
        func setIfGiven(_ name: String, _ flag: Bool?) throws(OptionError) {
            if let flag { try update(name, .bool(flag)) }
        }
        func setIfGiven(_ name: String, _ text: String?) throws(OptionError) {
            if let text { try update(name, .string(text)) }
        }

        var modes = mode
        if let reverse { modes.append("reverse:\(reverse)") }
        if let upstream { modes.append("upstream:\(upstream)") }
        if transparent { modes.append("transparent") }
        if socks { modes.append("socks5") }
        try append("mode", modes)
        try setIfGiven("listen_host", listenHost)
        if let port { try update("listen_port", .int(port)) }
        if noServerShort { try update("server", .bool(false)) }
        try setIfGiven("server", server)
        if keepserving { try update("keepserving", .bool(true)) }

        if nonanonymous { try update("proxyauth", .string("any")) }
        if let singleuser { try update("proxyauth", .string(singleuser)) }
        if let htpasswd { try update("proxyauth", .string("@" + htpasswd)) }
        try setIfGiven("proxyauth", proxyauth)
        try setIfGiven("upstream_auth", upstreamAuth)

        try append("ignore_hosts", ignoreHosts)
        try append("allow_hosts", allowHosts)
        try append("tcp_hosts", tcpHosts)
        try setIfGiven("rawtcp", classicRawTCP)
        try setIfGiven("rawtcp", rawtcp)
        try setIfGiven("show_ignored_hosts", showIgnoredHosts)
        try setIfGiven("http2", http2)
        try setIfGiven("stream_large_bodies", stream)
        try setIfGiven("body_size_limit", bodySizeLimit)
        if keepHostHeader { try update("keep_host_header", .bool(true)) }

        if sslInsecure { try update("ssl_insecure", .bool(true)) }
        try append("certs", certs)
        try setIfGiven("cert_passphrase", certPassphrase)
        try setIfGiven("upstream_cert", upstreamCert)

        if classicAnticomp { try update("anticomp", .bool(true)) }
        try setIfGiven("anticache", anticache)
        try setIfGiven("anticomp", anticomp)
        if classicShowhost { try update("showhost", .bool(true)) }
        try setIfGiven("showhost", showhost)
        try append("modify_headers", setheader + modifyHeaders)
        try append("modify_body", replace + replaceFromFile.map(Self.replacementFromFile) + modifyBody)
        try append("map_remote", mapRemote)
        try append("map_local", mapLocal)
        try setIfGiven("stickycookie", stickycookie)
        try setIfGiven("stickyauth", stickyauth)

        if noapp { try update("onboarding", .bool(false)) }
        try setIfGiven("onboarding_host", appHost)
        if let appPort { try update("onboarding_port", .int(appPort)) }

        try append("client_replay", clientReplay)
        try append("server_replay", serverReplay)
        if kill { try update("server_replay_extra", .string("kill")) }
        try setIfGiven("server_replay_kill_extra", serverReplayKillExtra)
        try setIfGiven("server_replay_extra", serverReplayExtra)
        if noPop { try update("server_replay_reuse", .bool(true)) }
        try setIfGiven("server_replay_reuse", serverReplayReuse)
        if norefresh { try update("server_replay_refresh", .bool(false)) }
        try setIfGiven("server_replay_refresh", serverReplayRefresh)
        try append("server_replay_use_headers", rheader)
        if replayIgnoreContent { try update("server_replay_ignore_content", .bool(true)) }
        try append("server_replay_ignore_params", replayIgnoreParam)
        try append("server_replay_ignore_payload_params", replayIgnorePayloadParam)
        if replayIgnoreHost { try update("server_replay_ignore_host", .bool(true)) }

        if let afile { try update("save_stream_file", .string("+" + afile)) }
        try setIfGiven("save_stream_file", saveStreamFile)
        try setIfGiven("rfile", rfile)
        try append("scripts", scripts)
        if !filter.isEmpty {
            // mitmproxy: the positional filter sets both what is shown and what is saved.
            let expression = filter.joined(separator: " ")
            try update("dumper_filter", .string(expression))
            try update("save_stream_filter", .string(expression))
        }
        if let flowDetail { try update("flow_detail", .int(flowDetail)) }
        if detail > 0 { try update("flow_detail", .int(min(4, options.flowDetail + detail))) }
        if verbose > 0 {
            try update("termlog_verbosity", .string("debug"))
            try update("flow_detail", .int(max(options.flowDetail, min(4, 1 + verbose))))
        }
    }

    /// Classic `--replace-from-file /filter/regex/path` is `modify_body`'s `/filter/regex/@path`.
    private static func replacementFromFile(_ spec: String) -> String {
        guard let separator = spec.first else { return spec }
        var parts = spec.dropFirst().split(separator: separator, maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
        guard let last = parts.last, !last.hasPrefix("@") else { return spec }
        parts[parts.count - 1] = "@" + last
        return String(separator) + parts.joined(separator: String(separator))
    }

    /// Two listeners on one address cannot both bind: say so before trying, naming the modes.
    static func checkListeners(_ options: ProxyOptions) throws(OptionError) {
        var seen: [String: ProxyModeSpec] = [:]
        for spec in options.modes {
            let host = spec.listenHost ?? options.listenHost
            let port = spec.listenPort ?? options.listenPort ?? spec.mode.defaultPort
            guard port != 0 else { continue }
            let key = "\(host):\(port)"
            if let other = seen[key] {
                throw OptionError.invalid(
                    "mode", "\(other.spec) \(spec.spec)",
                    "both listen on port \(port); give one of them another port, as in \(spec.spec)@\(port + 1)"
                )
            }
            seen[key] = spec
        }
        if options.proxyauth != nil, options.modes.contains(where: { $0.mode == .transparent }) {
            throw OptionError.invalid("proxyauth", options.proxyauth ?? "", "proxy authentication is not supported in transparent mode")
        }
    }
}
