import MitmCore
import MitmTestSupport
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import MitmServer

/// A client's HTTP/1 pipeline in regular mode (`PipelineSetup.addHTTP1`), fed raw bytes: what the
/// client gets back for bad input, and how CONNECT turns the connection into a tunnel.
@Suite struct HTTP1PipelineTests {
    struct Client {
        let channel: EmbeddedChannel
        let harness: TestServices
        let connection: ClientConnectionContext

        /// Sends `text` as one read and runs the loop until the client has been answered (or closed).
        func send(_ text: String) throws {
            try channel.writeInbound(ByteBuffer(text: text))
        }
    }

    func makeClient(options: ProxyOptions = ProxyOptions(), answer: String? = nil) throws -> Client {
        let harness = TestServices(options: options, answer: answer)
        let channel = try makeAcceptedChannel()
        let connection = harness.connection(on: channel.eventLoop, mode: .regular)
        try PipelineSetup.addHTTP1(to: channel.pipeline.syncOperations, connection: connection)
        try activate(channel)
        return Client(channel: channel, harness: harness, connection: connection)
    }

    /// Runs the loop until the response is complete (the outbound bytes contain `marker`) and returns
    /// everything written.
    func response(of client: Client, endingWith marker: String = "</html>", sourceLocation: SourceLocation = #_sourceLocation) -> String {
        var written = ""
        let done = runUntil(client.channel) {
            written += drainOutbound(client.channel).text
            return written.contains(marker)
        }
        #expect(done, "no complete response; got: \(written.debugDescription)", sourceLocation: sourceLocation)
        return written
    }

    @Test func malformedRequestGets400WithAReadableReason() throws {
        let client = try makeClient()
        try client.send("GARBAGE\r\n\r\n")
        let written = response(of: client)
        #expect(written.hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        #expect(written.lowercased().contains("connection: close"))
        #expect(written.contains("<p>Bad request: invalid HTTP method.</p>"))
        #expect(written.lowercased().contains("content-type: text/html"))
        #expect(runUntil(client.channel) { !client.channel.isActive }, "the connection closes after the answer")
        #expect(client.harness.recording.count(of: .error) == 1, "the failed flow reaches the error hook")
        #expect(client.harness.logs.contains("HTTP protocol error in client request"))
    }

    @Test func oversizedHeadGets431NamingTheLimit() throws {
        var options = ProxyOptions()
        options.headerSizeLimit = 1024
        let client = try makeClient(options: options)
        let big = String(repeating: "a", count: 4096)
        try client.send("GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nX-Big: \(big)\r\n\r\n")
        let written = response(of: client)
        #expect(written.hasPrefix("HTTP/1.1 431 Request Header Fields Too Large\r\n"))
        #expect(written.contains("header_size_limit"))
        #expect(written.contains("1024"))
        #expect(runUntil(client.channel) { !client.channel.isActive })
    }

    @Test func originFormInRegularModeGets400NamingTheExpectedForm() throws {
        let client = try makeClient()
        try client.send("GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n")
        let written = response(of: client)
        #expect(written.hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        #expect(written.contains("expected authority or absolute form"))
        #expect(written.contains("/index.html"))
        #expect(runUntil(client.channel) { !client.channel.isActive })
        let flows = client.harness.recording.flows(at: .error)
        #expect(flows.count == 1)
        #expect(flows.first?.error?.message.contains("origin form") == true)
    }

    @Test func slowHeadGets408AndTheConnectionCloses() throws {
        var options = ProxyOptions()
        options.requestHeadTimeout = 2
        let client = try makeClient(options: options)
        try client.send("GET http://example.com/ HTTP/1.1\r\nHost: exa")
        client.channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(client.channel.isActive)
        client.channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        let written = drainOutbound(client.channel).text
        #expect(written.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"))
        #expect(written.contains("request_head_timeout"))
        #expect(!client.channel.isActive)
        #expect(client.harness.recording.count(of: .requestHeaders) == 0)
    }

    @Test func absoluteFormRequestAnsweredByAnAddonIsServed() throws {
        let client = try makeClient(answer: "from the addon")
        try client.send("GET http://example.com/hello?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
        let written = response(of: client, endingWith: "from the addon")
        #expect(written.hasPrefix("HTTP/1.1 200 OK\r\n"))
        let flow = try #require(client.harness.recording.flows(at: .requestHeaders).first)
        #expect(flow.request.host == "example.com")
        #expect(flow.request.port == 80)
        #expect(flow.request.path == "/hello?x=1")
        #expect(client.channel.isActive, "a keep-alive request leaves the connection open")
        _ = try client.channel.finish(acceptAlreadyClosed: true)
    }

    @Test func connectOpensATunnelAndHandsTheConnectionToThePeek() throws {
        let client = try makeClient()
        try client.send("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        client.channel.embeddedEventLoop.run()
        let written = drainOutbound(client.channel).text
        #expect(written.hasPrefix("HTTP/1.1 200 Connection established\r\n"))
        #expect(written.hasSuffix("\r\n\r\n"))
        #expect(client.channel.isActive)
        #expect(client.connection.tunnelTarget == Address(host: "example.com", port: 443))

        #expect(pipeline(client.channel, contains: ProtocolPeekHandler.self))
        #expect(!pipeline(client.channel, contains: HTTPProxyHandler.self))
        #expect(!pipeline(client.channel, contains: ByteToMessageHandler<HTTPRequestDecoder>.self))
        #expect(!pipeline(client.channel, contains: HTTPResponseEncoder.self))
        #expect(!pipeline(client.channel, contains: RequestHeadTimer.self))
        #expect(client.harness.recording.count(of: .requestHeaders) == 0, "CONNECT itself runs no HTTP hooks")
        _ = try client.channel.finish(acceptAlreadyClosed: true)
    }

    @Test func bytesSentWithTheConnectReachThePeek() throws {
        let client = try makeClient()
        // The CONNECT and the first five bytes of a TLS record (not enough for a ClientHello) in one
        // read: the peek must be holding those five bytes, waiting for more.
        var bytes = ByteBuffer(text: "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        bytes.writeBytes([0x16, 0x03, 0x01, 0x02, 0x00])
        try client.channel.writeInbound(bytes)
        client.channel.embeddedEventLoop.run()
        #expect(drainOutbound(client.channel).text.hasPrefix("HTTP/1.1 200 Connection established\r\n"))
        #expect(pipeline(client.channel, contains: ProtocolPeekHandler.self))
        #expect(!pipeline(client.channel, contains: HTTPProxyHandler.self))
        #expect(client.channel.isActive)
        // Nothing leaked past the peek to the end of the pipeline.
        #expect(try client.channel.readInbound(as: ByteBuffer.self) == nil)
        _ = try client.channel.finish(acceptAlreadyClosed: true)
    }

    @Test func requestSentWithTheConnectIsServedInsideTheTunnel() throws {
        let client = try makeClient(answer: "tunnelled")
        try client.send(
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
                + "GET /inside HTTP/1.1\r\nHost: example.com\r\n\r\n"
        )
        let written = response(of: client, endingWith: "tunnelled")
        #expect(written.hasPrefix("HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.1 200 OK\r\n"))
        let flow = try #require(client.harness.recording.flows(at: .requestHeaders).first)
        #expect(flow.request.method == "GET")
        #expect(flow.request.path == "/inside")
        #expect(flow.request.host == "example.com")
        #expect(flow.request.port == 443)
        #expect(!pipeline(client.channel, contains: ProtocolPeekHandler.self), "the peek chose HTTP/1 and left")
        #expect(pipeline(client.channel, contains: HTTPProxyHandler.self))
        _ = try client.channel.finish(acceptAlreadyClosed: true)
    }

    @Test func invalidConnectTargetGets400() throws {
        let client = try makeClient()
        try client.send("CONNECT example.com HTTP/1.1\r\nHost: example.com\r\n\r\n")
        let written = response(of: client)
        #expect(written.hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        #expect(written.contains("Invalid CONNECT target 'example.com': expected host:port"))
        #expect(!pipeline(client.channel, contains: ProtocolPeekHandler.self))
    }
}
