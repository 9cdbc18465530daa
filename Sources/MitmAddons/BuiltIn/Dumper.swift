import Foundation
import MitmCore
import NIOCore

#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The options of the ``Dumper`` (mitmproxy's `flow_detail`, `showhost`, …).
///
/// mitmdump's `-q` does not map to an option here: a quiet mitmdump simply doesn't install the
/// dumper. `-v` raises `flowDetail` to 2 (and the log level to debug).
public struct DumperOptions: Sendable, Hashable {
    /// `flow_detail`, 0 to 4:
    /// - 0: nothing is printed for flows;
    /// - 1: one line for the request (client, method, URL) and one for the response (status,
    ///   reason, size), or the error;
    /// - 2: 1 plus the headers (and trailers) of both;
    /// - 3: 2 plus the bodies, shown as mitmproxy's content views show them, each cut off after
    ///   ``contentViewLinesCutoff`` lines;
    /// - 4: 3 with nothing cut off.
    public var flowDetail: Int = 1
    /// `showhost`: show URLs with the host the client named in its Host header (`pretty_url`)
    /// rather than the address connected to.
    public var showHost: Bool = false
    /// `content_view_lines_cutoff`: how many lines of a body flow detail 3 shows.
    public var contentViewLinesCutoff: Int = 512
    /// Print mitmdump's connection lines (`[12:00:00.000][127.0.0.1:50000] client connect`).
    /// mitmproxy 11 logs these at level info from its proxy server, so mitmdump shows them by
    /// default, whatever the flow detail, and hides them with `-q`; here the dumper prints them from
    /// the connection hooks.
    public var logConnections: Bool = true
    /// Append the time from request start to response end (`143ms`, `1.25s`) to the response line,
    /// as mitmproxy's console flow list shows it. mitmdump 11 prints no duration, so this is off by
    /// default to keep the output identical to mitmdump's.
    public var showDuration: Bool = false
    /// `dumper_filter` (mitmdump's positional filter): only flows it accepts are printed.
    public var filter: Filter?

    /// A compiled filter expression, as a predicate (a `FlowFilter` in mitmdump).
    public struct Filter: Sendable, Hashable {
        public let expression: String
        public let matches: @Sendable (Flow) -> Bool

        public init(expression: String, matches: @escaping @Sendable (Flow) -> Bool) {
            self.expression = expression
            self.matches = matches
        }

        public static func == (lhs: Filter, rhs: Filter) -> Bool { lhs.expression == rhs.expression }
        public func hash(into hasher: inout Hasher) { hasher.combine(expression) }
    }

    public init() {}

    public init(
        flowDetail: Int = 1,
        showHost: Bool = false,
        contentViewLinesCutoff: Int = 512,
        logConnections: Bool = true,
        showDuration: Bool = false
    ) {
        self.flowDetail = flowDetail
        self.showHost = showHost
        self.contentViewLinesCutoff = contentViewLinesCutoff
        self.logConnections = logConnections
        self.showDuration = showDuration
    }
}

/// mitmdump's console output (mitmproxy's `addons/dumper.py`): a flow is printed once, when it is
/// complete (the `response` hook) or has failed (the `error` hook), request line first:
///
/// ```
/// 127.0.0.1:57060: GET http://127.0.0.1:18081/
///               << 200 OK 12b
/// 127.0.0.1:57190: GET http://127.0.0.1:18099/refused
///  << Connection refused
/// ```
///
/// At flow detail 1 the response arrows are indented so the status code sits under the method;
/// from detail 2 on they start in column 1, followed by headers and bodies indented by four spaces.
/// The connection hooks print mitmproxy's terminal-log connection lines (see
/// ``DumperOptions/logConnections``). Colours are used only when the sink supports them.
public struct Dumper: Addon {
    public var options: DumperOptions
    public let sink: any OutputSink
    private let timeZone: TimeZone
    private let clock: @Sendable () -> Double

    /// - Parameters:
    ///   - timeZone: The zone of the connection lines' clock times (mitmproxy prints local time).
    ///   - clock: The current time, seconds since the epoch.
    public init(
        options: DumperOptions = DumperOptions(),
        sink: any OutputSink = StandardOutputSink(),
        timeZone: TimeZone = .current,
        clock: @escaping @Sendable () -> Double = { now() }
    ) {
        self.options = options
        self.sink = sink
        self.timeZone = timeZone
        self.clock = clock
    }

    // MARK: - Hooks

    public func response(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        dump(flow)
    }

    public func error(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        dump(flow)
    }

    public func websocketMessage(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        guard matches(.http(flow)), let message = flow.websocket?.messages.last else { return }
        var printer = makePrinter()
        printer.echoWebSocketMessage(message, flow: flow)
        sink.write(lines: printer.out)
    }

    public func websocketEnd(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        guard matches(.http(flow)), let websocket = flow.websocket else { return }
        var printer = makePrinter()
        printer.echoWebSocketEnd(websocket, flow: flow)
        sink.write(lines: printer.out)
    }

    public func tcpMessage(_ flow: inout TCPFlow, context: AddonContext) async throws {
        guard matches(.tcp(flow)), let message = flow.messages.last else { return }
        var printer = makePrinter()
        printer.echoTCPMessage(message, flow: flow)
        sink.write(lines: printer.out)
    }

    public func tcpError(_ flow: inout TCPFlow, context: AddonContext) async throws {
        guard matches(.tcp(flow)), let error = flow.error else { return }
        var printer = makePrinter()
        printer.echoConnectionError("TCP", server: flow.serverConnection.address, message: error.message)
        sink.write(lines: printer.out)
    }

    public func clientConnected(_ client: inout ClientConnection, context: AddonContext) async throws {
        logConnection("client connect", client: client.peername)
    }

    public func clientDisconnected(_ client: ClientConnection, context: AddonContext) async throws {
        logConnection("client disconnect", client: client.peername)
    }

    public func serverConnected(_ data: ServerConnectionHookData, context: AddonContext) async throws {
        logConnection("server connect \(Self.describe(data.server))", client: data.client.peername)
    }

    public func serverDisconnected(_ data: ServerConnectionHookData, context: AddonContext) async throws {
        logConnection("server disconnect \(Self.describe(data.server))", client: data.client.peername)
    }

    // MARK: - Output

    /// Whether `flow` is printed at all.
    public func matches(_ flow: Flow) -> Bool {
        options.flowDetail > 0 && (options.filter?.matches(flow) ?? true)
    }

    public func matches(_ flow: HTTPFlow) -> Bool {
        matches(.http(flow))
    }

    /// The lines printed for `flow`, as `response`/`error` print them (without the newlines).
    /// Lines of a body but its last end in `\r`, as mitmdump's do.
    public func lines(for flow: HTTPFlow) -> [String] {
        var printer = makePrinter()
        printer.echoFlow(flow)
        return printer.out
    }

    private func makePrinter() -> FlowPrinter {
        FlowPrinter(options: options, color: sink.supportsColor, terminalWidth: sink.terminalWidth)
    }

    /// A terminal-log line: `[HH:MM:SS.mmm][client] message`.
    public func logLine(_ message: String, client: Address, at time: Double) -> String {
        let stamp = "[\(Self.clockTime(time, in: timeZone))]"
        let who = "[\(HumanFormat.address(client))]"
        guard sink.supportsColor else { return "\(stamp)\(who) \(message)" }
        let cyanDim = ANSI.style(stamp, fg: .cyan, dim: true)
        let yellowDim = ANSI.style(who, fg: .yellow, dim: true)
        // mitmproxy styles every message with its level's colour; info has none, but the reset
        // code is written all the same.
        return "\(cyanDim)\(yellowDim) \(message)\(ANSI.reset)"
    }

    private func dump(_ flow: HTTPFlow) {
        guard matches(flow) else { return }
        sink.write(lines: lines(for: flow))
    }

    private func logConnection(_ message: String, client: Address) {
        guard options.logConnections else { return }
        sink.write(lines: [logLine(message, client: client, at: clock())])
    }

    /// `example.com:443 (93.184.215.14:443)`: the address asked for, and the one reached when its
    /// host differs.
    static func describe(_ server: ServerConnection) -> String {
        let address = HumanFormat.address(server.address)
        if let peername = server.peername, peername.host != server.address.host {
            return "\(address) (\(HumanFormat.address(peername)))"
        }
        return address
    }

    /// `HH:MM:SS.mmm` in `timeZone`, as Python's logging formats it (milliseconds truncated).
    static func clockTime(_ time: Double, in timeZone: TimeZone) -> String {
        let seconds = time.rounded(.down)
        let millis = min(999, max(0, Int((time - seconds) * 1000)))
        let offset = timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: seconds))
        var secondOfDay = (Int(seconds) + offset) % 86_400
        if secondOfDay < 0 { secondOfDay += 86_400 }
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let ms = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        return "\(two(secondOfDay / 3600)):\(two(secondOfDay / 60 % 60)):\(two(secondOfDay % 60)).\(ms)"
    }
}

// MARK: - Rendering a flow

/// Builds the lines of one flow (mitmproxy's `echo_flow`).
struct FlowPrinter {
    let options: DumperOptions
    let color: Bool
    let terminalWidth: Int
    private(set) var out: [String] = []

    init(options: DumperOptions, color: Bool, terminalWidth: Int) {
        self.options = options
        self.color = color
        self.terminalWidth = terminalWidth
    }

    private var detail: Int { options.flowDetail }

    mutating func echoFlow(_ flow: HTTPFlow) {
        let request = flow.request
        echoRequestLine(flow)
        if detail >= 2 { echoHeaders(request.headers) }
        if detail >= 3 {
            echoMessage(
                rawContent: request.rawContent,
                headers: request.headers,
                query: FormURLEncoded.queryItems(ofPath: request.path)
            )
        }
        if detail >= 2 { echoTrailers(request.trailers) }

        if let response = flow.response {
            echoResponseLine(flow, response)
            if detail >= 2 { echoHeaders(response.headers) }
            if detail >= 3 { echoMessage(rawContent: response.rawContent, headers: response.headers, query: nil) }
            if detail >= 2 { echoTrailers(response.trailers) }
        }

        if let error = flow.error {
            out.append(style(" << \(TextEscaping.controlCharacters(error.message))", fg: .red, bold: true))
        }
    }

    // MARK: WebSocket and TCP

    /// `127.0.0.1:5000 -> WebSocket text message -> example.com:80/path`, then at flow detail 3
    /// the message.
    mutating func echoWebSocketMessage(_ message: WebSocketMessage, flow: HTTPFlow) {
        let direction = message.fromClient ? "->" : "<-"
        let client = HumanFormat.address(flow.clientConnection.peername)
        let server = HumanFormat.address(flow.serverConnection?.address ?? Address(host: flow.request.host, port: flow.request.port))
        out.append("\(client) \(direction) WebSocket \(message.kind.name) message \(direction) \(server)\(flow.request.path)")
        if detail >= 3 { echoMessage(rawContent: message.content, headers: Headers(), query: nil) }
    }

    /// How the connection closed: a normal close names who closed it, anything else is an error.
    mutating func echoWebSocketEnd(_ websocket: WebSocketData, flow: HTTPFlow) {
        let code = websocket.closeCode ?? 1006
        if [1000, 1001, 1005].contains(code) {
            let closer = websocket.closedByClient == true ? "client" : "server"
            out.append("WebSocket connection closed by \(closer): \(code) \(websocket.closeReason ?? "")")
        } else {
            var reason = WebSocketData.closeReasonName(code) ?? "UNKNOWN_ERROR=\(code)"
            if let text = websocket.closeReason, !text.isEmpty { reason += " (reason: \(text))" }
            let server = flow.serverConnection?.address ?? Address(host: flow.request.host, port: flow.request.port)
            echoConnectionError("WebSocket", server: server, message: "WebSocket Error: \(reason)")
        }
    }

    /// `127.0.0.1:5000 -> tcp -> example.com:22`, then at flow detail 3 the data.
    mutating func echoTCPMessage(_ message: TCPMessage, flow: TCPFlow) {
        let direction = message.fromClient ? "->" : "<-"
        let client = HumanFormat.address(flow.clientConnection.peername)
        let server = HumanFormat.address(flow.serverConnection.address)
        out.append("\(client) \(direction) tcp \(direction) \(server)")
        if detail >= 3 { echoMessage(rawContent: message.content, headers: Headers(), query: nil) }
    }

    mutating func echoConnectionError(_ kind: String, server: Address, message: String) {
        out.append(style("Error in \(kind) connection to \(HumanFormat.address(server)): \(message)", fg: .red))
    }

    // MARK: Lines

    private mutating func echoRequestLine(_ flow: HTTPFlow) {
        let request = flow.request
        let client: String
        if flow.isReplay == "request" {
            client = style("[replay]", fg: .yellow, bold: true)
        } else {
            client = TextEscaping.controlCharacters(HumanFormat.address(flow.clientConnection.peername))
        }

        let pushed = flow.metadata["h2-pushed-stream"] != nil ? " PUSH_PROMISE" : ""
        // mitmproxy reads methods upper-cased.
        let methodText = request.method.uppercased() + pushed
        let methodColor: ANSI.Color =
            switch methodText.uppercased() {
            case "GET": .green
            case "DELETE": .red
            default: .magenta
            }
        let method = style(TextEscaping.controlCharacters(methodText), fg: methodColor, bold: true)

        var url = options.showHost ? request.prettyURL : request.url
        if detail == 1 {
            // One line per flow: shorten the URL to the terminal (before styling it).
            let limit = max(terminalWidth - 25, 50)
            if url.unicodeScalars.count > limit {
                url = String(String.UnicodeScalarView(url.unicodeScalars.prefix(limit))) + "…"
            }
        }
        url = style(TextEscaping.controlCharacters(url), bold: true)

        // The version is left out between HTTP/1 peers speaking the same version.
        var httpVersion = ""
        if !Self.isHTTP1(request.httpVersion) || request.httpVersion != (flow.response?.httpVersion ?? "HTTP/1.1") {
            httpVersion = " \(request.httpVersion)"
        }
        out.append("\(client): \(method) \(url)\(httpVersion)")
    }

    private mutating func echoResponseLine(_ flow: HTTPFlow, _ response: HTTPResponse) {
        let replayText = flow.isReplay == "response" ? "[replay]" : ""
        let replay = replayText.isEmpty ? "" : style(replayText, fg: .yellow, bold: true)

        let status = response.statusCode
        let codeColor: ANSI.Color? =
            switch status {
            case 200..<300: .green
            case 300..<400: .magenta
            case 400..<600: .red
            default: nil
            }
        let code = style(String(status), fg: codeColor, bold: true, blink: status == 418)

        // HTTP/2 and HTTP/3 have no reason phrase on the wire: show the standard one.
        let reasonText = Self.isHTTP2or3(response.httpVersion) ? HTTPStatusText.reason(for: status) : response.reason
        let reason = style(TextEscaping.controlCharacters(reasonText), fg: codeColor, bold: true)

        var sizeText: String
        if let body = response.rawContent {
            sizeText = HumanFormat.size(body.readableBytes)
        } else {
            sizeText = "(content missing)"
        }
        let size = style(sizeText, bold: true)

        var httpVersion = ""
        if !Self.isHTTP1(response.httpVersion) || flow.request.httpVersion != response.httpVersion {
            httpVersion = "\(response.httpVersion) "
        }

        var arrows = style(" <<", bold: true)
        if detail == 1 {
            // Align the status code with the request method:
            // 127.0.0.1:59519: GET http://example.com/
            //               << 304 Not Modified 0b
            let addressWidth = HumanFormat.address(flow.clientConnection.peername).unicodeScalars.count
            let pad = max(0, addressWidth - (2 + httpVersion.unicodeScalars.count + replayText.count))
            arrows = String(repeating: " ", count: pad) + arrows
        }

        var line = "\(replay)\(arrows) \(httpVersion)\(code) \(reason) \(size)"
        if options.showDuration, let end = response.timestampEnd {
            // As the console's flow list: request start to response end, shown when not zero.
            let duration = max(end - flow.request.timestampStart, 0)
            if duration > 0 { line += " \(HumanFormat.duration(duration))" }
        }
        out.append(line)
    }

    private mutating func echoHeaders(_ headers: Headers) {
        for field in headers.fields {
            let name = style(TextEscaping.bytes(Array(field.name.utf8)), fg: .blue)
            let value = TextEscaping.bytes(Array(field.value.utf8))
            out.append(contentsOf: Self.indented("\(name): \(value)"))
        }
    }

    private mutating func echoTrailers(_ trailers: Headers?) {
        guard let trailers, !trailers.isEmpty else { return }
        out.append(style("    --- HTTP Trailers", fg: .magenta))
        echoHeaders(trailers)
    }

    /// A body, as the automatic content view shows it (mitmproxy's `_echo_message`).
    private mutating func echoMessage(rawContent: ByteBuffer?, headers: Headers, query: [(String, String)]?) {
        let cutoff: Int? = detail == 3 ? max(0, options.contentViewLinesCutoff) : nil
        // One line more than shown tells whether anything was cut off.
        var lines = ContentView.render(
            rawContent: rawContent,
            headers: headers,
            query: query,
            maxLines: cutoff.map { $0 + 1 }
        )
        var cutOff = false
        if let cutoff, lines.count > cutoff {
            lines.removeSubrange(cutoff...)
            cutOff = true
        }
        if !lines.isEmpty {
            out.append("")
            // mitmproxy joins the lines of a body with "\r\n" and prints them in one go.
            for (index, line) in lines.enumerated() {
                var text = "    "
                for segment in line {
                    text += style(segment.text, segment.style)
                }
                if index < lines.count - 1 { text += "\r" }
                out.append(text)
            }
        }
        if cutOff {
            out.append(style("    (cut off)", dim: true))
        }
        if detail >= 2 {
            out.append("")
        }
    }

    // MARK: Helpers

    private func style(
        _ text: String,
        fg: ANSI.Color? = nil,
        bold: Bool? = nil,
        dim: Bool? = nil,
        blink: Bool? = nil
    ) -> String {
        guard color else { return text }
        return ANSI.style(text, fg: fg, bold: bold, dim: dim, blink: blink)
    }

    private func style(_ text: String, _ viewStyle: ContentView.Style) -> String {
        switch viewStyle {
        case .highlight: style(text, bold: true)
        case .offset: style(text, fg: .blue)
        case .header: style(text, fg: .green, bold: true)
        case .text: style(text, fg: .green)
        case .plain: text
        }
    }

    private static func isHTTP1(_ version: String) -> Bool {
        version == "HTTP/1.0" || version == "HTTP/1.1"
    }

    private static func isHTTP2or3(_ version: String) -> Bool {
        version == "HTTP/2.0" || version == "HTTP/3"
    }

    /// mitmproxy's `indent(4, text)`: strip, split into lines, prefix each with four spaces.
    static func indented(_ text: String) -> [String] {
        let scalars = Array(text.unicodeScalars)
        var start = 0
        var end = scalars.count
        while start < end, TextEscaping.isPythonWhitespace(scalars[start]) { start += 1 }
        while end > start, TextEscaping.isPythonWhitespace(scalars[end - 1]) { end -= 1 }
        guard start < end else { return [] }
        return TextEscaping.pythonSplitLines(Array(scalars[start..<end])).map { "    " + $0 }
    }
}

// MARK: - Human-readable values

/// mitmproxy's `utils/human` formatting.
public enum HumanFormat {
    /// A byte count as mitmproxy shows it, at most five characters: `0b`, `1023b`, `1.2k`, `3.4m`,
    /// `123k`, `1.0g` (binary multiples).
    public static func size(_ bytes: Int) -> String {
        if bytes < 1024 { return "\(bytes)b" }
        var value = Double(bytes)
        for suffix in ["k", "m", "g", "t"] {
            value /= 1024
            if value < 99.95 { return String(format: "%.1f", value) + suffix }
            if value < 1024 || suffix == "t" { return String(format: "%.0f", value) + suffix }
        }
        return "\(bytes)b"  // unreachable: the loop returns at "t"
    }

    /// A duration as the console shows it: `850ms`, `1.25s`, `12.5s`, `150s`.
    public static func duration(_ seconds: Double) -> String {
        if seconds >= 100 { return String(format: "%.0fs", seconds) }
        if seconds >= 10 { return String(format: "%2.1fs", seconds) }
        if seconds >= 1 { return String(format: "%1.2fs", seconds) }
        return String(format: "%.0fms", seconds * 1000)
    }

    /// An address as mitmproxy prints it (`human.format_address`): `127.0.0.1:8080`,
    /// `[2001:db8::1]:443` (IPv6 in its canonical short form), an IPv4-mapped IPv6 address as IPv4,
    /// `*:8080` for the unspecified address, and a host name as `example.com:80`.
    public static func address(_ address: Address) -> String {
        let host = address.host
        let port = address.port
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            return v4.s_addr == 0 ? "*:\(port)" : "\(host):\(port)"
        }
        var bare = Substring(host)
        var scope = ""
        if bare.hasPrefix("["), bare.hasSuffix("]") { bare = bare.dropFirst().dropLast() }
        if let percent = bare.firstIndex(of: "%") {
            scope = String(bare[percent...])
            bare = bare[..<percent]
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, String(bare), &v6) == 1 else {
            return "\(host):\(port)"
        }
        let bytes = withUnsafeBytes(of: &v6) { Array($0) }
        if scope.isEmpty, bytes.allSatisfy({ $0 == 0 }) {
            return "*:\(port)"
        }
        if scope.isEmpty, bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF {
            return "\(bytes[12]).\(bytes[13]).\(bytes[14]).\(bytes[15]):\(port)"
        }
        return "[\(IPv6Text.compressed(bytes))\(scope)]:\(port)"
    }
}

// MARK: - Escaping

/// mitmproxy's `strutils` escaping for terminal output.
enum TextEscaping {
    /// `escape_control_characters`: C0 controls and DEL become `.`; tab, CR and LF are kept unless
    /// `keepSpacing` is false.
    static func controlCharacters(_ text: String, keepSpacing: Bool = true) -> String {
        guard text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else { return text }
        var result = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            let value = scalar.value
            if value == 0x7F || (value < 0x20 && !(keepSpacing && (value == 0x09 || value == 0x0A || value == 0x0D))) {
                result.append(".")
            } else {
                result.append(scalar)
            }
        }
        return String(result)
    }

    /// `bytes_to_escaped_str`: printable ASCII as is (a backslash doubled), tab/LF/CR as `\t`, `\n`,
    /// `\r`, every other byte as `\xNN`.
    static func bytes(_ bytes: [UInt8]) -> String {
        var result = ""
        result.reserveCapacity(bytes.count)
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "\\"): result += "\\\\"
            case 0x09: result += "\\t"
            case 0x0A: result += "\\n"
            case 0x0D: result += "\\r"
            case 0x20..<0x7F: result.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = String(byte, radix: 16)
                result += byte < 0x10 ? "\\x0\(hex)" : "\\x\(hex)"
            }
        }
        return result
    }

    /// Python's `str.isspace` for one character.
    static func isPythonWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0: true
        default: scalar.properties.isWhitespace
        }
    }

    /// Python's `str.splitlines()`.
    static func pythonSplitLines(_ scalars: [Unicode.Scalar]) -> [String] {
        var lines: [String] = []
        var current = String.UnicodeScalarView()
        var index = 0
        while index < scalars.count {
            let scalar = scalars[index]
            switch scalar.value {
            case 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029:
                lines.append(String(current))
                current = String.UnicodeScalarView()
                if scalar.value == 0x0D, index + 1 < scalars.count, scalars[index + 1].value == 0x0A {
                    index += 1
                }
            default:
                current.append(scalar)
            }
            index += 1
        }
        if !current.isEmpty { lines.append(String(current)) }
        return lines
    }
}

// MARK: - Terminal styles

/// ANSI styling as mitmproxy's bundled `click.style` writes it: colour, then bold, dim and blink
/// codes, the text, and a reset.
enum ANSI {
    enum Color: Int {
        case red = 31
        case green = 32
        case yellow = 33
        case blue = 34
        case magenta = 35
        case cyan = 36
    }

    static let reset = "\u{1B}[0m"

    static func style(
        _ text: String,
        fg: Color? = nil,
        bold: Bool? = nil,
        dim: Bool? = nil,
        blink: Bool? = nil
    ) -> String {
        var result = ""
        if let fg { result += "\u{1B}[\(fg.rawValue)m" }
        if let bold { result += bold ? "\u{1B}[1m" : "\u{1B}[22m" }
        if let dim { result += dim ? "\u{1B}[2m" : "\u{1B}[22m" }
        if let blink { result += blink ? "\u{1B}[5m" : "\u{1B}[25m" }
        return result + text + reset
    }
}

// MARK: - Reason phrases

/// The reason phrases mitmproxy shows for HTTP/2 and HTTP/3 responses, which carry none.
enum HTTPStatusText {
    static func reason(for status: Int) -> String {
        switch status {
        case 100: "Continue"
        case 101: "Switching Protocols"
        case 102: "Processing"
        case 103: "Early Hints"
        case 200: "OK"
        case 201: "Created"
        case 202: "Accepted"
        case 203: "Non-Authoritative Information"
        case 204: "No Content"
        case 205: "Reset Content."
        case 206: "Partial Content"
        case 207: "Multi-Status"
        case 300: "Multiple Choices"
        case 301: "Moved Permanently"
        case 302: "Found"
        case 303: "See Other"
        case 304: "Not Modified"
        case 305: "Use Proxy"
        case 307: "Temporary Redirect"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 402: "Payment Required"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 406: "Not Acceptable"
        case 407: "Proxy Authentication Required"
        case 408: "Request Time-out"
        case 409: "Conflict"
        case 410: "Gone"
        case 411: "Length Required"
        case 412: "Precondition Failed"
        case 413: "Payload Too Large"
        case 414: "Request-URI Too Long"
        case 415: "Unsupported Media Type"
        case 416: "Requested Range not satisfiable"
        case 417: "Expectation Failed"
        case 418: "I'm a teapot"
        case 422: "Unprocessable Content"
        case 444: "No Response"
        case 499: "Client Closed Request"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Time-out"
        case 505: "HTTP Version not supported"
        case 507: "Insufficient Storage Space"
        case 510: "Not Extended"
        default: ""
        }
    }
}

// MARK: - Content views

/// The part of mitmproxy's content views the dumper needs: the automatic choice between JSON,
/// URL-encoded form, query, hex dump and raw text, rendered as styled lines.
///
/// mitmproxy has more views (HTML/XML, JavaScript, CSS, images, multipart, protobuf, msgpack,
/// GraphQL…); bodies they would show are shown here as raw text, or as a hex dump when mostly
/// binary.
enum ContentView {
    /// How a piece of a line is coloured.
    enum Style {
        case text, header, offset, highlight
        /// Uncoloured (mitmproxy's syntax tokens and errors, which the dumper doesn't colour).
        case plain
    }

    typealias Segment = (style: Style, text: String)
    typealias Line = [Segment]

    /// The lines of a message body.
    ///
    /// - Parameters:
    ///   - rawContent: The body as received; `nil` when it was not kept (streamed).
    ///   - query: The request's query items (requests only): with no body, they are shown instead.
    ///   - maxLines: Stop after this many lines (the result may be shorter, never longer).
    static func render(
        rawContent: ByteBuffer?,
        headers: Headers,
        query: [(String, String)]?,
        maxLines: Int?
    ) -> [Line] {
        guard let rawContent else {
            return [[(.plain, "content missing")]]
        }
        var content = rawContent
        if let encoding = headers["content-encoding"] {
            // As mitmproxy: a body that cannot be decoded is shown as received.
            if let decoded = try? ContentEncoding.decode(rawContent, contentEncodingHeader: encoding) {
                content = decoded
            }
        }
        let data = Array(content.readableBytesView)
        let contentType = headers["content-type"].flatMap(parseContentType)
        let lines = render(data: data, contentType: contentType, query: query ?? [], maxLines: maxLines ?? Int.max)
        return lines.map { line in line.map { ($0.style, TextEscaping.controlCharacters($0.text)) } }
    }

    enum Kind {
        case json, urlEncoded, query, hexDump, raw
    }

    /// The view mitmproxy's auto view would pick (of those implemented): the highest priority.
    static func pick(data: [UInt8], contentType: String?, hasQuery: Bool) -> Kind? {
        var best: (priority: Double, kind: Kind)? = nil
        func offer(_ priority: Double, _ kind: Kind) {
            if priority > (best?.priority ?? 0) { best = (priority, kind) }
        }
        if !data.isEmpty, let contentType {
            if contentType == "application/json" || contentType == "application/json-rpc"
                || (contentType.hasPrefix("application/") && contentType.hasSuffix("+json"))
            {
                offer(1, .json)
            }
            if contentType == "application/x-www-form-urlencoded" { offer(1, .urlEncoded) }
        }
        if hasQuery && data.isEmpty { offer(0.3, .query) }
        if isMostlyBinary(data) { offer(0.2, .hexDump) }
        if !data.isEmpty { offer(0.1, .raw) }
        return best?.kind
    }

    static func render(data: [UInt8], contentType: String?, query: [(String, String)], maxLines: Int) -> [Line] {
        guard let kind = pick(data: data, contentType: contentType, hasQuery: !query.isEmpty) else {
            return []  // "No content"
        }
        switch kind {
        case .json:
            // A body that doesn't parse is shown raw.
            guard let value = JSONText.parse(data) else { return raw(data, maxLines: maxLines) }
            return Array(JSONText.formatted(value).prefix(maxLines))
        case .urlEncoded:
            guard data.allSatisfy({ $0 < 0x80 }) else { return raw(data, maxLines: maxLines) }
            return Array(pairs(FormURLEncoded.decode(String(decoding: data, as: UTF8.self))).prefix(maxLines))
        case .query:
            return Array(pairs(query).prefix(maxLines))
        case .hexDump:
            return hexDump(data, maxLines: maxLines)
        case .raw:
            return raw(data, maxLines: maxLines)
        }
    }

    /// `type/subtype`, lowercased, from a Content-Type value (mitmproxy's `parse_content_type`,
    /// which trims nothing).
    static func parseContentType(_ value: String) -> String? {
        let mediaType = value.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false)[0]
        let parts = mediaType.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        return "\(parts[0].lowercased())/\(parts[1].lowercased())"
    }

    /// mitmproxy's `is_mostly_bin`: more than 30% of the first 100 bytes are not text.
    static func isMostlyBinary(_ data: [UInt8]) -> Bool {
        guard !data.isEmpty else { return false }
        let head = data.prefix(100)
        let binary = head.filter { $0 < 9 || (13 < $0 && $0 < 32) || $0 > 126 }.count
        return Double(binary) / Double(head.count) > 0.3
    }

    /// Raw text: the body split into lines at LF, CR or CRLF, each decoded as UTF-8.
    static func raw(_ data: [UInt8], maxLines: Int) -> [Line] {
        var lines: [Line] = []
        var start = 0
        var index = 0
        while index < data.count, lines.count < maxLines {
            let byte = data[index]
            if byte == 0x0A || byte == 0x0D {
                lines.append([(.text, String(decoding: data[start..<index], as: UTF8.self))])
                if byte == 0x0D, index + 1 < data.count, data[index + 1] == 0x0A { index += 1 }
                start = index + 1
            }
            index += 1
        }
        if start < data.count, lines.count < maxLines {
            lines.append([(.text, String(decoding: data[start...], as: UTF8.self))])
        }
        return lines
    }

    /// `0000000000 7f 45 4c 46 …   .ELF…`: offset, sixteen bytes in hex, and those bytes as ASCII.
    static func hexDump(_ data: [UInt8], maxLines: Int) -> [Line] {
        var lines: [Line] = []
        var offset = 0
        while offset < data.count, lines.count < maxLines {
            let part = data[offset..<min(offset + 16, data.count)]
            var offsetText = String(offset, radix: 16)
            offsetText = String(repeating: "0", count: max(0, 10 - offsetText.count)) + offsetText
            let pairs = part.map { $0 < 0x10 ? "0" + String($0, radix: 16) : String($0, radix: 16) }
            var hex = pairs.joined(separator: " ")
            hex += String(repeating: " ", count: max(0, 47 - hex.count))
            let ascii = String(
                String.UnicodeScalarView(part.map { (0x20..<0x7F).contains($0) ? Unicode.Scalar($0) : "." })
            )
            lines.append([(.offset, offsetText + " "), (.text, hex + "   "), (.text, ascii)])
            offset += 16
        }
        return lines
    }

    /// `key:  value` lines, keys padded to the longest (at most 30 characters).
    static func pairs(_ items: [(String, String)]) -> [Line] {
        let longest = min(items.map { $0.0.unicodeScalars.count }.max() ?? 0, 30)
        return items.map { key, value in
            let label = key + ":"
            let padding = max(0, longest + 2 - label.unicodeScalars.count)
            return [(.header, label + String(repeating: " ", count: padding)), (.text, value)]
        }
    }
}

// MARK: - JSON view

/// mitmproxy's JSON view: the body parsed as Python's `json.loads` would, and written back as
/// `json.dumps(indent=4, ensure_ascii=False)` does, keys in their original order.
enum JSONText {
    indirect enum Value {
        case object([(String, Value)])
        case array([Value])
        case string(String)
        /// An integer, as its decimal digits.
        case integer(String)
        case float(Double)
        case bool(Bool)
        case null
    }

    // MARK: Parsing

    /// The parsed body, or nil when Python would refuse it (invalid UTF-8, invalid JSON).
    static func parse(_ data: [UInt8]) -> Value? {
        // Python decodes the body as UTF-8 first and gives up on invalid bytes.
        guard String(validating: data, as: UTF8.self) != nil else { return nil }
        var parser = Parser(bytes: data)
        guard let value = parser.parseDocument() else { return nil }
        return value
    }

    private struct Parser {
        let bytes: [UInt8]
        var index = 0
        var depth = 0

        init(bytes: [UInt8]) {
            self.bytes = bytes
        }

        mutating func parseDocument() -> Value? {
            skipWhitespace()
            guard let value = parseValue() else { return nil }
            skipWhitespace()
            return index == bytes.count ? value : nil
        }

        mutating func skipWhitespace() {
            while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
        }

        mutating func consume(_ literal: String) -> Bool {
            let utf8 = Array(literal.utf8)
            guard index + utf8.count <= bytes.count, Array(bytes[index..<index + utf8.count]) == utf8 else {
                return false
            }
            index += utf8.count
            return true
        }

        mutating func parseValue() -> Value? {
            guard index < bytes.count else { return nil }
            switch bytes[index] {
            case UInt8(ascii: "\""):
                return parseString().map { .string($0) }
            case UInt8(ascii: "{"):
                return parseObject()
            case UInt8(ascii: "["):
                return parseArray()
            case UInt8(ascii: "n") where consume("null"):
                return .null
            case UInt8(ascii: "t") where consume("true"):
                return .bool(true)
            case UInt8(ascii: "f") where consume("false"):
                return .bool(false)
            default:
                if let number = parseNumber() { return number }
                if consume("NaN") { return .float(.nan) }
                if consume("Infinity") { return .float(.infinity) }
                if consume("-Infinity") { return .float(-.infinity) }
                return nil
            }
        }

        mutating func parseObject() -> Value? {
            depth += 1
            defer { depth -= 1 }
            guard depth <= 512 else { return nil }  // Python gives up on deep nesting too
            index += 1  // {
            var members: [(String, Value)] = []
            var positions: [String: Int] = [:]
            skipWhitespace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
                index += 1
                return .object(members)
            }
            while true {
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\""), let key = parseString() else {
                    return nil
                }
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { return nil }
                index += 1
                skipWhitespace()
                guard let value = parseValue() else { return nil }
                // A repeated key keeps its first place and takes the last value, as a Python dict.
                if let position = positions[key] {
                    members[position].1 = value
                } else {
                    positions[key] = members.count
                    members.append((key, value))
                }
                skipWhitespace()
                guard index < bytes.count else { return nil }
                if bytes[index] == UInt8(ascii: ",") {
                    index += 1
                    continue
                }
                if bytes[index] == UInt8(ascii: "}") {
                    index += 1
                    return .object(members)
                }
                return nil
            }
        }

        mutating func parseArray() -> Value? {
            depth += 1
            defer { depth -= 1 }
            guard depth <= 512 else { return nil }
            index += 1  // [
            var elements: [Value] = []
            skipWhitespace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
                index += 1
                return .array(elements)
            }
            while true {
                skipWhitespace()
                guard let value = parseValue() else { return nil }
                elements.append(value)
                skipWhitespace()
                guard index < bytes.count else { return nil }
                if bytes[index] == UInt8(ascii: ",") {
                    index += 1
                    continue
                }
                if bytes[index] == UInt8(ascii: "]") {
                    index += 1
                    return .array(elements)
                }
                return nil
            }
        }

        /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?`
        mutating func parseNumber() -> Value? {
            let start = index
            var cursor = index
            func isDigit(_ i: Int) -> Bool { i < bytes.count && (0x30...0x39).contains(bytes[i]) }
            if cursor < bytes.count, bytes[cursor] == UInt8(ascii: "-") { cursor += 1 }
            guard isDigit(cursor) else { return nil }
            if bytes[cursor] == UInt8(ascii: "0") {
                cursor += 1
            } else {
                while isDigit(cursor) { cursor += 1 }
            }
            let integerEnd = cursor
            var isFloat = false
            if cursor < bytes.count, bytes[cursor] == UInt8(ascii: "."), isDigit(cursor + 1) {
                cursor += 1
                while isDigit(cursor) { cursor += 1 }
                isFloat = true
            }
            if cursor < bytes.count, bytes[cursor] == UInt8(ascii: "e") || bytes[cursor] == UInt8(ascii: "E") {
                var exponent = cursor + 1
                let sign = exponent < bytes.count ? bytes[exponent] : 0
                if sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") {
                    exponent += 1
                }
                if isDigit(exponent) {
                    cursor = exponent
                    while isDigit(cursor) { cursor += 1 }
                    isFloat = true
                }
            }
            index = cursor
            let text = String(decoding: bytes[start..<cursor], as: UTF8.self)
            if isFloat {
                guard let double = Double(text) else { return nil }
                return .float(double)
            }
            // Python refuses integers longer than 4300 digits.
            guard integerEnd - start <= 4300 else { return nil }
            return .integer(text == "-0" ? "0" : text)
        }

        mutating func parseString() -> String? {
            index += 1  // opening quote
            var scalars = String.UnicodeScalarView()
            var runStart = index
            func flushRun(_ end: Int) {
                scalars.append(contentsOf: String(decoding: bytes[runStart..<end], as: UTF8.self).unicodeScalars)
            }
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\"") {
                    flushRun(index)
                    index += 1
                    return String(scalars)
                }
                if byte < 0x20 { return nil }  // strict: raw control characters are invalid
                if byte != UInt8(ascii: "\\") {
                    index += 1
                    continue
                }
                flushRun(index)
                index += 1
                guard index < bytes.count else { return nil }
                let escape = bytes[index]
                index += 1
                switch escape {
                case UInt8(ascii: "\""): scalars.append("\"")
                case UInt8(ascii: "\\"): scalars.append("\\")
                case UInt8(ascii: "/"): scalars.append("/")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "u"):
                    guard let unit = hex4() else { return nil }
                    if (0xD800..<0xDC00).contains(unit), index + 1 < bytes.count,
                        bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u")
                    {
                        let save = index
                        index += 2
                        if let low = hex4(), (0xDC00..<0xE000).contains(low) {
                            let value = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                            scalars.append(Unicode.Scalar(value)!)
                        } else {
                            index = save
                            scalars.append("\u{FFFD}")
                        }
                    } else {
                        // A lone surrogate, which Python would keep, can't be a Swift string.
                        scalars.append(Unicode.Scalar(unit) ?? "\u{FFFD}")
                    }
                default:
                    return nil
                }
                runStart = index
            }
            return nil
        }

        mutating func hex4() -> UInt32? {
            guard index + 4 <= bytes.count else { return nil }
            var value: UInt32 = 0
            for byte in bytes[index..<index + 4] {
                guard let digit = byte.asciiHexValue else { return nil }
                value = value << 4 | UInt32(digit)
            }
            index += 4
            return value
        }
    }

    // MARK: Formatting

    /// The view's lines. Python's encoder emits the text in chunks, and mitmproxy colours each
    /// chunk by what it starts with; the chunks are reproduced so that the colours match too.
    static func formatted(_ value: Value) -> [ContentView.Line] {
        var chunks: [String] = []
        encode(value, level: 0, into: &chunks)

        var lines: [ContentView.Line] = []
        var current: ContentView.Line = []
        for var chunk in chunks {
            if let newline = chunk.firstIndex(of: "\n") {
                current.append((.text, String(chunk[..<newline])))
                lines.append(current)
                current = []
                chunk = String(chunk[chunk.index(after: newline)...])
            }
            // Strings, numbers and true/false/null are syntax tokens, which the dumper leaves
            // uncoloured; everything else (indentation, brackets, commas) is "text".
            let body = chunk.drop(while: { $0 == " " })
            if body.hasPrefix("\"") {
                current.append((.plain, chunk))  // Token_Name_Tag or Token_Literal_String
            } else if let first = body.first, first.isASCII, first.isNumber {
                current.append((.plain, chunk))  // Token_Literal_Number
            } else if body.hasPrefix("true") || body.hasPrefix("null") || body.hasPrefix("false") {
                current.append((.plain, chunk))  // Token_Keyword_Constant
            } else {
                current.append((.text, chunk))
            }
        }
        lines.append(current)
        return lines
    }

    private static let indentUnit = "    "

    /// Python's `_iterencode` with `indent=4`.
    private static func encode(_ value: Value, level: Int, into chunks: inout [String]) {
        switch value {
        case .array(let elements):
            encodeArray(elements, level: level, into: &chunks)
        case .object(let members):
            encodeObject(members, level: level, into: &chunks)
        default:
            chunks.append(scalarText(value))
        }
    }

    private static func encodeArray(_ elements: [Value], level: Int, into chunks: inout [String]) {
        guard !elements.isEmpty else {
            chunks.append("[]")
            return
        }
        let inner = level + 1
        let newlineIndent = "\n" + String(repeating: indentUnit, count: inner)
        var buffer = "[" + newlineIndent
        for (index, element) in elements.enumerated() {
            if index > 0 { buffer = "," + newlineIndent }
            switch element {
            case .array, .object:
                chunks.append(buffer)
                encode(element, level: inner, into: &chunks)
            default:
                chunks.append(buffer + scalarText(element))
            }
        }
        chunks.append("\n" + String(repeating: indentUnit, count: level))
        chunks.append("]")
    }

    private static func encodeObject(_ members: [(String, Value)], level: Int, into chunks: inout [String]) {
        guard !members.isEmpty else {
            chunks.append("{}")
            return
        }
        let inner = level + 1
        let newlineIndent = "\n" + String(repeating: indentUnit, count: inner)
        chunks.append("{")
        chunks.append(newlineIndent)
        for (index, (key, element)) in members.enumerated() {
            if index > 0 { chunks.append("," + newlineIndent) }
            chunks.append(quoted(key))
            chunks.append(": ")
            switch element {
            case .array, .object:
                encode(element, level: inner, into: &chunks)
            default:
                chunks.append(scalarText(element))
            }
        }
        chunks.append("\n" + String(repeating: indentUnit, count: level))
        chunks.append("}")
    }

    private static func scalarText(_ value: Value) -> String {
        switch value {
        case .string(let string): quoted(string)
        case .integer(let digits): digits
        case .float(let double): pythonFloat(double)
        case .bool(let bool): bool ? "true" : "false"
        case .null: "null"
        case .array, .object: ""  // not scalars; handled by the callers
        }
    }

    /// A JSON string as Python writes it with `ensure_ascii=False`: only `"`, `\` and control
    /// characters are escaped.
    static func quoted(_ string: String) -> String {
        JSONString.quoted(string, asciiOnly: false)
    }

    /// Python's `float.__repr__`, as `json` writes floats: the shortest round-tripping digits, in
    /// positional notation when the decimal exponent is in -4..<16 and scientific otherwise.
    static func pythonFloat(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value < 0 ? "-Infinity" : "Infinity" }
        if value == 0 { return value.sign == .minus ? "-0.0" : "0.0" }
        // Swift's description has the same shortest digits; only the layout differs.
        var text = Substring(value.magnitude.description)
        var exponent = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            exponent = Int(text[text.index(after: e)...]) ?? 0
            text = text[..<e]
        }
        var digits: String
        var pointPosition: Int
        if let dot = text.firstIndex(of: ".") {
            digits = String(text[..<dot]) + String(text[text.index(after: dot)...])
            pointPosition = text.distance(from: text.startIndex, to: dot)
        } else {
            digits = String(text)
            pointPosition = text.count
        }
        pointPosition += exponent
        while digits.hasPrefix("0"), digits.count > 1 {
            digits.removeFirst()
            pointPosition -= 1
        }
        while digits.hasSuffix("0"), digits.count > 1 { digits.removeLast() }

        let sign = value.sign == .minus ? "-" : ""
        // Python: positional when -4 < decpt <= 16, where 0.d1d2… × 10^decpt.
        if pointPosition > -4 && pointPosition <= 16 {
            if pointPosition <= 0 {
                return sign + "0." + String(repeating: "0", count: -pointPosition) + digits
            }
            if pointPosition >= digits.count {
                return sign + digits + String(repeating: "0", count: pointPosition - digits.count) + ".0"
            }
            let split = digits.index(digits.startIndex, offsetBy: pointPosition)
            return sign + digits[..<split] + "." + digits[split...]
        }
        let mantissa = digits.count > 1 ? "\(digits.first!).\(digits.dropFirst())" : digits
        let e = pointPosition - 1
        let magnitude = abs(e) < 10 ? "0\(abs(e))" : "\(abs(e))"
        return "\(sign)\(mantissa)e\(e < 0 ? "-" : "+")\(magnitude)"
    }
}
