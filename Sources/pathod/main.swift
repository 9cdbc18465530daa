import ArgumentParser
import Foundation
import MitmPathod

/// `pathod`: the pathological HTTP daemon. Serves responses described by specs in request paths.
@main
struct PathodCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pathod",
        abstract: "A pathological HTTP/S daemon: serves the response a spec in the path describes (http://127.0.0.1:9999/p/200:b@100)."
    )

    @Option(name: [.short, .customLong("port")], help: "Port to listen on (0 picks a free one).")
    var port = 9999

    @Option(name: [.customShort("l"), .customLong("address")], help: "Address to listen on.")
    var listenAddress = "127.0.0.1"

    @Option(name: [.customShort("a"), .customLong("anchor")], help: "An anchor: 'regex=spec'. Requests whose path matches get the spec. Repeatable.")
    var anchors: [String] = []

    @Option(name: [.customShort("c"), .customLong("craft-anchor")], help: "The path prefix under which the rest of the path is a spec.")
    var craftAnchor = "/p/"

    @Option(name: [.customShort("d"), .customLong("staticdir")], help: "Directory that <path values are read from; without it file values are refused.")
    var staticDirectory: String?

    @Option(name: [.customLong("limit-size")], help: "Refuse (with 800) responses larger than this: a number with an optional b/k/m/g/t suffix.")
    var limitSize: String?

    @Flag(name: [.customLong("nocraft")], help: "Refuse specs in URLs (anchors still work).")
    var noCraft = false

    @Flag(name: [.customLong("nohang")], help: "Refuse specs that pause.")
    var noHang = false

    @Flag(name: [.short, .customLong("ssl")], help: "Speak TLS on every connection, offering HTTP/2 and HTTP/1.1 by ALPN.")
    var ssl = false

    @Flag(name: [.customLong("no-http2")], help: "With -s, offer HTTP/1.1 only.")
    var noHTTP2 = false

    @Flag(name: [.customShort("C"), .customLong("plain-connect")], help: "Serve CONNECT tunnels in plain text instead of TLS.")
    var plainConnect = false

    @Option(
        name: [.customLong("cert")],
        help: ArgumentHelp(
            "A certificate for TLS: '[domain=]path'. The domain may be a wildcard ('*.example.com') and is '*' when left out. The PEM file holds the chain, leaf first, and the private key (or see --cert-key). Repeatable; clients get the one for the name they ask for (SNI), else the '*' one, else a self-signed certificate made at start.",
            valueName: "spec"
        )
    )
    var certificates: [String] = []

    @Option(name: [.customLong("cert-key")], help: "The private key's PEM file, for --cert files without one.")
    var certificateKey: String?

    @Option(name: [.customLong("cn")], help: "The common name of the self-signed certificate made at start.")
    var commonName = "pathod.net"

    @Flag(name: [.short, .customLong("explain")], help: "Freeze each spec before serving it, so the log shows exactly what was sent.")
    var explain = false

    @Option(name: [.short, .customLong("timeout")], help: "Close connections idle for this many seconds.")
    var timeout: Double?

    @Option(name: [.customLong("json-log")], help: "Append each log entry as a line of JSON to this file ('-' for standard output).")
    var jsonLog: String?

    @Flag(name: [.customShort("q"), .customLong("log-request")], help: "Log each request's head in full.")
    var logRequest = false

    @Flag(name: [.customShort("r"), .customLong("log-response")], help: "Log each response's status, its spec as served, its size and the start of its body.")
    var logResponse = false

    @Option(name: [.customShort("f"), .customLong("logfile")], help: "Append the log to this file instead of printing it.")
    var logFile: String?

    @Flag(name: [.customLong("quiet")], help: "Log nothing per request.")
    var quiet = false

    func run() async throws {
        var configuration = PathodConfiguration()
        configuration.host = listenAddress
        configuration.port = port
        configuration.craftAnchor = craftAnchor
        for anchor in anchors {
            guard let equals = anchor.firstIndex(of: "=") else {
                throw ValidationError("Invalid anchor specification '\(anchor)': expected 'regex=spec'")
            }
            configuration.anchors.append((String(anchor[..<equals]), String(anchor[anchor.index(after: equals)...])))
        }
        if let staticDirectory {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: staticDirectory, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ValidationError("Static directory '\(staticDirectory)' does not exist")
            }
            configuration.staticDirectory = URL(fileURLWithPath: staticDirectory).standardizedFileURL.path
        }
        if let limitSize {
            guard let size = parseSize(limitSize) else {
                throw ValidationError("Invalid size limit '\(limitSize)': expected a number with an optional b, k, m, g or t suffix")
            }
            configuration.sizeLimit = size
        }
        configuration.noCraft = noCraft
        configuration.noHang = noHang
        configuration.ssl = ssl
        configuration.http2 = !noHTTP2
        configuration.connectTLS = !plainConnect
        configuration.explain = explain
        configuration.timeout = timeout
        configuration.commonName = commonName
        for spec in certificates {
            let (domain, path) = splitCertificateSpec(spec)
            let certificate: PathodCertificate
            do {
                certificate = try PathodCertificate.load(path: path, keyPath: certificateKey)
            } catch {
                throw ValidationError("Cannot load certificate '\(path)' (--cert \(spec)): \(error)")
            }
            if domain == "*" {
                configuration.certificate = certificate
            } else {
                configuration.domainCertificates.append(PathodDomainCertificate(pattern: domain, certificate: certificate))
            }
        }

        let jsonHandle: FileHandle?
        if let jsonLog, jsonLog != "-" {
            if !FileManager.default.fileExists(atPath: jsonLog) { _ = FileManager.default.createFile(atPath: jsonLog, contents: nil) }
            guard let handle = FileHandle(forWritingAtPath: jsonLog) else { throw ValidationError("Cannot write the JSON log '\(jsonLog)'") }
            handle.seekToEndOfFile()
            jsonHandle = handle
        } else {
            jsonHandle = jsonLog == "-" ? FileHandle.standardOutput : nil
        }
        let quiet = self.quiet
        let (logRequest, logResponse) = (self.logRequest, self.logResponse)
        let logHandle: FileHandle?
        if let logFile {
            if !FileManager.default.fileExists(atPath: logFile) { _ = FileManager.default.createFile(atPath: logFile, contents: nil) }
            guard let handle = FileHandle(forWritingAtPath: logFile) else { throw ValidationError("Cannot write the log file '\(logFile)'") }
            handle.seekToEndOfFile()
            logHandle = handle
        } else {
            logHandle = nil
        }
        let server: PathodServer
        do {
            server = try PathodServer(configuration: configuration) { entry in
                if let jsonHandle {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                    if let data = try? encoder.encode(entry) { jsonHandle.write(data + Data("\n".utf8)) }
                }
                if !quiet && (jsonHandle != FileHandle.standardOutput || logHandle != nil) {
                    let text = describe(entry, request: logRequest, response: logResponse)
                    if let logHandle { logHandle.write(Data((text + "\n").utf8)) } else { writeLine(text) }
                }
            }
        } catch {
            throw ValidationError("\(error)")
        }
        let bound = try await server.start()
        writeLine("pathod listening on \(listenAddress):\(bound)")
        // Ctrl-C and SIGTERM stop the server, closing open connections. The sources are kept in
        // `signalSources` for the life of the process: a source that is released stops delivering,
        // and the optimizer may release a local as soon as it is last used.
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .main)
            source.setEventHandler { Task { await server.shutdown() } }
            source.resume()
            signalSources.append(source)
        }
        await server.wait()
    }
}

/// The signal sources of ``PathodCommand/run()``, appended to once, before serving.
nonisolated(unsafe) var signalSources: [any DispatchSourceSignal] = []

/// One line per log entry, for the terminal.
func summary(_ entry: PathodLogEntry) -> String {
    var line = ""
    if let request = entry.request {
        line += "\(request.remoteAddress ?? "?"): \(request.method) \(request.path)"
    }
    switch entry.type {
    case "crafted":
        if let response = entry.response {
            line += (line.isEmpty ? "" : " ") + "<< \(response.spec)\(response.disconnect ? " (disconnected)" : "")"
        }
    case "frame":
        if let frame = entry.frame { line += "frame \(frame.opcode): \(frame.length) bytes" }
    default:
        line += (line.isEmpty ? "" : " ") + "\(entry.type): \(entry.message ?? "")"
    }
    return line
}

/// The log's text for an entry: its summary line and, with `-q`/`-r`, the request's head and the
/// response's status, headers and body start, indented.
func describe(_ entry: PathodLogEntry, request showRequest: Bool, response showResponse: Bool) -> String {
    var lines = [summary(entry)]
    if showRequest, let request = entry.request {
        lines.append("    \(request.method) \(request.path) \(request.httpVersion)")
        lines += request.headers.map { "    " + $0.joined(separator: ": ") }
    }
    if showResponse, let response = entry.response {
        if let code = response.statusCode { lines.append("    \(code) \(response.reason ?? "")") }
        lines.append("    spec: \(response.spec)")
        lines.append("    \(response.bytesWritten) bytes written in \(String(format: "%.3f", response.duration)) s")
        if let body = response.body, !body.isEmpty { lines.append("    body: \(body)") }
    }
    return lines.joined(separator: "\n")
}

/// Writes a line to standard output at once (no buffering, so a parent process sees it).
func writeLine(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// `100`, `10k`, `1m`, …: bytes.
func parseSize(_ text: String) -> UInt64? {
    let lower = text.lowercased()
    guard let last = lower.last else { return nil }
    if let unit = SizeUnit(rawValue: String(last)) {
        guard let n = UInt64(lower.dropLast()) else { return nil }
        let (result, overflow) = n.multipliedReportingOverflow(by: unit.multiplier)
        return overflow ? nil : result
    }
    return UInt64(lower)
}

/// `[domain=]path`: the domain is `*` when there is none. The first `=` splits, as in pathod.
func splitCertificateSpec(_ spec: String) -> (domain: String, path: String) {
    guard let equals = spec.firstIndex(of: "=") else { return ("*", spec) }
    return (String(spec[..<equals]), String(spec[spec.index(after: equals)...]))
}
