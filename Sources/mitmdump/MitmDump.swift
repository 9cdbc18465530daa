import ArgumentParser
import Foundation
import Logging
import MitmAddons
import MitmCore
import MitmOptions
import MitmServer

/// `mitmdump`: the command-line front end. Its flags are mitmproxy 11's, plus the classic 0.18
/// ones; each is an alias for an option (see `MitmDump+Options.swift`). The options, once read from
/// the config files, the flags and `--set`, make the addons, and the proxy runs with the dump
/// output as an ordinary addon.
@main
struct MitmDump: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mitmdump",
        abstract: "An interactive, TLS-capable intercepting HTTP proxy, printing what passes through it.",
        discussion: """
            Every option can also be set with --set name=value, in <confdir>/config.yaml (as \
            mitmproxy 11 reads it), or in the classic <confdir>/common.conf and mitmdump.conf. \
            --options lists them all.
            """
    )

    // MARK: Options at large

    @Flag(name: .long, help: "Show all options with their defaults and help, as YAML, and exit.")
    var options = false

    @Option(name: .long, help: ArgumentHelp("Set an option: --set name=value, or --set name for true. May be given more than once.", valueName: "option[=value]"))
    var set: [String] = []

    @Option(name: .customLong("conf"), help: ArgumentHelp("Read a classic (0.18) config file too, after common.conf and mitmdump.conf.", valueName: "path"))
    var conf: String?

    @Option(name: .customLong("cadir"), help: ArgumentHelp("Classic form of --set confdir=DIR.", valueName: "dir"))
    var cadir: String?

    @Flag(name: [.short, .long], help: "Quiet: print nothing but errors.")
    var quiet = false

    @Flag(name: [.short, .long], help: "Increase log verbosity.")
    var verbose: Int

    @Option(name: .long, help: "Flow detail: 0 nothing, 1 one line per flow, 2 headers, 3 truncated bodies, 4 full bodies.")
    var flowDetail: Int?

    @Flag(name: .customShort("d"), help: "Classic: increase flow detail (may be repeated).")
    var detail: Int

    // MARK: Proxy modes

    @Option(
        name: [.short, .long],
        help: "Proxy mode: regular, transparent, socks5, upstream:URL, reverse:URL, each with an optional @[host:]port. May be given more than once."
    )
    var mode: [String] = []

    @Option(name: [.customShort("R"), .customLong("reverse")], help: ArgumentHelp("Reverse proxy to URL (classic form of --mode reverse:URL).", valueName: "url"))
    var reverse: String?

    @Option(name: [.customShort("U"), .customLong("upstream")], help: ArgumentHelp("Forward all requests to an upstream proxy (classic form of --mode upstream:URL).", valueName: "url"))
    var upstream: String?

    @Flag(name: [.customShort("T"), .customLong("transparent")], help: "Transparent proxy mode (classic form of --mode transparent).")
    var transparent = false

    @Flag(name: .customLong("socks"), help: "SOCKS5 proxy mode (classic form of --mode socks5).")
    var socks = false

    @Option(name: [.long, .customShort("b"), .customLong("bind-address")], help: "Address to bind the proxy to.")
    var listenHost: String?

    @Option(name: [.short, .customLong("listen-port"), .customLong("port")], help: "Proxy service port.")
    var port: Int?

    @Flag(name: .customShort("n"), help: "Start no proxy server (with -r or -C: read or replay, then exit).")
    var noServerShort = false

    @Flag(inversion: .prefixedNo, help: "Start a proxy server (on by default).")
    var server: Bool?

    @Flag(name: .long, help: "Keep running after -r or client replay are done, even with -n.")
    var keepserving = false

    // MARK: Authentication

    @Option(name: .long, help: ArgumentHelp("Require proxy authentication: user:pass, @path-to-htpasswd, or any.", valueName: "spec"))
    var proxyauth: String?

    @Option(name: .customLong("singleuser"), help: ArgumentHelp("Classic: require this user:pass (--proxyauth user:pass).", valueName: "user:pass"))
    var singleuser: String?

    @Flag(name: .customLong("nonanonymous"), help: "Classic: require some credentials, any (--proxyauth any).")
    var nonanonymous = false

    @Option(name: .customLong("htpasswd"), help: ArgumentHelp("Classic: require credentials from an htpasswd file (--proxyauth @path).", valueName: "path"))
    var htpasswd: String?

    @Option(name: .long, help: ArgumentHelp("Proxy-Authorization credentials (user:pass) for the upstream proxy.", valueName: "user:pass"))
    var upstreamAuth: String?

    // MARK: Hosts and protocols

    @Option(name: [.customLong("ignore-hosts"), .customShort("I"), .customLong("ignore")], help: ArgumentHelp("Pass connections to matching hosts through untouched (a regular expression on host:port). May be given more than once.", valueName: "host"))
    var ignoreHosts: [String] = []

    @Option(name: .customLong("allow-hosts"), help: ArgumentHelp("Opposite of --ignore-hosts: only intercept matching hosts. May be given more than once.", valueName: "host"))
    var allowHosts: [String] = []

    @Option(name: [.customLong("tcp-hosts"), .customLong("tcp")], help: ArgumentHelp("Relay connections to matching hosts as TCP flows (TLS is still intercepted). May be given more than once.", valueName: "host"))
    var tcpHosts: [String] = []

    @Flag(inversion: .prefixedNo, help: "Enable or disable raw TCP flows for traffic that is neither HTTP nor TLS.")
    var rawtcp: Bool?

    @Flag(name: .customLong("raw-tcp"), inversion: .prefixedNo, help: "Classic form of --rawtcp.")
    var classicRawTCP: Bool?

    @Flag(inversion: .prefixedNo, help: "Record ignored connections as TCP flows (without TLS interception).")
    var showIgnoredHosts: Bool?

    @Flag(inversion: .prefixedNo, help: "Enable or disable HTTP/2 support.")
    var http2: Bool?

    @Option(name: .long, help: ArgumentHelp("Stream bodies larger than SIZE instead of buffering them (classic --stream).", valueName: "size"))
    var stream: String?

    @Option(name: [.customShort("Z"), .customLong("body-size-limit")], help: ArgumentHelp("Refuse bodies larger than SIZE (k/m/g suffixes).", valueName: "size"))
    var bodySizeLimit: String?

    @Flag(name: .long, help: "Reverse proxy: keep the original Host header instead of rewriting it.")
    var keepHostHeader = false

    // MARK: TLS

    @Flag(name: [.customShort("k"), .customLong("ssl-insecure")], help: "Do not verify upstream server TLS certificates.")
    var sslInsecure = false

    @Option(name: [.long, .customLong("cert")], help: "SSL certificates of the form \"[domain=]path\". May be given more than once.")
    var certs: [String] = []

    @Option(name: .customLong("cert-passphrase"), help: ArgumentHelp("Passphrase of the keys in --certs (not implemented).", valueName: "pass"))
    var certPassphrase: String?

    @Flag(inversion: .prefixedNo, help: "Connect to the server first to copy its certificate's names.")
    var upstreamCert: Bool?

    // MARK: Rewriting

    @Flag(inversion: .prefixedNo, help: "Strip headers that might cause the server to return 304-not-modified.")
    var anticache: Bool?

    @Flag(inversion: .prefixedNo, help: "Try to convince servers to send us un-compressed data.")
    var anticomp: Bool?

    @Flag(name: .customShort("z"), help: "Classic form of --anticomp.")
    var classicAnticomp = false

    @Flag(inversion: .prefixedNo, help: "Use the Host header to construct URLs for display.")
    var showhost: Bool?

    @Flag(name: .customLong("host"), help: "Classic form of --showhost.")
    var classicShowhost = false

    @Option(name: [.customShort("H"), .customLong("modify-headers")], help: ArgumentHelp("Set headers: [/filter]/name/value (@path reads the value from a file; an empty value removes the header). May be given more than once.", valueName: "pattern"))
    var modifyHeaders: [String] = []

    @Option(name: .customLong("setheader"), help: ArgumentHelp("Classic form of --modify-headers.", valueName: "pattern"))
    var setheader: [String] = []

    @Option(name: [.customShort("B"), .customLong("modify-body")], help: ArgumentHelp("Replace in bodies: [/filter]/regex/replacement (@path reads the replacement from a file). May be given more than once.", valueName: "pattern"))
    var modifyBody: [String] = []

    @Option(name: .customLong("replace"), help: ArgumentHelp("Classic form of --modify-body.", valueName: "pattern"))
    var replace: [String] = []

    @Option(name: .customLong("replace-from-file"), help: ArgumentHelp("Classic: /filter/regex/path, the replacement read from the file at path.", valueName: "pattern"))
    var replaceFromFile: [String] = []

    @Option(name: [.customShort("M"), .customLong("map-remote")], help: ArgumentHelp("Send requests elsewhere: [|filter]|url-regex|replacement. May be given more than once.", valueName: "pattern"))
    var mapRemote: [String] = []

    @Option(name: .customLong("map-local"), help: ArgumentHelp("Answer requests from local files: [|filter]|url-regex|path. May be given more than once.", valueName: "pattern"))
    var mapLocal: [String] = []

    @Option(name: [.customShort("t"), .customLong("stickycookie")], help: ArgumentHelp("Sticky cookies for flows matching the filter.", valueName: "filter"))
    var stickycookie: String?

    @Option(name: [.customShort("u"), .customLong("stickyauth")], help: ArgumentHelp("Sticky Authorization for requests matching the filter.", valueName: "filter"))
    var stickyauth: String?

    // MARK: Onboarding

    @Flag(name: .customLong("noapp"), help: "Classic: disable the onboarding page (--set onboarding=false).")
    var noapp = false

    @Option(name: .customLong("app-host"), help: ArgumentHelp("Classic form of --set onboarding_host=HOST.", valueName: "host"))
    var appHost: String?

    @Option(name: .customLong("app-port"), help: ArgumentHelp("Classic form of --set onboarding_port=PORT.", valueName: "port"))
    var appPort: Int?

    // MARK: Replay

    @Option(name: [.customShort("C"), .customShort("c"), .customLong("client-replay")], help: ArgumentHelp("Replay the requests of a flow file. May be given more than once.", valueName: "path"))
    var clientReplay: [String] = []

    @Option(name: [.customShort("S"), .customLong("server-replay")], help: ArgumentHelp("Answer requests with the responses of a flow file. May be given more than once.", valueName: "path"))
    var serverReplay: [String] = []

    @Option(name: .customLong("server-replay-extra"), help: ArgumentHelp("Requests with no recorded response: forward, kill, or a status code.", valueName: "action"))
    var serverReplayExtra: String?

    @Flag(inversion: .prefixedNo, help: "Deprecated: --server-replay-extra kill.")
    var serverReplayKillExtra: Bool?

    @Flag(name: .customLong("kill"), help: "Classic form of --server-replay-extra kill.")
    var kill = false

    @Flag(inversion: .prefixedNo, help: "Keep recorded responses after use so they can answer again.")
    var serverReplayReuse: Bool?

    @Flag(name: .customLong("no-pop"), help: "Classic form of --server-replay-reuse.")
    var noPop = false

    @Flag(inversion: .prefixedNo, help: "Shift dates and cookie expiry of replayed responses to now.")
    var serverReplayRefresh: Bool?

    @Flag(name: .customLong("norefresh"), help: "Classic form of --no-server-replay-refresh.")
    var norefresh = false

    @Option(name: .customLong("rheader"), help: ArgumentHelp("Classic: a request header that must match in server replay (server_replay_use_headers).", valueName: "header"))
    var rheader: [String] = []

    @Flag(name: .customLong("replay-ignore-content"), help: "Classic form of --set server_replay_ignore_content.")
    var replayIgnoreContent = false

    @Option(name: .customLong("replay-ignore-param"), help: ArgumentHelp("Classic form of --set server_replay_ignore_params=NAME.", valueName: "name"))
    var replayIgnoreParam: [String] = []

    @Option(name: .customLong("replay-ignore-payload-param"), help: ArgumentHelp("Classic form of --set server_replay_ignore_payload_params=NAME.", valueName: "name"))
    var replayIgnorePayloadParam: [String] = []

    @Flag(name: .customLong("replay-ignore-host"), help: "Classic form of --set server_replay_ignore_host.")
    var replayIgnoreHost = false

    // MARK: Flow files and scripts

    @Option(name: [.customShort("w"), .customLong("save-stream-file"), .customLong("wfile")], help: ArgumentHelp("Stream flows to file as they arrive. Prefix path with + to append.", valueName: "path"))
    var saveStreamFile: String?

    @Option(name: [.customShort("a"), .customLong("afile")], help: ArgumentHelp("Classic: append flows to file (-w +path).", valueName: "path"))
    var afile: String?

    @Option(name: [.short, .customLong("rfile"), .customLong("read-flows")], help: ArgumentHelp("Read flows from file (mitmproxy flow file or HAR).", valueName: "path"))
    var rfile: String?

    @Option(name: [.short, .customLong("scripts"), .customLong("script")], help: ArgumentHelp("Python addon scripts (not supported yet).", valueName: "script"))
    var scripts: [String] = []

    @Argument(help: "Filter expression: only matching flows are shown and saved (mitmproxy's filter language).")
    var filter: [String] = []

    func run() async throws {
        if options {
            print(Options.listing(), terminator: "")
            return
        }
        let options: Options
        do {
            options = try loadOptions()
        } catch {
            // A config or option error: the message names the file, position or option; the usage
            // text would only hide it.
            let message = error is ConfigFileError || error is OptionError ? "\(error)" : MitmDump.message(for: error)
            FileHandle.standardError.write(Data("Error: \(message)\n".utf8))
            throw ExitCode.validationFailure
        }
        try await Self.serve(options)
    }
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM.
func waitForTermination() async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let once = SignalOnce(continuation)
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .main)
            source.setEventHandler { once.fire() }
            source.resume()
            SignalOnce.sources.append(source)
        }
    }
}

/// Resumes the continuation on the first signal only. Touched on the main dispatch queue only.
final class SignalOnce: @unchecked Sendable {
    nonisolated(unsafe) static var sources: [any DispatchSourceSignal] = []
    private var continuation: CheckedContinuation<Void, Never>?

    init(_ continuation: CheckedContinuation<Void, Never>) {
        self.continuation = continuation
    }

    func fire() {
        continuation?.resume()
        continuation = nil
    }
}
