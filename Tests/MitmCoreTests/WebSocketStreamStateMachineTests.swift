import MitmCore
import NIOCore
import Testing

/// Playbooks for `WebSocketStreamStateMachine`: frames and connection ends go in, every action that
/// comes out is checked exactly. Hooks are answered as the relay answers them: the addons get a copy
/// of the flow, and `hookCompleted` gets it back, edited or not.
@Suite("WebSocketStreamStateMachine")
struct WebSocketStreamStateMachineTests {
    typealias Machine = WebSocketStreamStateMachine
    typealias Action = Machine.Action
    typealias Frame = Machine.Frame

    static func makeFlow() -> HTTPFlow {
        var request = HTTPRequest(method: "GET", scheme: "http", host: "example.com", port: 80, path: "/ws", httpVersion: "HTTP/1.1")
        request.headers["upgrade"] = "websocket"
        let client = ClientConnection(
            peername: Address(host: "127.0.0.1", port: 5000),
            sockname: Address(host: "127.0.0.1", port: 8080),
            proxyMode: "regular"
        )
        return HTTPFlow(request: request, clientConnection: client)
    }

    /// A machine whose websocket_start has run.
    static func opened(limits: Machine.Limits = .init()) -> Machine {
        var machine = Machine(flow: makeFlow(), limits: limits)
        #expect(machine.start() == [.runHook(.start)])
        #expect(machine.isHookInFlight)
        #expect(machine.hookCompleted(machine.flow) == [])
        return machine
    }

    static func text(_ text: String, fin: Bool = true, masked: Bool, opcode: UInt8 = Frame.Opcode.text) -> Frame {
        Frame(fin: fin, opcode: opcode, isMasked: masked, payload: ByteBuffer(string: text))
    }

    static func binary(_ bytes: [UInt8], masked: Bool) -> Frame {
        Frame(opcode: Frame.Opcode.binary, isMasked: masked, payload: ByteBuffer(bytes: bytes))
    }

    static func outgoing(_ text: String, opcode: UInt8 = Frame.Opcode.text) -> Frame {
        Frame(opcode: opcode, payload: ByteBuffer(string: text))
    }

    static func close(_ code: Int, _ reason: String, masked: Bool) -> Frame {
        var frame = Frame.close(code: code, reason: reason)
        frame.isMasked = masked
        return frame
    }

    // MARK: - Messages

    @Test("a text message from the client is recorded, hooked, then forwarded to the server unmasked for the driver to mask")
    func clientTextMessage() {
        var m = Self.opened()
        #expect(m.frameReceived(Self.text("hello", masked: true), from: .client) == [.runHook(.message)])
        #expect(m.isHookInFlight)
        let message = m.flow.websocket?.messages.last
        #expect(message?.text == "hello")
        #expect(message?.fromClient == true)
        #expect(message?.kind == .text)
        #expect(m.hookCompleted(m.flow) == [.send(Self.outgoing("hello"), to: .server)])
        #expect(!m.isHookInFlight)
    }

    @Test("a binary message from the server goes to the client")
    func serverBinaryMessage() {
        var m = Self.opened()
        #expect(m.frameReceived(Self.binary([0, 1, 2, 255], masked: false), from: .server) == [.runHook(.message)])
        #expect(m.flow.websocket?.messages.last?.fromClient == false)
        #expect(m.flow.websocket?.messages.last?.kind == .binary)
        let expected = Frame(opcode: Frame.Opcode.binary, payload: ByteBuffer(bytes: [0, 1, 2, 255]))
        #expect(m.hookCompleted(m.flow) == [.send(expected, to: .client)])
    }

    @Test("fragments are reassembled into one message, with a ping in between forwarded at once")
    func fragmentationWithInterleavedPing() {
        var m = Self.opened()
        #expect(m.frameReceived(Self.text("hel", fin: false, masked: true), from: .client) == [])
        #expect(m.frameReceived(Frame(opcode: Frame.Opcode.ping, isMasked: true, payload: ByteBuffer(string: "p")), from: .client)
            == [.send(Frame(opcode: Frame.Opcode.ping, payload: ByteBuffer(string: "p")), to: .server)])
        #expect(m.frameReceived(Self.text("lo ", fin: false, masked: true, opcode: Frame.Opcode.continuation), from: .client) == [])
        #expect(m.frameReceived(Self.text("world", masked: true, opcode: Frame.Opcode.continuation), from: .client)
            == [.runHook(.message)])
        #expect(m.flow.websocket?.messages.count == 1, "pings are not messages")
        #expect(m.hookCompleted(m.flow) == [.send(Self.outgoing("hello world"), to: .server)])
    }

    @Test("both directions reassemble independently")
    func fragmentsInBothDirections() {
        var m = Self.opened()
        #expect(m.frameReceived(Self.text("a", fin: false, masked: true), from: .client) == [])
        #expect(m.frameReceived(Self.text("b", fin: false, masked: false), from: .server) == [])
        #expect(m.frameReceived(Self.text("A", masked: false, opcode: Frame.Opcode.continuation), from: .server) == [.runHook(.message)])
        #expect(m.hookCompleted(m.flow) == [.send(Self.outgoing("bA"), to: .client)])
        #expect(m.frameReceived(Self.text("B", masked: true, opcode: Frame.Opcode.continuation), from: .client) == [.runHook(.message)])
        #expect(m.hookCompleted(m.flow) == [.send(Self.outgoing("aB"), to: .server)])
    }

    @Test("frames that arrive while a hook runs wait for it, in order")
    func queuedDuringHook() {
        var m = Self.opened()
        #expect(m.frameReceived(Self.text("one", masked: true), from: .client) == [.runHook(.message)])
        #expect(m.frameReceived(Self.text("two", masked: true), from: .client) == [])
        #expect(m.frameReceived(Frame(opcode: Frame.Opcode.pong, payload: ByteBuffer()), from: .server) == [])
        #expect(m.flow.websocket?.messages.count == 1)
        #expect(m.hookCompleted(m.flow) == [.send(Self.outgoing("one"), to: .server), .runHook(.message)])
        #expect(m.flow.websocket?.messages.last?.text == "two")
        #expect(m.hookCompleted(m.flow) == [
            .send(Self.outgoing("two"), to: .server),
            .send(Frame(opcode: Frame.Opcode.pong, payload: ByteBuffer()), to: .client),
        ])
    }

    @Test("frames that arrive during websocket_start wait for it")
    func queuedDuringStart() {
        var m = Machine(flow: Self.makeFlow())
        #expect(m.flow.websocket == WebSocketData())
        #expect(m.start() == [.runHook(.start)])
        #expect(m.frameReceived(Self.text("early", masked: false), from: .server) == [])
        #expect(m.hookCompleted(m.flow) == [.runHook(.message)])
    }

    @Test("frames and a connection end that arrive before the start wait for websocket_start")
    func queuedBeforeStart() {
        var m = Machine(flow: Self.makeFlow())
        #expect(m.frameReceived(Self.text("first", masked: true), from: .client) == [])
        #expect(m.connectionClosed(.client) == [])
        #expect(m.start() == [.runHook(.start)])
        #expect(m.hookCompleted(m.flow) == [.runHook(.message)])
        #expect(m.hookCompleted(m.flow) == [
            .send(Self.outgoing("first"), to: .server), .close(.client), .close(.server), .runHook(.end),
        ])
    }

    // MARK: - Addons

    @Test("an addon edits a message: the edited content goes out")
    func modifiedMessage() {
        var m = Self.opened()
        _ = m.frameReceived(Self.text("hello", masked: true), from: .client)
        var edited = m.flow
        edited.websocket!.messages[0].text = "HELLO, edited"
        #expect(m.hookCompleted(edited) == [.send(Self.outgoing("HELLO, edited"), to: .server)])
        #expect(m.flow.websocket?.messages[0].text == "HELLO, edited")
    }

    @Test("an addon drops a message: nothing goes out, the message stays on the flow marked dropped")
    func droppedMessage() {
        var m = Self.opened()
        _ = m.frameReceived(Self.text("secret", masked: false), from: .server)
        var edited = m.flow
        edited.websocket!.messages[0].dropped = true
        #expect(m.hookCompleted(edited) == [])
        #expect(m.flow.websocket?.messages[0].dropped == true)
    }

    @Test("an addon injects messages: each goes the way its fromClient says, after the message itself")
    func injectedMessages() {
        var m = Self.opened()
        _ = m.frameReceived(Self.text("hi", masked: true), from: .client)
        var edited = m.flow
        var toClient = WebSocketMessage(kind: .text, fromClient: false, text: "to the client")
        toClient.injected = true
        var toServer = WebSocketMessage(kind: .binary, fromClient: true, content: ByteBuffer(bytes: [7]))
        toServer.injected = true
        let notInjected = WebSocketMessage(kind: .text, fromClient: true, text: "only recorded")
        edited.websocket!.messages += [toClient, notInjected, toServer]
        #expect(m.hookCompleted(edited) == [
            .send(Self.outgoing("hi"), to: .server),
            .send(Self.outgoing("to the client"), to: .client),
            .send(Frame(opcode: Frame.Opcode.binary, payload: ByteBuffer(bytes: [7])), to: .server),
        ])
    }

    @Test("a message injected in websocket_start is sent when the connection opens")
    func injectedAtStart() {
        var m = Machine(flow: Self.makeFlow())
        _ = m.start()
        var edited = m.flow
        var welcome = WebSocketMessage(kind: .text, fromClient: false, text: "welcome")
        welcome.injected = true
        edited.websocket!.messages.append(welcome)
        #expect(m.hookCompleted(edited) == [.send(Self.outgoing("welcome"), to: .client)])
    }

    @Test("an addon that removes the WebSocket data: it is put back, and the connection goes on")
    func websocketRemovedByAddon() {
        var m = Self.opened()
        _ = m.frameReceived(Self.text("x", masked: true), from: .client)
        var edited = m.flow
        edited.websocket = nil
        #expect(m.hookCompleted(edited) == [.send(Self.outgoing("x"), to: .server)], "the data as it was before the hook")
        #expect(m.flow.websocket?.messages.count == 1)
        #expect(m.frameReceived(Self.text("y", masked: true), from: .client) == [.runHook(.message)])
    }

    // MARK: - Closing

    @Test("the client closes: recorded, forwarded, the server's echo goes back, both close, websocket_end")
    func clientCloses() {
        var m = Self.opened()
        let close = Self.close(1000, "bye", masked: true)
        #expect(m.frameReceived(close, from: .client) == [.send(Frame.close(code: 1000, reason: "bye"), to: .server)])
        #expect(m.isClosing)
        #expect(m.flow.websocket?.closeCode == 1000)
        #expect(m.flow.websocket?.closeReason == "bye")
        #expect(m.flow.websocket?.closedByClient == true)
        #expect(m.flow.websocket?.timestampEnd != nil)
        // Data after the close is not forwarded.
        #expect(m.frameReceived(Self.text("late", masked: false), from: .server) == [])
        let echo = Self.close(1000, "", masked: false)
        #expect(m.frameReceived(echo, from: .server) == [
            .send(Frame.close(code: 1000, reason: ""), to: .client), .close(.client), .close(.server), .runHook(.end),
        ])
        #expect(m.hookCompleted(m.flow) == [])
        #expect(m.isDone)
        #expect(m.flow.error == nil)
        #expect(m.frameReceived(Self.text("after", masked: true), from: .client) == [])
        #expect(m.connectionClosed(.client) == [])
    }

    @Test("the server closes with an empty close frame: code 1005; the client's connection end finishes it")
    func serverClosesWithoutCode() {
        var m = Self.opened()
        let close = Frame(opcode: Frame.Opcode.close, payload: ByteBuffer())
        #expect(m.frameReceived(close, from: .server) == [.send(close, to: .client)])
        #expect(m.flow.websocket?.closeCode == 1005)
        #expect(m.flow.websocket?.closedByClient == false)
        #expect(m.connectionClosed(.client) == [.close(.client), .close(.server), .runHook(.end)])
        #expect(m.flow.websocket?.closeCode == 1005, "the code of the close frame stays")
    }

    @Test("no echo in time: both close, websocket_end")
    func closingTimeout() {
        var m = Self.opened()
        _ = m.frameReceived(Self.close(4000, "custom", masked: false), from: .server)
        #expect(m.closingTimedOut() == [.close(.client), .close(.server), .runHook(.end)])
        #expect(m.flow.websocket?.closeCode == 4000)
    }

    @Test("a connection that ends without a close frame: 1006, the other side closes, websocket_end")
    func abruptEnd() {
        var m = Self.opened()
        #expect(m.connectionClosed(.server) == [.close(.client), .close(.server), .runHook(.end)])
        #expect(m.flow.websocket?.closeCode == 1006)
        #expect(m.flow.websocket?.closedByClient == false)
        #expect(m.connectionClosed(.client) == [])
        #expect(m.hookCompleted(m.flow) == [])
        #expect(m.isDone)
    }

    @Test("a connection end during a message hook waits for the hook; the message still goes out first")
    func abruptEndDuringHook() {
        var m = Self.opened()
        _ = m.frameReceived(Self.text("last words", masked: true), from: .client)
        #expect(m.connectionClosed(.client) == [])
        #expect(m.hookCompleted(m.flow) == [
            .send(Self.outgoing("last words"), to: .server), .close(.client), .close(.server), .runHook(.end),
        ])
        #expect(m.flow.websocket?.closeCode == 1006)
        #expect(m.flow.websocket?.closedByClient == true)
    }

    // MARK: - Violations

    /// Feeds `frame` from `side` to an open machine and checks the violation's actions.
    func expectViolation(
        _ frames: [Frame],
        from side: Machine.Side,
        code: Int,
        message: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        var m = Self.opened()
        var actions: [Action] = []
        for frame in frames {
            actions = m.frameReceived(frame, from: side)
        }
        let text = "WebSocket protocol error from \(side): \(message)"
        #expect(actions == [
            .log(text),
            .send(Frame.close(code: code, reason: message), to: side),
            .send(Frame.close(code: 1001, reason: "protocol error from \(side)"), to: side.other),
            .close(.client), .close(.server), .runHook(.end),
        ], sourceLocation: sourceLocation)
        #expect(m.flow.error?.message == text, sourceLocation: sourceLocation)
        #expect(m.flow.websocket?.closeCode == code, sourceLocation: sourceLocation)
        #expect(m.hookCompleted(m.flow) == [], sourceLocation: sourceLocation)
        #expect(m.isDone, sourceLocation: sourceLocation)
    }

    @Test("a client frame that is not masked")
    func unmaskedClientFrame() {
        expectViolation([Self.text("x", masked: false)], from: .client, code: 1002, message: "client frame is not masked")
    }

    @Test("a server frame that is masked")
    func maskedServerFrame() {
        expectViolation([Self.text("x", masked: true)], from: .server, code: 1002, message: "server frame is masked")
    }

    @Test("reserved bits set (a compression extension nobody negotiated)")
    func reservedBits() {
        var frame = Self.text("x", masked: false)
        frame.reservedBits = 0b100
        expectViolation([frame], from: .server, code: 1002, message: "reserved bits set (4) but no extension was negotiated")
    }

    @Test("a reserved opcode")
    func reservedOpcode() {
        expectViolation([Self.text("x", masked: true, opcode: 3)], from: .client, code: 1002, message: "reserved opcode 3")
    }

    @Test("a fragmented control frame")
    func fragmentedControl() {
        let ping = Frame(fin: false, opcode: Frame.Opcode.ping, isMasked: true, payload: ByteBuffer())
        expectViolation([ping], from: .client, code: 1002, message: "control frame is fragmented")
    }

    @Test("a control frame over 125 bytes")
    func oversizedControl() {
        let ping = Frame(opcode: Frame.Opcode.ping, payload: ByteBuffer(repeating: 0, count: 126))
        expectViolation([ping], from: .server, code: 1002, message: "control frame payload is 126 bytes (at most 125)")
    }

    @Test("a continuation frame with no message to continue")
    func continuationWithoutStart() {
        expectViolation(
            [Self.text("x", masked: true, opcode: Frame.Opcode.continuation)],
            from: .client, code: 1002, message: "continuation frame without a message to continue"
        )
    }

    @Test("a new data frame while a fragmented message is open")
    func newMessageWhileFragmented() {
        expectViolation(
            [Self.text("a", fin: false, masked: false), Self.text("b", masked: false)],
            from: .server, code: 1002, message: "new data frame while a fragmented message is still open"
        )
    }

    @Test("a text message that is not UTF-8")
    func invalidUTF8() {
        let frame = Frame(opcode: Frame.Opcode.text, isMasked: true, payload: ByteBuffer(bytes: [0x68, 0xC3, 0x28]))
        expectViolation([frame], from: .client, code: 1007, message: "text message is not valid UTF-8")
    }

    @Test("UTF-8 split across fragments is fine")
    func utf8AcrossFragments() {
        var m = Self.opened()
        let first = Frame(fin: false, opcode: Frame.Opcode.text, isMasked: true, payload: ByteBuffer(bytes: [0xC3]))
        let second = Frame(opcode: Frame.Opcode.continuation, isMasked: true, payload: ByteBuffer(bytes: [0xA9]))
        #expect(m.frameReceived(first, from: .client) == [])
        #expect(m.frameReceived(second, from: .client) == [.runHook(.message)])
        #expect(m.flow.websocket?.messages.last?.text == "é")
    }

    @Test("a close reason that is not UTF-8")
    func invalidCloseReason() {
        var payload = ByteBuffer()
        payload.writeInteger(UInt16(1000))
        payload.writeBytes([0xFF])
        let close = Frame(opcode: Frame.Opcode.close, payload: payload)
        expectViolation([close], from: .server, code: 1007, message: "close reason is not valid UTF-8")
    }

    @Test("close codes that may not be sent", arguments: [999, 1004, 1005, 1006, 1015, 2000, 5000])
    func badCloseCode(code: Int) {
        var payload = ByteBuffer()
        payload.writeInteger(UInt16(code))
        let close = Frame(opcode: Frame.Opcode.close, isMasked: true, payload: payload)
        expectViolation([close], from: .client, code: 1002, message: "invalid close code \(code)")
    }

    @Test("a one-byte close payload")
    func oneByteClose() {
        let close = Frame(opcode: Frame.Opcode.close, payload: ByteBuffer(bytes: [3]))
        expectViolation([close], from: .server, code: 1002, message: "close frame payload of 1 byte (a code takes 2)")
    }

    @Test("a message over the limit is refused with 1009")
    func messageTooBig() {
        var m = Self.opened(limits: .init(maxMessageSize: 4))
        #expect(m.frameReceived(Self.text("abc", fin: false, masked: true), from: .client) == [])
        let actions = m.frameReceived(Self.text("de", masked: true, opcode: Frame.Opcode.continuation), from: .client)
        #expect(actions.first == .log("WebSocket protocol error from client: message larger than the limit of 4 bytes"))
        #expect(actions.contains(.send(Frame.close(code: 1009, reason: "message larger than the limit of 4 bytes"), to: .client)))
        #expect(m.flow.websocket?.closeCode == 1009)
    }

    @Test("a codec error (frame over the limit) is a violation too")
    func codecError() {
        var m = Self.opened()
        let actions = m.codecFailed(.server, code: 1009, message: "frame too large")
        #expect(actions == [
            .log("WebSocket protocol error from server: frame too large"),
            .send(Frame.close(code: 1009, reason: "frame too large"), to: .server),
            .send(Frame.close(code: 1001, reason: "protocol error from server"), to: .client),
            .close(.client), .close(.server), .runHook(.end),
        ])
    }

    @Test("a violation while closing answers only the violator")
    func violationWhileClosing() {
        var m = Self.opened()
        _ = m.frameReceived(Self.close(1000, "", masked: true), from: .client)
        let actions = m.frameReceived(Self.text("x", masked: true), from: .server)
        #expect(actions == [
            .log("WebSocket protocol error from server: server frame is masked"),
            .send(Frame.close(code: 1002, reason: "server frame is masked"), to: .server),
            .close(.client), .close(.server), .runHook(.end),
        ])
        #expect(m.flow.websocket?.closeCode == 1000, "the close handshake's code stays")
    }

    @Test("a close reason longer than a control frame allows is cut on a character boundary")
    func longCloseReason() {
        let frame = Frame.close(code: 1000, reason: String(repeating: "é", count: 100))
        #expect(frame.payload.readableBytes <= 125)
        #expect(String(buffer: frame.payload.getSlice(at: 2, length: frame.payload.readableBytes - 2)!) == String(repeating: "é", count: 61))
    }
}
