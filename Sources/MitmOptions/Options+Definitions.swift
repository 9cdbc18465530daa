import MitmAddons
import MitmCore

extension Options {
    /// Every option, sorted by name as `--options` lists them. mitmproxy 11's options are all
    /// here, under its names, with their defaults; the few it has that this build lacks are marked.
    /// Options of ours that mitmproxy does not have say so in their help.
    public static let definitions: [OptionDefinition] = (proxyDefinitions + connectionDefinitions
        + frontEndDefinitions + addonDefinitions + replayDefinitions + notImplementedDefinitions)
        .sorted { $0.name < $1.name }

    // MARK: - The proxy server

    private static let proxyDefinitions: [OptionDefinition] = [
        .string("listen_host", \.proxy.listenHost, "The address the proxy listens on; empty means every interface."),
        .optionalInt(
            "listen_port", \.proxy.listenPort, range: 0...65535,
            "The port the proxy listens on. Unset, each mode uses its usual port: 8080, or 1080 for socks5."
        ),
        OptionDefinition(
            name: "mode", kind: .sequence,
            help: """
                The proxy modes, one listener each: regular, transparent, socks5, upstream:URL, reverse:URL. \
                Each may end with @port or @host:port to choose where that listener listens.
                """,
            read: { .list($0.proxy.modes.map(\.spec)) },
            write: { options, value in
                guard case .list(let specs) = value else { return }
                var modes: [ProxyModeSpec] = []
                for spec in specs {
                    do { modes.append(try ProxyModeSpec(parsing: spec)) } catch {
                        throw OptionValueError("'\(spec)': \(error)")
                    }
                }
                options.proxy.modes = modes.isEmpty ? [ProxyModeSpec(.regular)] : modes
            }
        ),
        .choice(
            "connection_strategy", \.connectionStrategyName, ["eager", "lazy"],
            "When to connect to the server: eager connects as soon as the client names it (CONNECT, SOCKS), so failures get the protocol's own answer; lazy waits for the first request."
        ),
        .optionalString(
            "proxyauth", \.proxy.proxyauth,
            "Require clients to authenticate: user:pass for one user, @path for an htpasswd file (bcrypt or {SHA} entries), or any to accept every user name and password."
        ),
        .optionalString("upstream_auth", \.proxy.upstreamAuth, "Credentials (user:pass) sent to the upstream proxy in upstream mode."),
        .string("confdir", \.proxy.confdir, "The directory holding the CA and config.yaml."),
        .sequence(
            "certs", \.proxy.certs,
            "Certificates to present instead of generated ones, each [domain=]path to a PEM file with the chain, leaf first, and optionally its key. The domain may start with a wildcard; without one it applies to every host."
        ),
        .bool("upstream_cert", \.proxy.upstreamCert, "Connect to the server before answering the client, and copy the names of its certificate into the generated one."),
        .bool("ssl_insecure", \.proxy.sslInsecure, "Do not verify the certificates of servers."),
        .bool("http2", \.proxy.http2, "Speak HTTP/2 with clients and servers that offer it."),
        .bool("rawtcp", \.proxy.rawTCP, "Relay traffic that is neither HTTP nor TLS as a TCP flow, rather than failing."),
        .bool("keep_host_header", \.proxy.keepHostHeader, "In reverse mode, send the client's Host header to the server unchanged instead of the server's own host."),
        .bool("anticache", \.proxy.anticache, "Remove the request headers that let a server answer 304 Not Modified, so every response has its body."),
        .bool("anticomp", \.proxy.anticomp, "Ask servers for uncompressed responses."),
        .sequence(
            "ignore_hosts", \.proxy.ignoreHosts,
            "Regular expressions matched against host:port of a connection (its address, SNI or Host header): matching connections pass through untouched, without TLS interception."
        ),
        .sequence("allow_hosts", \.proxy.allowHosts, "The opposite of ignore_hosts: only matching connections are intercepted."),
        .sequence(
            "tcp_hosts", \.proxy.tcpHosts,
            "Regular expressions matched against the server's host or SNI: matching connections are relayed as TCP flows, TLS still intercepted."
        ),
        .bool("show_ignored_hosts", \.proxy.showIgnoredHosts, "Record connections passed through by ignore_hosts or allow_hosts as TCP flows."),
        .size(
            "body_size_limit", \.proxy.bodySizeLimit,
            "The largest request or response body accepted, with k/m/g suffixes (3m is 3 MiB). A larger request is answered 413, a larger response 502."
        ),
        .size(
            "stream_large_bodies", \.proxy.streamLargeBodies,
            "Bodies larger than this (k/m/g suffixes) are streamed to the other side as they arrive instead of being kept on the flow. Ours defaults to 16m; mitmproxy's to unset."
        ),
        .bool("onboarding", \.proxy.onboarding, "Answer requests to onboarding_host with the page and downloads for installing the CA."),
        .string("onboarding_host", \.proxy.onboardingHost, "The host the onboarding page is served on, through the proxy."),
        .optionalInt("onboarding_port", \.proxy.onboardingPort, range: 1...65535, "Serve the onboarding page on this port of onboarding_host only; unset means any port."),
    ]

    private static let connectionDefinitions: [OptionDefinition] = [
        OptionDefinition(
            name: "header_size_limit", kind: .optionalString,
            help: "Ours: a request head larger than this (k/m/g suffixes) is answered 431.",
            read: { .string(formatSize($0.proxy.headerSizeLimit)) },
            write: { options, value in
                guard case .string(let text) = value, let size = parseSize(text), size > 0 else {
                    throw OptionValueError("expected a size such as 64k")
                }
                options.proxy.headerSizeLimit = size
            }
        ),
        .seconds("idle_timeout", \.proxy.idleTimeout, "Ours: close a connection that has carried nothing for this many seconds."),
        .seconds(
            "request_head_timeout", \.proxy.requestHeadTimeout,
            "Ours: a client must finish a request head within this many seconds of starting it, or is answered 408."
        ),
        .seconds("connect_timeout", \.proxy.connectTimeout, "Ours: give up connecting to a server after this many seconds."),
        .optionalInt("threads", \.proxy.threads, range: 1...256, "Ours: event loop threads; unset means one per CPU core."),
    ]

    // MARK: - mitmdump

    private static let frontEndDefinitions: [OptionDefinition] = [
        .int(
            "flow_detail", \.flowDetail, range: 0...4,
            "What mitmdump prints of each flow: 0 nothing, 1 a line for the request and one for the response, 2 with headers, 3 with bodies cut after content_view_lines_cutoff lines, 4 whole bodies."
        ),
        .bool("showhost", \.showhost, "Show URLs with the host of the Host header rather than the address connected to."),
        .bool("dumper_duration", \.dumperDuration, "Ours: end mitmdump's response line with the time the flow took."),
        .optionalString("dumper_filter", \.dumperFilter, "Only flows matching this filter expression are printed.", check: checkFilter),
        .int("content_view_lines_cutoff", \.contentViewLinesCutoff, range: 1...Int.max, "How many lines of a body flow detail 3 prints."),
        .choice("termlog_verbosity", \.termlogVerbosity, ["error", "warn", "info", "alert", "debug"], "The least important log messages printed."),
        .optionalString("rfile", \.rfile, "Read flows from this file (a flow file or a HAR) at start."),
        .optionalString("readfile_filter", \.readfileFilter, "Only flows matching this filter expression are read from rfile.", check: checkFilter),
        .optionalString("save_stream_file", \.saveStreamFile, "Save every flow to this file as it ends. A leading + appends to the file."),
        .optionalString(
            "save_stream_filter", \.saveStreamFilter, "Only flows matching this filter expression are saved to save_stream_file.",
            check: checkFilter
        ),
        .string("hardump", \.hardump, "Write every flow to this HAR file at shutdown (a .zhar name compresses it)."),
        .bool("server", \.server, "Start the proxy server. Off, mitmdump reads rfile and replays client_replay, then exits."),
        .bool("keepserving", \.keepserving, "With server off, keep running after rfile and client replay are done."),
        .sequence("scripts", \.scripts, "Python addon scripts to load."),
    ]

    // MARK: - Addons

    private static let addonDefinitions: [OptionDefinition] = [
        .sequence(
            "modify_headers", \.modifyHeaders,
            "Header rules [/filter]/name/value: on matching flows, replace header name with value (from a file with @path); an empty value removes it. Any character may stand for the slash.",
            check: { _ = try ModifyHeaders(specs: [$0]) }
        ),
        .sequence(
            "modify_body", \.modifyBody,
            "Body rules [/filter]/regex/replacement: on matching flows, replace regex in the decoded body (the replacement from a file with @path). Any character may stand for the slash.",
            check: { _ = try ModifyBody(specs: [$0]) }
        ),
        .sequence(
            "map_remote", \.mapRemote,
            "URL rules [|filter]|regex|replacement: on matching requests, replace regex in the URL, sending the request elsewhere. Any character may stand for the bar.",
            check: { _ = try MapRemote(specs: [$0]) }
        ),
        .sequence(
            "map_local", \.mapLocal,
            "Rules [|filter]|url-regex|path: answer matching requests from a local file, or from a directory by the rest of the URL's path. Any character may stand for the bar.",
            check: { _ = try MapLocal(specs: [$0]) }
        ),
        .sequence(
            "block_list", \.blockList,
            "Rules /filter/status: answer matching requests with that status and an empty body; status 444 closes the connection without an answer.",
            check: { _ = try BlockList(specs: [$0]) }
        ),
        .bool("block_global", \.blockGlobal, "Refuse clients from globally routable IP addresses (those from the local machine are always served)."),
        .bool("block_private", \.blockPrivate, "Refuse clients from private IP addresses (those from the local machine are always served)."),
        .optionalString("stickycookie", \.stickycookie, "Remember cookies set on flows matching this filter and send them on later matching requests.", check: checkFilter),
        .optionalString(
            "stickyauth", \.stickyauth, "Remember the Authorization header of requests matching this filter and add it to later matching requests to the same host.",
            check: checkFilter
        ),
    ]

    private static let replayDefinitions: [OptionDefinition] = [
        .sequence("client_replay", \.clientReplay, "Flow files whose requests are sent again to their servers."),
        .int("client_replay_concurrency", \.clientReplayConcurrency, range: -1...Int.max, "Replayed requests in flight at once; -1 sends them all at once."),
        .sequence("server_replay", \.serverReplay, "Flow files whose responses answer matching requests instead of the server."),
        .string(
            "server_replay_extra", \.serverReplayExtra,
            "What happens to requests without a recorded response: forward sends them to the server, kill closes the connection, a status code (204, 404…) answers with it.",
            check: { text in
                do throws(ServerPlaybackOptionError) { _ = try ServerPlaybackOptions.Extra(parsing: text) } catch { throw OptionValueError("expected " + error.expected) }
            }
        ),
        .bool("server_replay_ignore_content", \.serverReplayIgnoreContent, "Ignore request bodies when matching requests to recorded ones."),
        .bool("server_replay_ignore_host", \.serverReplayIgnoreHost, "Ignore the host when matching requests to recorded ones."),
        .bool("server_replay_ignore_port", \.serverReplayIgnorePort, "Ignore the port when matching requests to recorded ones."),
        .sequence("server_replay_ignore_params", \.serverReplayIgnoreParams, "Query parameters ignored when matching requests to recorded ones."),
        .sequence(
            "server_replay_ignore_payload_params", \.serverReplayIgnorePayloadParams,
            "Form fields (urlencoded or multipart) ignored when matching request bodies to recorded ones."
        ),
        .sequence("server_replay_use_headers", \.serverReplayUseHeaders, "Request headers that must also match for a recorded response to be used."),
        .bool(
            "server_replay_refresh", \.serverReplayRefresh,
            "Shift the date, expires and last-modified headers and cookie expiry of replayed responses by the time since they were recorded."
        ),
        .bool("server_replay_reuse", \.serverReplayReuse, "Keep recorded responses after use, so they can answer again."),
        OptionDefinition(
            name: "server_replay_kill_extra", kind: .bool, help: "Deprecated: server_replay_extra=kill.",
            read: { .bool($0.serverReplayExtra == "kill") },
            write: { options, value in
                if case .bool(let flag) = value { options.serverReplayExtra = flag ? "kill" : "forward" }
            }
        ),
        OptionDefinition(
            name: "server_replay_nopop", kind: .bool, help: "Deprecated: server_replay_reuse.",
            read: { .bool($0.serverReplayReuse) },
            write: { options, value in if case .bool(let flag) = value { options.serverReplayReuse = flag } }
        ),
    ]

    // MARK: - mitmproxy's options this build does not implement

    private static let notImplementedDefinitions: [OptionDefinition] = [
        .notImplemented("add_upstream_certs_to_client_chain", .bool, default: .bool(false), "Send the server's whole certificate chain to the client too."),
        .notImplemented("cert_passphrase", .optionalString, default: .none, "The passphrase of the keys in certs."),
        .notImplemented("ciphers_client", .optionalString, default: .none, "OpenSSL cipher list towards clients."),
        .notImplemented("ciphers_server", .optionalString, default: .none, "OpenSSL cipher list towards servers."),
        .notImplemented("client_certs", .optionalString, default: .none, "A client certificate file or directory for servers that ask for one."),
        .notImplemented("command_history", .bool, default: .bool(true), "Keep the console's command history."),
        .notImplemented("connect_addr", .optionalString, default: .none, "The local address for connections to servers."),
        .notImplemented("dns_name_servers", .sequence, default: .list([]), "Name servers of the DNS mode."),
        .notImplemented("dns_use_hosts_file", .bool, default: .bool(true), "Let the DNS mode read the hosts file."),
        .notImplemented("dumper_default_contentview", .string, default: .string("auto"), "The content view mitmdump shows bodies with."),
        .notImplemented("export_preserve_original_ip", .bool, default: .bool(false), "Exported curl commands connect to the original IP address."),
        .notImplemented("http_connect_send_host_header", .bool, default: .bool(true), "Send a Host header with CONNECT to upstream proxies."),
        .notImplemented("keep_alt_svc_header", .bool, default: .bool(false), "Keep Alt-Svc headers of responses."),
        .notImplemented("key_size", .int, default: .int(2048), "The RSA key size of new CAs."),
        .notImplemented("normalize_outbound_headers", .bool, default: .bool(true), "Normalise HTTP/2 header names towards servers."),
        .notImplemented("proxy_debug", .bool, default: .bool(false), "Log the proxy core's internals."),
        .notImplemented("request_client_cert", .bool, default: .bool(false), "Ask clients for a certificate."),
        .notImplemented("ssl_verify_upstream_trusted_ca", .optionalString, default: .none, "A PEM file of CAs trusted for servers."),
        .notImplemented("ssl_verify_upstream_trusted_confdir", .optionalString, default: .none, "A directory of CAs trusted for servers."),
        .notImplemented("strip_ech", .bool, default: .bool(true), "Remove Encrypted Client Hello keys from DNS answers."),
        .notImplemented("tls_ecdh_curve_client", .optionalString, default: .none, "The ECDH curve towards clients."),
        .notImplemented("tls_ecdh_curve_server", .optionalString, default: .none, "The ECDH curve towards servers."),
        .notImplemented("tls_version_client_max", .string, default: .string("UNBOUNDED"), "The newest TLS version offered to clients."),
        .notImplemented("tls_version_client_min", .string, default: .string("TLS1_2"), "The oldest TLS version accepted from clients."),
        .notImplemented("tls_version_server_max", .string, default: .string("UNBOUNDED"), "The newest TLS version offered to servers."),
        .notImplemented("tls_version_server_min", .string, default: .string("TLS1_2"), "The oldest TLS version accepted from servers."),
        .notImplemented("udp_hosts", .sequence, default: .list([]), "Hosts whose UDP traffic is relayed as UDP flows."),
        .notImplemented("validate_inbound_headers", .bool, default: .bool(true), "Refuse requests with invalid HTTP/2 headers."),
        .notImplemented("websocket", .bool, default: .bool(true), "Intercept WebSocket connections (always on here)."),
    ]

    /// `connection_strategy` as its name.
    var connectionStrategyName: String {
        get { proxy.connectionStrategy.rawValue }
        set { proxy.connectionStrategy = ProxyOptions.ConnectionStrategy(rawValue: newValue) ?? .eager }
    }
}
