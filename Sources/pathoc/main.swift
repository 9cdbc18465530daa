import ArgumentParser
import Foundation
import MitmPathod

/// `pathoc`: the perverse HTTP client. Sends the requests (and websocket frames) specs describe.
@main
struct PathocCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pathoc",
        abstract: "A perverse HTTP client: sends the requests specs describe (pathoc localhost:9999 get:/p/200).",
        discussion: "Several specs go over one connection; -n repeats them on new connections. An argument naming a file is read as specs."
    )

    @Argument(help: "The server: host[:port].")
    var host: String

    @Argument(help: "Request or websocket frame specs.")
    var specs: [String]

    @Option(name: [.short, .customLong("port")], help: "Port (default 80, or 443 with -s; a port in host[:port] wins).")
    var port: Int?

    @Option(name: [.short], parsing: .unconditional, help: "Repeat the specs on this many new connections (-1: until interrupted).")
    var n = 1

    @Option(name: [.short, .customLong("wait")], help: "Seconds to wait after each request.")
    var wait: Double = 0

    @Flag(name: [.short, .customLong("ssl")], help: "Connect with TLS (certificates are not verified).")
    var ssl = false

    @Option(name: [.customShort("i"), .customLong("sni")], help: "TLS server name indication.")
    var sni: String?

    @Option(name: [.customShort("C"), .customLong("client-cert")], help: "A PEM file with a client certificate and its private key, for TLS.")
    var clientCertificate: String?

    @Option(name: [.short, .customLong("connect")], help: "HOST:PORT: issue a CONNECT through the server (a proxy) first.")
    var connect: String?

    @Option(name: [.short, .customLong("timeout")], help: "Seconds to wait for a response.")
    var timeout: Double?

    @Option(name: [.customShort("I"), .customLong("ignore-codes")], help: "Comma-separated status codes not to print.")
    var ignoreCodes = ""

    @Flag(name: [.short, .customLong("explain")], help: "Print each spec resolved, with random choices fixed, so it replays exactly.")
    var explain = false

    @Flag(name: [.customShort("q"), .customLong("show-request")], help: "Print each request's bytes.")
    var showRequest = false

    @Flag(name: [.customShort("r"), .customLong("show-response")], help: "Print each response's headers and body.")
    var showResponse = false

    @Flag(name: [.customShort("x"), .customLong("hexdump")], help: "Show the bytes of -q and -r as a hex dump.")
    var hexdump = false

    @Flag(name: [.customShort("S"), .customLong("show-ssl")], help: "After a connection's first exchange, show its TLS version and the server's certificate.")
    var showTLS = false

    @Flag(name: [.customShort("T"), .customLong("ignore-timeout")], help: "A timeout ends the connection quietly and is not an error.")
    var ignoreTimeout = false

    @Flag(name: [.customShort("o"), .customLong("oneshot")], help: "Exit after the first response that is shown (not ignored by -I).")
    var oneshot = false

    @Flag(name: [.customLong("http2")], help: "Speak HTTP/2 (implies -s; the server must offer h2 by ALPN).")
    var http2 = false

    func run() async throws {
        var hostName = host
        var hostPort: Int?
        if let colon = host.lastIndex(of: ":"), !host.hasSuffix("]") {
            guard let parsed = Int(host[host.index(after: colon)...]) else {
                throw ValidationError("Invalid port in host spec: \(host)")
            }
            hostName = String(host[..<colon])
            hostPort = parsed
        }
        let ssl = self.ssl || http2
        var configuration = PathocConfiguration(host: hostName, port: hostPort ?? port ?? (ssl ? 443 : 80))
        configuration.ssl = ssl
        configuration.sni = sni
        configuration.timeout = timeout
        configuration.explain = explain
        configuration.showRequest = showRequest
        configuration.showResponse = showResponse
        configuration.hexdump = hexdump
        configuration.showTLS = showTLS
        configuration.ignoreTimeout = ignoreTimeout
        configuration.oneshot = oneshot
        configuration.wait = max(0, wait)
        if let clientCertificate {
            guard FileManager.default.isReadableFile(atPath: clientCertificate) else {
                throw ValidationError("Cannot read the client certificate '\(clientCertificate)'")
            }
            configuration.clientCertificate = clientCertificate
        }
        if let connect {
            let parts = connect.split(separator: ":")
            guard parts.count == 2, let p = Int(parts[1]) else {
                throw ValidationError("Invalid CONNECT specification: \(connect) (expected host:port)")
            }
            configuration.connectTo = (String(parts[0]), p)
        }
        for code in ignoreCodes.split(separator: ",") {
            guard let value = UInt64(code.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("Invalid return code specification: \(ignoreCodes)")
            }
            configuration.ignoreCodes.insert(value)
        }

        var messages: [ClientMessage] = []
        for argument in specs {
            var text = argument
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: argument, isDirectory: &isDirectory), !isDirectory.boolValue,
                let contents = try? String(contentsOfFile: argument, encoding: .utf8)
            {
                text = contents
            }
            do {
                messages += try SpecParser.parseClientMessages(text)
            } catch {
                FileHandle.standardError.write(Data("Error parsing request spec: \(error)\n\(error.marked)\n".utf8))
                throw ExitCode(1)
            }
        }
        let pathoc = Pathoc(configuration: configuration) { line in
            FileHandle.standardOutput.write(Data((line + "\n").utf8))
        }
        let ok = http2 ? await pathoc.runHTTP2(messages, rounds: n) : await pathoc.run(messages, rounds: n)
        if !ok { throw ExitCode(1) }
    }
}
