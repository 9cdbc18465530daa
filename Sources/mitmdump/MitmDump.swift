import ArgumentParser
import Foundation
import Logging
import MitmAddons
import MitmCore
import MitmServer

/// `mitmdump`: the command-line front end. It parses mitmproxy's flags (modern and classic), builds
/// the options, and runs the proxy with the dump output as an ordinary addon.
@main
struct MitmDump: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mitmdump",
        abstract: "An interactive, TLS-capable intercepting HTTP proxy, printing what passes through it."
    )

    @Option(
        name: [.short, .long],
        help: "Proxy mode: regular, transparent, socks5, upstream:URL, reverse:URL, each with an optional @[host:]port. May be given more than once."
    )
    var mode: [String] = []

    @Option(name: .customShort("R"), help: ArgumentHelp("Reverse proxy to URL (classic form of --mode reverse:URL).", valueName: "url"))
    var reverse: String?

    @Option(name: .customShort("U"), help: ArgumentHelp("Forward all requests to an upstream proxy (classic form of --mode upstream:URL).", valueName: "url"))
    var upstream: String?

    @Flag(name: .customShort("T"), help: "Transparent proxy mode (classic form of --mode transparent).")
    var transparent = false

    @Flag(name: .customLong("socks"), help: "SOCKS5 proxy mode (classic form of --mode socks5).")
    var socks = false

    @Option(name: .long, help: ArgumentHelp("Require proxy authentication: user:pass, @path-to-htpasswd, or any.", valueName: "spec"))
    var proxyauth: String?

    @Option(name: .long, help: ArgumentHelp("Proxy-Authorization credentials (user:pass) for the upstream proxy.", valueName: "user:pass"))
    var upstreamAuth: String?

    @Option(name: .long, help: ArgumentHelp("Stream bodies larger than SIZE instead of buffering them (classic --stream).", valueName: "size"))
    var stream: String?

    @Option(name: [.long], help: "Address to bind the proxy to.")
    var listenHost: String?

    @Option(name: [.short, .customLong("listen-port")], help: "Proxy service port.")
    var port: Int?

    @Option(name: .long, help: "Set an option: --set name=value. May be given more than once.")
    var set: [String] = []

    @Flag(name: [.short, .long], help: "Quiet: print nothing but errors.")
    var quiet = false

    @Flag(name: [.short, .long], help: "Increase log verbosity.")
    var verbose: Int

    @Option(name: .long, help: "Flow detail: 0 nothing, 1 one line per flow, 2 headers, 3 truncated bodies, 4 full bodies.")
    var flowDetail: Int?

    @Flag(name: [.customShort("k"), .customLong("ssl-insecure")], help: "Do not verify upstream server TLS certificates.")
    var sslInsecure = false

    @Option(name: .long, help: "SSL certificates of the form \"[domain=]path\". May be given more than once.")
    var certs: [String] = []

    @Flag(inversion: .prefixedNo, help: "Connect to the server first to copy its certificate's names.")
    var upstreamCert: Bool?

    @Flag(inversion: .prefixedNo, help: "Enable or disable HTTP/2 support.")
    var http2: Bool?

    @Option(name: .customLong("ignore-hosts"), help: ArgumentHelp("Pass connections to matching hosts through untouched (a regular expression on host:port). May be given more than once.", valueName: "host"))
    var ignoreHosts: [String] = []

    @Option(name: .customLong("allow-hosts"), help: ArgumentHelp("Opposite of --ignore-hosts: only intercept matching hosts. May be given more than once.", valueName: "host"))
    var allowHosts: [String] = []

    @Option(name: .customLong("tcp-hosts"), help: ArgumentHelp("Relay connections to matching hosts as TCP flows (TLS is still intercepted). May be given more than once.", valueName: "host"))
    var tcpHosts: [String] = []

    @Flag(inversion: .prefixedNo, help: "Enable or disable raw TCP flows for traffic that is neither HTTP nor TLS.")
    var rawtcp: Bool?

    @Flag(inversion: .prefixedNo, help: "Record ignored connections as TCP flows (without TLS interception).")
    var showIgnoredHosts: Bool?

    @Flag(name: .long, help: "Reverse proxy: keep the original Host header instead of rewriting it.")
    var keepHostHeader = false

    @Flag(name: .long, help: "Strip headers that might cause the server to return 304-not-modified.")
    var anticache = false

    @Flag(name: .long, help: "Try to convince servers to send us un-compressed data.")
    var anticomp = false

    @Flag(name: .long, help: "Use the Host header to construct URLs for display.")
    var showhost = false

    @Option(name: [.customShort("w"), .customLong("save-stream-file")], help: ArgumentHelp("Stream flows to file as they arrive. Prefix path with + to append.", valueName: "path"))
    var saveStreamFile: String?

    @Option(name: [.short, .customLong("rfile")], help: ArgumentHelp("Read flows from file (mitmproxy flow file or HAR).", valueName: "path"))
    var rfile: String?

    @Flag(name: [.short, .customLong("no-server")], help: "Start no proxy server (with -r: read, show, save, then exit).")
    var noServer = false

    @Argument(help: "Filter expression: only matching flows are shown and saved (mitmproxy's filter language).")
    var filter: [String] = []

    func run() async throws {
        var options = ProxyOptions()
        var dumper = DumperOptions()
        // The issue's mitmdump line carries the duration; mitmdump 11 itself prints none.
        dumper.showDuration = true
        var verbosity = Logger.Level.info
        var files = FileOptions()
        do {
            try apply(to: &options, dumper: &dumper, verbosity: &verbosity, files: &files)
        } catch let error as OptionError {
            throw ValidationError(error.description)
        }
        let level = verbosity
        LoggingSystem.bootstrap { _ in
            var handler = TermLogHandler()
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "mitmproxy")
        // The addons that change requests come first, as in mitmproxy's addon order. Only the ones
        // switched on are loaded: with no addons at all, hooks cost nothing (`mitmdump -q`).
        var addons: [any Addon] = []
        if options.anticache { addons.append(AntiCache()) }
        if options.anticomp { addons.append(AntiComp()) }
        if dumper.flowDetail > 0 {
            addons.append(Dumper(options: dumper, sink: StandardOutputSink()))
        }
        do {
            addons += try FlowFiles.saveAddons(files, positionalFilter: dumper.filter)
        } catch {
            logger.critical("\(error)")
            throw ExitCode(1)
        }
        if noServer {
            // No proxy: run the addons on the flows of the file (if any), then stop.
            let manager = AddonManager(addons: addons, context: AddonContext(options: options, logger: logger))
            await manager.running()
            let readOK = await FlowFiles.read(rfile, into: manager, logger: logger)
            await manager.done()
            if !readOK { throw ExitCode(1) }
            return
        }
        let server: ProxyServer
        do {
            server = try ProxyServer(options: options, addons: addons, logger: logger)
        } catch {
            logger.critical("\(error)")
            throw ExitCode(1)
        }
        do {
            try await server.start()
        } catch {
            logger.critical("Error starting proxy server: \(error)")
            throw ExitCode(1)
        }
        _ = await FlowFiles.read(rfile, into: server.addons, logger: logger)
        await waitForTermination()
        await server.shutdown()
    }

    /// Turns the flags and `--set` values into options, in mitmproxy's precedence (flags and `--set`
    /// in the order mitmproxy applies them).
    private func apply(
        to options: inout ProxyOptions,
        dumper: inout DumperOptions,
        verbosity: inout Logger.Level,
        files: inout FileOptions
    ) throws {
        var specs = mode
        if let reverse { specs.append("reverse:\(reverse)") }
        if let upstream { specs.append("upstream:\(upstream)") }
        if transparent { specs.append("transparent") }
        if socks { specs.append("socks5") }
        let modes = try specs.map { spec in
            do { return try ProxyModeSpec(parsing: spec) } catch { throw OptionError.invalid("mode", spec, "\(error)") }
        }
        if !modes.isEmpty { options.modes = modes }
        if let listenHost { options.listenHost = listenHost }
        if let port { options.listenPort = port }
        if let proxyauth { options.proxyauth = proxyauth }
        if let upstreamAuth { options.upstreamAuth = upstreamAuth }
        if let stream {
            guard let size = parseSize(stream) else {
                throw OptionError.invalid("stream_large_bodies", stream, "expected a size such as 1024, 10k, 5m or 1g")
            }
            options.streamLargeBodies = size
        }
        if sslInsecure { options.sslInsecure = true }
        options.certs += certs
        if let upstreamCert { options.upstreamCert = upstreamCert }
        if let http2 { options.http2 = http2 }
        if keepHostHeader { options.keepHostHeader = true }
        if anticache { options.anticache = true }
        if anticomp { options.anticomp = true }
        options.ignoreHosts += ignoreHosts
        options.allowHosts += allowHosts
        options.tcpHosts += tcpHosts
        if let rawtcp { options.rawTCP = rawtcp }
        if let showIgnoredHosts { options.showIgnoredHosts = showIgnoredHosts }
        if showhost { dumper.showHost = true }
        if let flowDetail { dumper.flowDetail = flowDetail }
        if verbose > 0 {
            verbosity = .debug
            dumper.flowDetail = max(dumper.flowDetail, min(4, 1 + verbose))
        }
        for assignment in set {
            guard let eq = assignment.firstIndex(of: "=") else {
                throw OptionError.syntax(assignment)
            }
            let name = String(assignment[..<eq])
            let value = String(assignment[assignment.index(after: eq)...])
            try OptionSetter.set(name, value, options: &options, dumper: &dumper, verbosity: &verbosity, files: &files)
        }
        if let saveStreamFile { files.saveStreamFile = saveStreamFile }
        if quiet {
            dumper.flowDetail = 0
            verbosity = .error
        }
        if !filter.isEmpty {
            dumper.filter = try FlowFiles.compile(filter.joined(separator: " "), option: "filter")
        }
        do {
            _ = try NextLayerRules(options: options)
        } catch {
            throw OptionError.invalid(error.option, error.pattern, error.reason)
        }
        guard (0...4).contains(dumper.flowDetail) else {
            throw OptionError.invalid("flow_detail", String(dumper.flowDetail), "expected 0 to 4")
        }
        if let port = options.listenPort, !(0...65535).contains(port) {
            throw OptionError.invalid("listen_port", String(port), "expected a port number from 0 to 65535")
        }
        try Self.checkListeners(options)
    }

    /// Two listeners on one address cannot both bind: say so before trying, naming the modes.
    static func checkListeners(_ options: ProxyOptions) throws {
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
