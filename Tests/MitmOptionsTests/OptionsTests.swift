import Foundation
import MitmCore
import Testing

@testable import MitmOptions

@Suite("Options: definitions and --set")
struct OptionsTests {
    /// mitmproxy 11.0.2's option names (`mitmdump --options`): a config file written for it must load.
    static let mitmproxy11Names = """
        add_upstream_certs_to_client_chain allow_hosts anticache anticomp block_global block_list block_private \
        body_size_limit cert_passphrase certs ciphers_client ciphers_server client_certs client_replay \
        client_replay_concurrency command_history confdir connect_addr connection_strategy \
        content_view_lines_cutoff dns_name_servers dns_use_hosts_file dumper_default_contentview dumper_filter \
        export_preserve_original_ip flow_detail hardump http2 http_connect_send_host_header ignore_hosts \
        keep_alt_svc_header keep_host_header keepserving key_size listen_host listen_port map_local map_remote \
        mode modify_body modify_headers normalize_outbound_headers onboarding onboarding_host proxy_debug \
        proxyauth rawtcp readfile_filter request_client_cert rfile save_stream_file save_stream_filter scripts \
        server server_replay server_replay_extra server_replay_ignore_content server_replay_ignore_host \
        server_replay_ignore_params server_replay_ignore_payload_params server_replay_ignore_port \
        server_replay_kill_extra server_replay_nopop server_replay_refresh server_replay_reuse \
        server_replay_use_headers show_ignored_hosts showhost ssl_insecure ssl_verify_upstream_trusted_ca \
        ssl_verify_upstream_trusted_confdir stickyauth stickycookie stream_large_bodies strip_ech tcp_hosts \
        termlog_verbosity tls_ecdh_curve_client tls_ecdh_curve_server tls_version_client_max \
        tls_version_client_min tls_version_server_max tls_version_server_min udp_hosts upstream_auth \
        upstream_cert validate_inbound_headers websocket
        """.split(separator: " ").map(String.init)

    @Test("every mitmproxy 11 option is defined, once, with help text")
    func everyOptionDefined() {
        let names = Options.definitions.map(\.name)
        #expect(Set(names).count == names.count)
        for name in Self.mitmproxy11Names {
            #expect(Options.definition(named: name) != nil, "\(name)")
        }
        for definition in Options.definitions {
            #expect(definition.help.count > 20, "\(definition.name)")
        }
        #expect(names == names.sorted())
    }

    @Test("mitmproxy's defaults")
    func defaults() throws {
        let options = Options()
        #expect(try options.value(of: "block_global") == .bool(true))
        #expect(try options.value(of: "block_private") == .bool(false))
        #expect(try options.value(of: "onboarding_host") == .string("mitm.it"))
        #expect(try options.value(of: "server_replay_extra") == .string("forward"))
        #expect(try options.value(of: "server_replay_refresh") == .bool(true))
        #expect(try options.value(of: "client_replay_concurrency") == .int(1))
        #expect(try options.value(of: "connection_strategy") == .string("eager"))
        #expect(try options.value(of: "mode") == .list(["regular"]))
        #expect(try options.value(of: "listen_port") == OptionValue.none)
        #expect(try options.value(of: "flow_detail") == .int(1))
        #expect(try options.value(of: "tls_version_client_min") == .string("TLS1_2"))
    }

    @Test("--set: bools with and without a value, toggle, ints, optional values, sizes")
    func setScalars() throws {
        var options = Options()
        try options.apply(setArguments: ["anticache", "showhost=true", "rawtcp=false", "http2=toggle", "listen_port=8081"])
        #expect(options.proxy.anticache && options.showhost && !options.proxy.rawTCP && !options.proxy.http2)
        #expect(options.proxy.listenPort == 8081)
        try options.apply(setArguments: ["listen_port=", "body_size_limit=3m", "stream_large_bodies=1536k"])
        #expect(options.proxy.listenPort == nil)
        #expect(options.proxy.bodySizeLimit == 3 << 20)
        #expect(options.proxy.streamLargeBodies == 1536 << 10)
        #expect(try options.value(of: "body_size_limit") == .string("3m"))
        try options.apply(setArguments: ["body_size_limit="])
        #expect(options.proxy.bodySizeLimit == nil)
        try options.apply(setArguments: ["idle_timeout=2.5", "connection_strategy=lazy", "proxyauth=any"])
        #expect(options.proxy.idleTimeout == 2.5)
        #expect(options.proxy.connectionStrategy == .lazy)
        #expect(options.proxy.proxyauth == "any")
    }

    @Test("--set on a sequence: the --sets of one option together make the list; no value empties it")
    func setSequences() throws {
        var options = Options()
        options.proxy.ignoreHosts = ["old"]
        try options.apply(setArguments: ["ignore_hosts=a", "anticache", "ignore_hosts=b", "mode=socks5", "mode=regular@8081"])
        #expect(options.proxy.ignoreHosts == ["a", "b"])
        #expect(options.proxy.modes.map(\.spec) == ["socks5", "regular@8081"])
        try options.apply(setArguments: ["ignore_hosts"])
        #expect(options.proxy.ignoreHosts == [])
    }

    @Test(
        "a bad value names the option, the value and what was expected, and changes nothing",
        arguments: [
            ("flow_detail=9", "Invalid value '9' for option flow_detail: expected an integer from 0 to 4"),
            ("anticache=maybe", "Invalid value 'maybe' for option anticache: expected true, false or toggle"),
            ("listen_port=http", "Invalid value 'http' for option listen_port: expected an integer or nothing"),
            ("body_size_limit=lots", "Invalid value 'lots' for option body_size_limit: expected a size such as 1024, 10k, 5m or 1g"),
            ("connection_strategy=soon", "Invalid value 'soon' for option connection_strategy: expected one of eager, lazy"),
            ("server_replay_extra=drop", "Invalid value 'drop' for option server_replay_extra: expected 'forward', 'kill' or a status code"),
            ("modify_headers=/X-A", "Invalid value '/X-A' for option modify_headers: expected 2 or 3 parts"),
            ("block_list=/~q/abc", "Invalid value '/~q/abc' for option block_list:"),
            ("mode=ftp:x", "Invalid value 'ftp:x' for option mode:"),
            ("stickycookie=~q ~", "Invalid value '~q ~' for option stickycookie: invalid filter expression"),
            ("nonsense=1", "No such option: nonsense"),
            ("anticahce", "No such option: anticahce (did you mean anticache?)"),
            ("=1", "Invalid --set argument '=1': expected name=value"),
        ]
    )
    func badValues(argument: String, message: String) {
        var options = Options()
        #expect {
            try options.apply(setArguments: [argument])
        } throws: { error in
            "\(error)".hasPrefix(message)
        }
        #expect(options.proxy == ProxyOptions())
    }

    @Test("options this build lacks are accepted and remembered when not at their default")
    func notImplemented() throws {
        var options = Options()
        try options.apply(setArguments: ["key_size=4096", "strip_ech=true"])
        #expect(options.ignoredOptions == ["key_size"])
        #expect(try options.value(of: "key_size") == .int(4096))
        #expect(throws: OptionError.self) { try options.apply(setArguments: ["key_size=big"]) }
    }

    @Test("deprecated replay options set their successors")
    func deprecated() throws {
        var options = Options()
        try options.apply(setArguments: ["server_replay_kill_extra", "server_replay_nopop"])
        #expect(options.serverReplayExtra == "kill")
        #expect(options.serverReplayReuse)
    }

    @Test("--options lists every option with its type, and loads back as a config.yaml giving the defaults")
    func listingRoundTrip() throws {
        let listing = Options.listing()
        for definition in Options.definitions {
            #expect(listing.contains("\n\(definition.name):"), "\(definition.name)")
        }
        #expect(listing.contains("Type sequence of str.\nignore_hosts: []\n"))
        #expect(listing.contains("Type bool.\nblock_global: true\n"))
        #expect(listing.contains("confdir: ~/.mitmproxy\n"))
        var options = Options()
        options.proxy.anticache = true
        try ConfigYAML.apply(listing, path: "listing.yaml", to: &options)
        #expect(options.proxy == ProxyOptions())
        for definition in Options.definitions {
            #expect(definition.value(in: options) == definition.value(in: Options()), "\(definition.name)")
        }
    }
}
