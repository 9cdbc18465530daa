import Foundation
import MitmCore
import Testing

@testable import MitmOptions

@Suite("config.yaml, as mitmproxy 11 reads it")
struct ConfigYAMLTests {
    @Test("typed values of every kind")
    func values() throws {
        var options = Options()
        try ConfigYAML.apply(
            """
            # a comment
            anticache: true
            listen_host: 127.0.0.1
            listen_port: 8081
            ignore_hosts: ['^example\\.com:443$', internal]
            modify_headers:
              - /~q/X-A/1
              - /X-B/
            body_size_limit: 3m
            proxyauth:
            idle_timeout: 30
            mode: [regular, socks5@1081]
            server_replay_extra: '404'
            """,
            path: "config.yaml", to: &options
        )
        #expect(options.proxy.anticache)
        #expect(options.proxy.listenHost == "127.0.0.1")
        #expect(options.proxy.listenPort == 8081)
        #expect(options.proxy.ignoreHosts == ["^example\\.com:443$", "internal"])
        #expect(options.modifyHeaders == ["/~q/X-A/1", "/X-B/"])
        #expect(options.proxy.bodySizeLimit == 3 << 20)
        #expect(options.proxy.proxyauth == nil)
        #expect(options.proxy.idleTimeout == 30)
        #expect(options.proxy.modes.map(\.spec) == ["regular", "socks5@1081"])
        #expect(options.serverReplayExtra == "404")
    }

    @Test(
        "a mistake names the file, the line and column, and the option; nothing is applied",
        arguments: [
            ("anticache: true\nanticahce: true\n", "config.yaml:2:1: No such option: anticahce (did you mean anticache?)"),
            ("anticache: true\nlisten_port: http\n", "config.yaml:2:14: option listen_port: expected an integer, found 'http'"),
            ("anticache: yes please\n", "config.yaml:1:12: option anticache: expected true or false, found 'yes please'"),
            ("ignore_hosts: example.com\n", "config.yaml:1:15: option ignore_hosts: expected a list"),
            ("listen_host: [a, b]\n", "config.yaml:1:14: option listen_host: expected a single value"),
            ("anticache: true\nflow_detail: 7\n", "config.yaml:2:14: Invalid value '7' for option flow_detail: expected an integer from 0 to 4"),
            ("anticache: true\n  listen_port: 1\n", "config.yaml:2:14: invalid YAML:"),
            ("ignore_hosts: [a\n", "config.yaml:2:1: invalid YAML:"),
            ("- anticache\n", "config.yaml:1:1: expected a mapping of option names to values"),
            ("block_list: ['/~q/404']\nstickyauth: '~q ~'\n", "config.yaml:2:13: Invalid value '~q ~' for option stickyauth: invalid filter expression"),
        ]
    )
    func mistakes(yaml: String, message: String) {
        var options = Options()
        #expect {
            try ConfigYAML.apply(yaml, path: "config.yaml", to: &options)
        } throws: { error in
            "\(error)".hasPrefix(message)
        }
        #expect(options.proxy == ProxyOptions())
    }

    @Test("an empty file or one with comments only sets nothing")
    func empty() throws {
        var options = Options()
        try ConfigYAML.apply("", path: "config.yaml", to: &options)
        try ConfigYAML.apply("# nothing here\n", path: "config.yaml", to: &options)
        #expect(options.proxy == ProxyOptions())
    }

    @Test("load reads config.yaml from the confdir; a missing one is fine")
    func load() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mitm-config-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var options = Options()
        try ConfigYAML.load(confdir: directory, into: &options)
        #expect(options.proxy == ProxyOptions())
        try "showhost: true\n".write(toFile: directory + "/config.yaml", atomically: true, encoding: .utf8)
        try ConfigYAML.load(confdir: directory, into: &options)
        #expect(options.showhost)
    }
}

@Suite("Classic config files (0.18's common.conf and mitmdump.conf)")
struct ClassicConfigTests {
    @Test("every form of the 0.18 docs becomes command-line arguments, with its line")
    func forms() throws {
        let entries = try ClassicConfig.parse(
            """
            # this is a comment
            ; this is also a comment
            --- and this too
            [section]
            port = 8080
            listen-host: 127.0.0.1
            stickycookie .*
            --setheader /~q/X-A/1
            anticache
            --anticomp
            showhost = true
            keepserving = false
            ignore = [a.com, 'b.com' , c.com]
            replace = "/~s/foo/bar"   # an inline comment
            """,
            path: "common.conf"
        )
        #expect(entries.map(\.arguments) == [
            ["--port", "8080"],
            ["--listen-host", "127.0.0.1"],
            ["--stickycookie", ".*"],
            ["--setheader", "/~q/X-A/1"],
            ["--anticache"],
            ["--anticomp"],
            ["--showhost"],
            [],
            ["--ignore", "a.com", "--ignore", "b.com", "--ignore", "c.com"],
            ["--replace", "/~s/foo/bar"],
        ])
        #expect(entries.map(\.line) == [5, 6, 7, 8, 9, 10, 11, 12, 13, 14])
        #expect(entries[0].flag == "port")
    }

    @Test("a --conf file that does not exist is an error naming it")
    func missingExtra() {
        #expect {
            _ = try ClassicConfig.load(confdir: "/nonexistent", tool: "mitmdump", extra: "/nonexistent/my.conf")
        } throws: { error in
            "\(error)" == "/nonexistent/my.conf:1: no such config file"
        }
    }
}
