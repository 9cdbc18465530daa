import MitmCore
import NIOCore
import Testing

/// Playbooks for `HTTPStreamStateMachine`: every event goes in, and every action that comes out is
/// checked exactly, as in mitmproxy's `Playbook` and AsyncHTTPClient's state machine tests.
///
/// Hooks are answered as the server's driver answers them: the addons get a copy of the flow when the
/// hook starts, and `hookCompleted` gets that copy back (edited), whatever arrived in between.
@Suite("HTTPStreamStateMachine")
struct HTTPStreamStateMachineTests {
    typealias Action = HTTPStreamStateMachine.Action

    /// The reason a body over `body_size_limit` is refused with.
    static func limitMessage(_ what: String, _ limit: Int) -> String {
        "\(what) body exceeds mitmproxy's body_size_limit (\(limit) bytes)."
    }

    // MARK: - Simple exchanges

    @Test("GET: requestheaders, request, server, responseheaders, body, response, send")
    func simpleGet() {
        var h = Harness(request: .get("/index.html"))
        #expect(h.start() == .runHook(.requestHeaders))
        #expect(!h.isDone)
        #expect(h.completeHook() == .wait)
        #expect(h.requestEnd() == .runHook(.request))
        #expect(h.flow.request.rawContent == ByteBuffer())
        #expect(h.flow.request.timestampEnd != nil)

        let send = h.completeHook()
        #expect(send == .sendRequest(h.sentRequest, body: ByteBuffer(), end: true))
        #expect(h.sentRequest.rawContent == nil)
        #expect(!h.isDone)

        #expect(h.responseHead(.ok(contentLength: 5)) == .runHook(.responseHeaders))
        #expect(h.completeHook() == .wait)
        #expect(h.responseBody("hel") == .wait)
        #expect(h.responseBody("lo") == .wait)
        #expect(h.responseEnd() == .runHook(.response))
        #expect(h.flow.response?.rawContent == ByteBuffer(string: "hello"))
        #expect(h.flow.response?.timestampEnd != nil)
        #expect(!h.isDone)

        let response = h.completeHook()
        #expect(response == .sendResponse(h.sentResponse, body: ByteBuffer(string: "hello"), end: true))
        #expect(h.isDone)
        #expect(h.hasStartedResponse)
        #expect(h.hooks == [.requestHeaders, .request, .responseHeaders, .response])
        #expect(h.flow.error == nil)
        // Nothing after the end changes anything.
        #expect(h.responseEndSent() == .wait)
        #expect(h.serverFailed("late") == .wait)
        #expect(h.clientClosed() == .wait)
        #expect(h.flow.error == nil)
    }

    @Test("a 101 answering Upgrade: websocket marks the flow before the response hooks; an addon that refuses it unmarks it")
    func webSocketUpgrade() {
        var request = HTTPRequest.get("/ws")
        request.headers["Upgrade"] = "websocket"
        request.headers["Connection"] = "Upgrade"
        var switching = HTTPResponse(httpVersion: "HTTP/1.1", statusCode: 101, reason: "Switching Protocols", headers: ["Upgrade": "websocket", "Connection": "Upgrade"])
        switching.timestampStart = now()

        var h = Harness(request: request)
        h.runRequestToServer()
        #expect(h.responseHead(switching) == .runHook(.responseHeaders))
        #expect(h.flow.websocket == WebSocketData(), "set before responseheaders, as mitmproxy does")
        #expect(h.responseEnd() == .wait)
        #expect(h.completeHook() == .runHook(.response))
        #expect(h.flow.websocket != nil)

        var refused = Harness(request: request)
        refused.runRequestToServer()
        _ = refused.responseHead(switching)
        _ = refused.responseEnd()
        #expect(refused.completeHook { $0.response?.statusCode = 403 } == .runHook(.response))
        #expect(refused.flow.websocket == nil)

        var notWebSocket = Harness(request: .get("/"))
        notWebSocket.runRequestToServer()
        _ = notWebSocket.responseHead(switching)
        #expect(notWebSocket.flow.websocket == nil, "a 101 without the request asking for WebSocket")
    }

    @Test("GET whose end arrives while the requestheaders hook runs (the usual case)")
    func getCompleteDuringRequestHeadersHook() {
        var h = Harness(request: .get("/"))
        #expect(h.start() == .runHook(.requestHeaders))
        #expect(h.requestEnd() == .wait)
        #expect(h.completeHook() == .runHook(.request))
        // The addons' copy predates the end: its timestamp must survive the hook.
        #expect(h.flow.request.timestampEnd != nil)
        let send = h.completeHook()
        #expect(send == .sendRequest(h.sentRequest, body: ByteBuffer(), end: true))
        #expect(h.sentRequest.timestampEnd != nil)
    }

    @Test("the response completes while the responseheaders hook runs")
    func responseCompleteDuringResponseHeadersHook() {
        var h = Harness(request: .get("/"))
        h.runRequestToServer()
        #expect(h.responseHead(.ok(contentLength: 2)) == .runHook(.responseHeaders))
        #expect(h.responseBody("ok") == .wait)
        #expect(h.responseEnd(trailers: ["grpc-status": "0"]) == .wait)
        #expect(h.completeHook() == .runHook(.response))
        #expect(h.flow.response?.rawContent == ByteBuffer(string: "ok"))
        #expect(h.flow.response?.timestampEnd != nil)
        #expect(h.flow.response?.trailers == ["grpc-status": "0"])
        let send = h.completeHook()
        #expect(send == .sendResponse(h.sentResponse, body: ByteBuffer(string: "ok"), end: true))
        #expect(h.sentResponse.trailers == ["grpc-status": "0"])
        #expect(h.isDone)
    }

    @Test("POST: the body is buffered across several parts")
    func postBodyBuffered() {
        var h = Harness(request: .post("/form", body: "a=1&b=22"))
        #expect(h.start() == .runHook(.requestHeaders))
        #expect(h.completeHook() == .wait)
        #expect(h.requestBody("a=") == .wait)
        #expect(h.requestBody("1&b") == .wait)
        #expect(h.requestBody("=22") == .wait)
        #expect(h.flow.request.rawContent == nil)
        #expect(h.requestEnd() == .runHook(.request))
        #expect(h.flow.request.rawContent == ByteBuffer(string: "a=1&b=22"))
        #expect(!h.flow.request.stream)
        let send = h.completeHook()
        #expect(send == .sendRequest(h.sentRequest, body: ByteBuffer(string: "a=1&b=22"), end: true))
    }

    @Test("body parts that arrive while the requestheaders hook runs are kept")
    func bodyDuringRequestHeadersHook() {
        var h = Harness(request: .post("/", body: "abcdefg"))
        #expect(h.start() == .runHook(.requestHeaders))
        #expect(h.requestBody("abc") == .wait)
        #expect(h.requestBody("def") == .wait)
        #expect(h.completeHook() == .wait)
        #expect(h.requestBody("g") == .wait)
        #expect(h.requestEnd() == .runHook(.request))
        #expect(h.flow.request.rawContent == ByteBuffer(string: "abcdefg"))
    }

    @Test("the whole request arrives while the requestheaders hook runs")
    func wholeRequestDuringRequestHeadersHook() {
        var h = Harness(request: .post("/", body: "xyz"))
        #expect(h.start() == .runHook(.requestHeaders))
        #expect(h.requestBody("xyz") == .wait)
        #expect(h.requestEnd() == .wait)
        #expect(h.completeHook() == .runHook(.request))
        #expect(h.flow.request.rawContent == ByteBuffer(string: "xyz"))
        let send = h.completeHook()
        #expect(send == .sendRequest(h.sentRequest, body: ByteBuffer(string: "xyz"), end: true))
    }

    @Test("addon edits in each hook reach the server and the client")
    func addonEditsAreForwarded() {
        var h = Harness(request: .get("/"))
        #expect(h.start() == .runHook(.requestHeaders))
        #expect(h.requestEnd() == .wait)
        #expect(h.completeHook { $0.request.headers["x-requestheaders"] = "1" } == .runHook(.request))
        let send = h.completeHook { $0.request.path = "/rewritten" }
        #expect(send == .sendRequest(h.sentRequest, body: ByteBuffer(), end: true))
        #expect(h.sentRequest.path == "/rewritten")
        #expect(h.sentRequest.headers["x-requestheaders"] == "1")

        #expect(h.responseHead(.ok(contentLength: 3)) == .runHook(.responseHeaders))
        #expect(h.completeHook { $0.response?.headers["x-responseheaders"] = "1" } == .wait)
        #expect(h.responseBody("abc") == .wait)
        #expect(h.responseEnd() == .runHook(.response))
        let response = h.completeHook {
            $0.response?.rawContent = ByteBuffer(string: "changed")
            $0.response?.headers["content-length"] = "7"
        }
        #expect(response == .sendResponse(h.sentResponse, body: ByteBuffer(string: "changed"), end: true))
        #expect(h.sentResponse.headers["x-responseheaders"] == "1")
        #expect(h.sentResponse.headers["content-length"] == "7")
    }

    @Test("timestamps: request end, response start and end")
    func timestamps() {
        let before = now()
        var h = Harness(request: .post("/", body: "x"))
        _ = h.start()
        _ = h.completeHook()
        _ = h.requestBody("x")
        #expect(h.flow.request.timestampEnd == nil)
        _ = h.requestEnd()
        let requestEnd = h.flow.request.timestampEnd
        #expect(requestEnd != nil)
        #expect(requestEnd.map { $0 >= before && $0 >= h.flow.request.timestampStart } == true)
        _ = h.completeHook()
        _ = h.responseHead(.ok(contentLength: 0))
        #expect(h.flow.response?.timestampEnd == nil)
        _ = h.completeHook()
        _ = h.responseEnd()
        let responseEnd = h.flow.response?.timestampEnd
        #expect(responseEnd != nil)
        #expect(responseEnd.map { $0 >= requestEnd! } == true)
        _ = h.completeHook()
        #expect(h.isDone)
        #expect(h.flow.request.timestampEnd == requestEnd)
        #expect(h.flow.response?.timestampEnd == responseEnd)
    }

    // MARK: - Expect: 100-continue

    @Test("Expect: 100-continue is answered and not forwarded")
    func expectContinue() {
        var h = Harness(request: .post("/upload", body: "hello", headers: ["Expect": "100-continue"]))
        #expect(h.start() == .runHook(.requestHeaders))
        #expect(h.hookFlow?.request.headers["expect"] == "100-continue")
        #expect(h.completeHook() == .sendContinue)
        #expect(h.flow.request.headers["expect"] == nil)
        #expect(h.requestBody("hello") == .wait)
        #expect(h.requestEnd() == .runHook(.request))
        let send = h.completeHook()
        #expect(send == .sendRequest(h.sentRequest, body: ByteBuffer(string: "hello"), end: true))
        #expect(!h.sentRequest.headers.contains("expect"))
        #expect(h.sentRequest.headers["content-length"] == "5")
    }

    @Test("Expect: 100-Continue matches without regard to case")
    func expectContinueCaseInsensitive() {
        var h = Harness(request: .post("/", body: "a", headers: ["EXPECT": "100-Continue"]))
        _ = h.start()
        #expect(h.completeHook() == .sendContinue)
        #expect(!h.flow.request.headers.contains("expect"))
    }

    @Test("Expect on a request that is already complete: no 100 Continue, header still removed")
    func expectContinueAlreadyComplete() {
        var h = Harness(request: .post("/", body: "", headers: ["Expect": "100-continue"]))
        _ = h.start()
        #expect(h.requestEnd() == .wait)
        #expect(h.completeHook() == .runHook(.request))
        let send = h.completeHook()
        #expect(send == .sendRequest(h.sentRequest, body: ByteBuffer(), end: true))
        #expect(!h.sentRequest.headers.contains("expect"))
    }

    @Test("Expect with a large declared body: 100 Continue, then streaming from the first part")
    func expectContinueStreamsLargeBody() {
        var h = Harness(
            request: .post("/", contentLength: 20, headers: ["Expect": "100-continue"]),
            limits: .init(streamLargeBodies: 10)
        )
        _ = h.start()
        #expect(h.completeHook() == .sendContinue)
        #expect(h.flow.request.stream)
        let first = h.requestBody("0123456789")
        #expect(first == .sendRequest(h.flow.request, body: ByteBuffer(string: "0123456789"), end: false))
        #expect(!h.flow.request.headers.contains("expect"))
        #expect(h.requestBody("abcdefghij") == .sendRequestBody(ByteBuffer(string: "abcdefghij")))
        #expect(h.requestEnd() == .sendRequestEnd(trailers: nil))
    }

    @Test("Expect when an addon turns on request streaming: the head goes before any body")
    func expectContinueAddonStreams() {
        var h = Harness(request: .post("/", body: "abcd", headers: ["Expect": "100-continue"]))
        _ = h.start()
        #expect(h.completeHook { $0.request.stream = true } == .sendContinue)
        let first = h.requestBody("abc")
        #expect(first == .sendRequest(h.flow.request, body: ByteBuffer(string: "abc"), end: false))
        #expect(h.requestBody("d") == .sendRequestBody(ByteBuffer(string: "d")))
        #expect(h.requestEnd() == .sendRequestEnd(trailers: nil))
        #expect(h.responseHead(.ok(contentLength: 0)) == .runHook(.responseHeaders))
    }

    @Test("Expect, streaming on, and the client sends no body after all")
    func expectContinueStreamingEmptyBody() {
        var h = Harness(request: .post("/", body: "", headers: ["Expect": "100-continue"]))
        _ = h.start()
        #expect(h.completeHook { $0.request.stream = true } == .sendContinue)
        let end = h.requestEnd()
        #expect(end == .sendRequest(h.flow.request, body: ByteBuffer(), end: true))
        #expect(h.responseHead(.ok(contentLength: 0)) == .runHook(.responseHeaders))
    }

    // MARK: - Responses set by addons

    @Test("addon answers in the request hook: the server is never contacted")
    func addonRespondsInRequestHook() {
        var h = Harness(request: .get("/"))
        _ = h.start()
        #expect(h.requestEnd() == .wait)
        #expect(h.completeHook() == .runHook(.request))
        let before = now()
        #expect(h.completeHook { $0.response = .make(200, body: "from addon") } == .runHook(.responseHeaders))
        // mitmproxy emulates responseheaders and stamps the response as starting now.
        #expect(h.flow.response.map { $0.timestampStart >= before } == true)
        #expect(h.completeHook() == .runHook(.response))
        let send = h.completeHook()
        #expect(send == .sendResponse(h.sentResponse, body: ByteBuffer(string: "from addon"), end: true))
        #expect(h.isDone)
        #expect(h.hooks == [.requestHeaders, .request, .responseHeaders, .response])
        #expect(h.flow.serverConnection == nil)
    }

    @Test("addon answers in the requestheaders hook: request hook, then the response hooks")
    func addonRespondsInRequestHeadersHook() {
        var h = Harness(request: .get("/blocked"))
        _ = h.start()
        #expect(h.requestEnd() == .wait)
        #expect(h.completeHook { $0.response = .make(403, body: "no") } == .runHook(.request))
        #expect(h.completeHook() == .runHook(.responseHeaders))
        #expect(h.completeHook() == .runHook(.response))
        let send = h.completeHook()
        #expect(send == .sendResponse(h.sentResponse, body: ByteBuffer(string: "no"), end: true))
        #expect(h.sentResponse.statusCode == 403)
        #expect(h.isDone)
        #expect(h.hooks == [.requestHeaders, .request, .responseHeaders, .response])
    }

    @Test("addon answers in requestheaders before the body: the body is read, never forwarded")
    func addonRespondsBeforeBody() {
        var h = Harness(request: .post("/", body: "abc"))
        _ = h.start()
        #expect(h.completeHook { $0.response = .make(401) } == .wait)
        #expect(h.requestBody("abc") == .wait)
        #expect(h.requestEnd() == .runHook(.request))
        #expect(h.flow.request.rawContent == ByteBuffer(string: "abc"))
        #expect(h.completeHook() == .runHook(.responseHeaders))
    }

    @Test("addon answers a request that would stream: nothing goes to the server")
    func addonRespondsToLargeRequest() {
        var h = Harness(request: .post("/", contentLength: 30), limits: .init(streamLargeBodies: 10))
        _ = h.start()
        #expect(h.completeHook { $0.response = .make(507) } == .wait)
        #expect(h.requestBody("0123456789") == .wait)
        #expect(h.requestBody("0123456789") == .wait)
        #expect(h.requestBody("0123456789") == .wait)
        #expect(h.requestEnd() == .runHook(.request))
        #expect(h.completeHook() == .runHook(.responseHeaders))
        #expect(h.completeHook() == .runHook(.response))
        let send = h.completeHook()
        #expect(send == .sendResponse(h.sentResponse, body: ByteBuffer(), end: true))
        #expect(h.sentResponse.statusCode == 507)
    }

    @Test("addon removes the response in responseheaders: 502")
    func addonRemovesResponseInResponseHeaders() {
        var h = Harness(request: .get("/"))
        h.runRequestToServer()
        #expect(h.responseHead(.ok(contentLength: 0)) == .runHook(.responseHeaders))
        #expect(h.completeHook { $0.response = nil } == .runHook(.error))
        #expect(h.flow.error?.message == "addon removed the response")
        #expect(h.completeHook() == .sendErrorResponse(status: 502, message: "addon removed the response"))
        #expect(h.isDone)
    }

    @Test("addon removes the response in the response hook: 502, not a crash")
    func addonRemovesResponseInResponseHook() {
        var h = Harness(request: .get("/"))
        h.runRequestToServer()
        _ = h.responseHead(.ok(contentLength: 0))
        _ = h.completeHook()
        #expect(h.responseEnd() == .runHook(.response))
        #expect(h.completeHook { $0.response = nil } == .runHook(.error))
        #expect(h.completeHook() == .sendErrorResponse(status: 502, message: "addon removed the response"))
        #expect(h.isDone)
    }

    // MARK: - Streaming

    @Test("request and response above stream_large_bodies are streamed")
    func streamingRequestAndResponse() {
        var h = Harness(request: .post("/upload", contentLength: 20), limits: .init(streamLargeBodies: 10))
        #expect(h.start() == .runHook(.requestHeaders))
        #expect(h.requestBody("0123456789") == .wait)
        let head = h.completeHook()
        #expect(h.flow.request.stream)
        #expect(head == .sendRequest(h.flow.request, body: ByteBuffer(string: "0123456789"), end: false))
        #expect(h.requestBody("abcdefghij") == .sendRequestBody(ByteBuffer(string: "abcdefghij")))
        #expect(h.requestEnd(trailers: ["x-sum": "1"]) == .sendRequestEnd(trailers: ["x-sum": "1"]))
        #expect(h.flow.request.rawContent == nil)
        #expect(h.flow.request.trailers == ["x-sum": "1"])
        #expect(h.flow.request.timestampEnd != nil)

        #expect(h.responseHead(.ok(contentLength: 15)) == .runHook(.responseHeaders))
        let response = h.completeHook()
        #expect(h.flow.response?.stream == true)
        #expect(response == .sendResponse(h.sentResponse, body: ByteBuffer(), end: false))
        #expect(h.hasStartedResponse)
        #expect(h.responseBody("0123456") == .sendResponseBody(ByteBuffer(string: "0123456")))
        #expect(h.responseBody("789abcde") == .sendResponseBody(ByteBuffer(string: "789abcde")))
        #expect(h.responseEnd(trailers: ["x-done": "1"]) == .sendResponseEnd(trailers: ["x-done": "1"]))
        #expect(!h.isDone)
        // mitmproxy runs the response hook once a streamed body is through.
        #expect(h.responseEndSent() == .runHook(.response))
        #expect(h.flow.response?.rawContent == nil)
        #expect(h.flow.response?.trailers == ["x-done": "1"])
        #expect(h.flow.response?.timestampEnd != nil)
        #expect(h.completeHook() == .wait)
        #expect(h.isDone)
        // A streamed request gets no request hook: the body was never on the flow.
        #expect(h.hooks == [.requestHeaders, .responseHeaders, .response])
    }

    @Test("a declared length equal to stream_large_bodies is buffered")
    func thresholdIsExclusive() {
        var h = Harness(request: .post("/", contentLength: 10), limits: .init(streamLargeBodies: 10))
        _ = h.start()
        #expect(h.completeHook() == .wait)
        #expect(!h.flow.request.stream)
        #expect(h.requestBody("0123456789") == .wait)
        #expect(h.requestEnd() == .runHook(.request))
    }

    @Test("a streamed request that arrived whole during the hook goes out in one piece")
    func streamedRequestCompleteDuringHook() {
        var h = Harness(request: .post("/", contentLength: 12), limits: .init(streamLargeBodies: 10))
        _ = h.start()
        #expect(h.requestBody("0123456789ab") == .wait)
        #expect(h.requestEnd() == .wait)
        let send = h.completeHook()
        #expect(send == .sendRequest(h.flow.request, body: ByteBuffer(string: "0123456789ab"), end: true))
        #expect(h.responseHead(.ok(contentLength: 0)) == .runHook(.responseHeaders))
    }

    @Test("an addon turns on streaming in requestheaders")
    func addonStreamsRequest() {
        var h = Harness(request: .post("/", body: "abc"))
        _ = h.start()
        let send = h.completeHook { $0.request.stream = true }
        #expect(send == .sendRequest(h.flow.request, body: ByteBuffer(), end: false))
        #expect(h.requestBody("abc") == .sendRequestBody(ByteBuffer(string: "abc")))
        #expect(h.requestEnd() == .sendRequestEnd(trailers: nil))
    }

    @Test("an addon turns on streaming in responseheaders")
    func addonStreamsResponse() {
        var h = Harness(request: .get("/"))
        h.runRequestToServer()
        _ = h.responseHead(.ok(contentLength: nil))
        let send = h.completeHook { $0.response?.stream = true }
        #expect(send == .sendResponse(h.sentResponse, body: ByteBuffer(), end: false))
        #expect(h.responseBody("x") == .sendResponseBody(ByteBuffer(string: "x")))
        #expect(h.responseEnd() == .sendResponseEnd(trailers: nil))
        #expect(h.responseEndSent() == .runHook(.response))
        #expect(h.completeHook() == .wait)
        #expect(h.isDone)
    }

    @Test("a streamed response that is complete when responseheaders ends goes out in one piece")
    func streamedResponseCompleteDuringHook() {
        var h = Harness(request: .get("/"), limits: .init(streamLargeBodies: 4))
        h.runRequestToServer()
        #expect(h.responseHead(.ok(contentLength: 6)) == .runHook(.responseHeaders))
        #expect(h.responseBody("abcdef") == .wait)
        #expect(h.responseEnd() == .wait)
        let send = h.completeHook()
        #expect(send == .sendResponse(h.sentResponse, body: ByteBuffer(string: "abcdef"), end: true))
        #expect(h.flow.response?.timestampEnd != nil)
        #expect(h.responseEndSent() == .runHook(.response))
        #expect(h.completeHook() == .wait)
        #expect(h.isDone)
    }

    @Test("a chunked request that grows past the threshold switches to streaming with its prefix")
    func chunkedRequestSwitchesToStreaming() {
        var h = Harness(request: .post("/", chunked: true), limits: .init(streamLargeBodies: 10))
        _ = h.start()
        #expect(h.completeHook() == .wait)
        #expect(h.requestBody("01234") == .wait)
        #expect(h.requestBody("56789") == .wait)
        let switched = h.requestBody("abc")
        #expect(h.flow.request.stream)
        #expect(switched == .sendRequest(h.flow.request, body: ByteBuffer(string: "0123456789abc"), end: false))
        #expect(h.requestBody("d") == .sendRequestBody(ByteBuffer(string: "d")))
        #expect(h.requestEnd() == .sendRequestEnd(trailers: nil))
        #expect(h.flow.request.rawContent == nil)
    }

    @Test("a chunked response that grows past the threshold switches to streaming with its prefix")
    func chunkedResponseSwitchesToStreaming() {
        var h = Harness(request: .get("/"), limits: .init(streamLargeBodies: 10))
        h.runRequestToServer()
        #expect(h.responseHead(.ok(contentLength: nil)) == .runHook(.responseHeaders))
        #expect(h.completeHook() == .wait)
        #expect(h.responseBody("01234") == .wait)
        #expect(h.responseBody("56789") == .wait)
        #expect(!h.hasStartedResponse)
        let switched = h.responseBody("abc")
        #expect(h.flow.response?.stream == true)
        #expect(switched == .sendResponse(h.sentResponse, body: ByteBuffer(string: "0123456789abc"), end: false))
        #expect(h.hasStartedResponse)
        #expect(h.responseBody("d") == .sendResponseBody(ByteBuffer(string: "d")))
        #expect(h.responseEnd(trailers: ["t": "1"]) == .sendResponseEnd(trailers: ["t": "1"]))
        #expect(h.responseEndSent() == .runHook(.response))
        #expect(h.completeHook() == .wait)
        #expect(h.isDone)
        #expect(h.flow.response?.rawContent == nil)
    }

    @Test("the server answers a streamed request before its end (bidirectional streaming)")
    func responseWhileRequestStreams() {
        var h = Harness(request: .post("/grpc", chunked: true))
        _ = h.start()
        let send = h.completeHook { $0.request.stream = true }
        #expect(send == .sendRequest(h.flow.request, body: ByteBuffer(), end: false))
        #expect(h.requestBody("ping1") == .sendRequestBody(ByteBuffer(string: "ping1")))
        #expect(h.responseHead(.ok(contentLength: nil)) == .runHook(.responseHeaders))
        // The request keeps flowing while the hook runs and after.
        #expect(h.requestBody("ping2") == .sendRequestBody(ByteBuffer(string: "ping2")))
        #expect(h.completeHook() == .wait)
        #expect(h.responseBody("pong") == .wait)
        #expect(h.requestEnd(trailers: ["x": "y"]) == .sendRequestEnd(trailers: ["x": "y"]))
        #expect(h.flow.request.timestampEnd != nil)
        #expect(h.responseEnd() == .runHook(.response))
        let response = h.completeHook()
        #expect(response == .sendResponse(h.sentResponse, body: ByteBuffer(string: "pong"), end: true))
        #expect(h.isDone)
        #expect(h.flow.request.trailers == ["x": "y"])
    }

    @Test("a HEAD response declares a large length but carries no body: not streamed, not refused")
    func headResponseLength() {
        var h = Harness(request: .get("/", method: "HEAD"), limits: .init(bodySizeLimit: 10, streamLargeBodies: 5))
        h.runRequestToServer()
        #expect(h.responseHead(.ok(contentLength: 1000)) == .runHook(.responseHeaders))
        #expect(h.completeHook() == .wait)
        #expect(h.flow.response?.stream == false)
        #expect(h.responseEnd() == .runHook(.response))
        let send = h.completeHook()
        #expect(send == .sendResponse(h.sentResponse, body: ByteBuffer(), end: true))
    }

    // MARK: - body_size_limit

    @Test("a request body above body_size_limit: error hook, then 413")
    func requestBodySizeLimit() {
        var h = Harness(request: .post("/", chunked: true), limits: .init(bodySizeLimit: 10))
        _ = h.start()
        #expect(h.completeHook() == .wait)
        #expect(h.requestBody("0123456789") == .wait)
        #expect(h.requestBody("x") == .runHook(.error))
        let message = Self.limitMessage("Request", 10)
        #expect(h.flow.error?.message == message)
        #expect(h.requestBody("more") == .wait)
        #expect(h.requestEnd() == .wait)
        #expect(h.completeHook() == .sendErrorResponse(status: 413, message: message))
        #expect(h.isDone)
        #expect(h.hooks == [.requestHeaders, .error])
    }

    @Test("a declared request length above body_size_limit is refused before any body")
    func requestDeclaredLengthAboveLimit() {
        var h = Harness(
            request: .post("/", contentLength: 100),
            limits: .init(bodySizeLimit: 50, streamLargeBodies: 10)
        )
        _ = h.start()
        // Streaming must not let the body past the limit.
        #expect(h.completeHook() == .runHook(.error))
        let message = Self.limitMessage("Request", 50)
        #expect(h.completeHook() == .sendErrorResponse(status: 413, message: message))
        #expect(h.hooks == [.requestHeaders, .error])
    }

    @Test("one part that crosses both the stream threshold and the limit is refused")
    func partCrossingThresholdAndLimit() {
        var h = Harness(request: .post("/", chunked: true), limits: .init(bodySizeLimit: 15, streamLargeBodies: 10))
        _ = h.start()
        _ = h.completeHook()
        #expect(h.requestBody("0123456789abcdef") == .runHook(.error))
        #expect(h.completeHook() == .sendErrorResponse(status: 413, message: Self.limitMessage("Request", 15)))
    }

    @Test("a body over the limit while the requestheaders hook runs: the error hook waits for it")
    func requestBodyOverLimitDuringHook() {
        var h = Harness(request: .post("/", chunked: true), limits: .init(bodySizeLimit: 4))
        #expect(h.start() == .runHook(.requestHeaders))
        #expect(h.requestBody("0123456") == .wait)
        #expect(h.completeHook() == .runHook(.error))
        #expect(h.completeHook() == .sendErrorResponse(status: 413, message: Self.limitMessage("Request", 4)))
        #expect(h.hooks == [.requestHeaders, .error])
    }

    @Test("a response body above body_size_limit: error hook, then 502")
    func responseBodySizeLimit() {
        var h = Harness(request: .get("/"), limits: .init(bodySizeLimit: 5))
        h.runRequestToServer()
        #expect(h.responseHead(.ok(contentLength: nil)) == .runHook(.responseHeaders))
        #expect(h.completeHook() == .wait)
        #expect(h.responseBody("12345") == .wait)
        #expect(h.responseBody("6") == .runHook(.error))
        let message = Self.limitMessage("Response", 5)
        #expect(h.flow.error?.message == message)
        #expect(h.responseEnd() == .wait)
        #expect(h.completeHook() == .sendErrorResponse(status: 502, message: message))
        #expect(h.isDone)
        #expect(!h.hasStartedResponse)
    }

    @Test("a declared response length above body_size_limit: 502 after responseheaders")
    func responseDeclaredLengthAboveLimit() {
        var h = Harness(request: .get("/"), limits: .init(bodySizeLimit: 5, streamLargeBodies: 2))
        h.runRequestToServer()
        #expect(h.responseHead(.ok(contentLength: 6)) == .runHook(.responseHeaders))
        #expect(h.completeHook() == .runHook(.error))
        #expect(h.completeHook() == .sendErrorResponse(status: 502, message: Self.limitMessage("Response", 5)))
        #expect(!h.hasStartedResponse)
    }

    // MARK: - Failures

    @Test("server failure before the response: error hook, then 502 with the reason")
    func serverFailsBeforeResponse() {
        var h = Harness(request: .get("/"))
        h.runRequestToServer()
        #expect(h.serverFailed("could not connect to example.com:80") == .runHook(.error))
        #expect(h.flow.error?.message == "could not connect to example.com:80")
        #expect(h.completeHook() == .sendErrorResponse(status: 502, message: "could not connect to example.com:80"))
        #expect(h.isDone)
        #expect(h.hooks == [.requestHeaders, .request, .error])
        #expect(h.serverFailed("again") == .wait)
        #expect(h.flow.error?.message == "could not connect to example.com:80")
    }

    @Test("server failure in a buffered response body: 502")
    func serverFailsInBufferedBody() {
        var h = Harness(request: .get("/"))
        h.runRequestToServer()
        _ = h.responseHead(.ok(contentLength: 10))
        _ = h.completeHook()
        #expect(h.responseBody("01234") == .wait)
        #expect(h.serverFailed("Server disconnected.") == .runHook(.error))
        #expect(h.completeHook() == .sendErrorResponse(status: 502, message: "Server disconnected."))
    }

    @Test("server failure after streaming began: error hook, then the client is closed")
    func serverFailsWhileStreaming() {
        var h = Harness(request: .get("/"), limits: .init(streamLargeBodies: 1))
        h.runRequestToServer()
        _ = h.responseHead(.ok(contentLength: 100))
        let head = h.completeHook()
        #expect(head == .sendResponse(h.sentResponse, body: ByteBuffer(), end: false))
        #expect(h.responseBody("part") == .sendResponseBody(ByteBuffer(string: "part")))
        #expect(h.serverFailed("Server disconnected.") == .runHook(.error))
        #expect(h.completeHook() == .closeClient)
        #expect(h.isDone)
    }

    @Test("server failure while the responseheaders hook runs: the error hook follows it")
    func serverFailsDuringHook() {
        var h = Harness(request: .get("/"))
        h.runRequestToServer()
        #expect(h.responseHead(.ok(contentLength: 10)) == .runHook(.responseHeaders))
        #expect(h.serverFailed("Server disconnected.") == .wait)
        #expect(h.completeHook() == .runHook(.error))
        #expect(h.flow.error?.message == "Server disconnected.")
        #expect(h.completeHook() == .sendErrorResponse(status: 502, message: "Server disconnected."))
        #expect(h.hooks == [.requestHeaders, .request, .responseHeaders, .error])
    }

    @Test("server failure once the response is complete changes nothing")
    func serverFailsInResponseHook() {
        var h = Harness(request: .get("/"))
        h.runRequestToServer()
        _ = h.responseHead(.ok(contentLength: 0))
        _ = h.completeHook()
        #expect(h.responseEnd() == .runHook(.response))
        #expect(h.serverFailed("Server disconnected.") == .wait)
        let send = h.completeHook()
        #expect(send == .sendResponse(h.sentResponse, body: ByteBuffer(), end: true))
        #expect(h.flow.error == nil)
    }

    @Test("server failure during a streamed request: error hook, then 502")
    func serverFailsWhileRequestStreams() {
        var h = Harness(request: .post("/", contentLength: 20), limits: .init(streamLargeBodies: 10))
        _ = h.start()
        _ = h.completeHook()
        #expect(h.requestBody("0123") == .sendRequestBody(ByteBuffer(string: "0123")))
        #expect(h.serverFailed("connection reset") == .runHook(.error))
        #expect(h.requestBody("4567") == .wait)
        #expect(h.completeHook() == .sendErrorResponse(status: 502, message: "connection reset"))
    }

    @Test("client closes mid-request: error hook with 'Client disconnected.' and no error response")
    func clientClosesMidRequest() {
        var h = Harness(request: .post("/", body: "abcdef"))
        _ = h.start()
        _ = h.completeHook()
        #expect(h.requestBody("abc") == .wait)
        #expect(h.clientClosed() == .runHook(.error))
        #expect(h.flow.error?.message == "Client disconnected.")
        #expect(h.hasStartedResponse)
        let after = h.completeHook()
        #expect(after == .closeClient)
        #expect(h.isDone)
        #expect(h.hooks == [.requestHeaders, .error])
    }

    @Test("client closes while waiting for the server: no error response")
    func clientClosesAwaitingResponse() {
        var h = Harness(request: .get("/"))
        h.runRequestToServer()
        #expect(h.clientClosed() == .runHook(.error))
        #expect(h.flow.error?.message == "Client disconnected.")
        #expect(h.completeHook() == .closeClient)
        #expect(h.responseHead(.ok(contentLength: 0)) == .wait)
        #expect(h.flow.response == nil)
    }

    @Test("client closes while a hook runs: the error hook runs after it, once")
    func clientClosesDuringHook() {
        var h = Harness(request: .get("/"))
        #expect(h.start() == .runHook(.requestHeaders))
        #expect(h.clientClosed() == .wait)
        #expect(h.serverFailed("also") == .wait)
        #expect(h.completeHook() == .runHook(.error))
        #expect(h.flow.error?.message == "Client disconnected.")
        #expect(h.completeHook() == .closeClient)
        #expect(h.isDone)
        #expect(h.hooks == [.requestHeaders, .error])
    }

    @Test("client closes during the request hook: the server is not contacted")
    func clientClosesDuringRequestHook() {
        var h = Harness(request: .get("/"))
        _ = h.start()
        _ = h.requestEnd()
        #expect(h.completeHook() == .runHook(.request))
        #expect(h.clientClosed() == .wait)
        #expect(h.completeHook() == .runHook(.error))
        #expect(h.completeHook() == .closeClient)
    }

    @Test("client closes during the response hook: as mitmproxy, no error hook after it")
    func clientClosesDuringResponseHook() {
        var h = Harness(request: .get("/"))
        h.runRequestToServer()
        _ = h.responseHead(.ok(contentLength: 0))
        _ = h.completeHook()
        #expect(h.responseEnd() == .runHook(.response))
        #expect(h.clientClosed() == .wait)
        #expect(h.completeHook() == .closeClient)
        #expect(h.flow.error?.message == "Client disconnected.")
        #expect(h.isDone)
        #expect(h.hooks == [.requestHeaders, .request, .responseHeaders, .response])
    }

    @Test("client closes after a streamed response is through: nothing to report")
    func clientClosesAfterStreamedResponse() {
        var h = Harness(request: .get("/"), limits: .init(streamLargeBodies: 1))
        h.runRequestToServer()
        _ = h.responseHead(.ok(contentLength: 2))
        _ = h.completeHook()
        _ = h.responseBody("ab")
        #expect(h.responseEnd() == .sendResponseEnd(trailers: nil))
        #expect(h.clientClosed() == .wait)
        #expect(h.responseEndSent() == .runHook(.response))
        #expect(h.clientClosed() == .wait)
        #expect(h.completeHook() == .wait)
        #expect(h.flow.error == nil)
        #expect(h.isDone)
    }

    @Test("the driver fails a flow that never started (a malformed request): error hook, then its status")
    func driverFailsBeforeStart() {
        var h = Harness(request: .get("/"))
        #expect(h.fail("Bad request: invalid HTTP method.", status: 400) == .runHook(.error))
        #expect(h.completeHook() == .sendErrorResponse(status: 400, message: "Bad request: invalid HTTP method."))
        #expect(h.isDone)
    }

    // MARK: - Trailers and server connection

    @Test("request and response trailers are kept on the flow and forwarded")
    func trailersKept() {
        var h = Harness(request: .post("/", chunked: true))
        _ = h.start()
        _ = h.completeHook()
        _ = h.requestBody("data")
        #expect(h.requestEnd(trailers: ["X-Checksum": "abc"]) == .runHook(.request))
        #expect(h.flow.request.trailers == ["X-Checksum": "abc"])
        let send = h.completeHook()
        #expect(send == .sendRequest(h.sentRequest, body: ByteBuffer(string: "data"), end: true))
        #expect(h.sentRequest.trailers == ["X-Checksum": "abc"])

        _ = h.responseHead(.ok(contentLength: nil))
        _ = h.completeHook()
        _ = h.responseBody("resp")
        #expect(h.responseEnd(trailers: ["grpc-status": "0", "grpc-message": "ok"]) == .runHook(.response))
        let response = h.completeHook()
        #expect(response == .sendResponse(h.sentResponse, body: ByteBuffer(string: "resp"), end: true))
        #expect(h.sentResponse.trailers == ["grpc-status": "0", "grpc-message": "ok"])
    }

    @Test("request trailers that arrive during the requestheaders hook survive it")
    func requestTrailersDuringHook() {
        var h = Harness(request: .post("/", chunked: true))
        _ = h.start()
        _ = h.requestBody("x")
        #expect(h.requestEnd(trailers: ["t": "v"]) == .wait)
        #expect(h.completeHook() == .runHook(.request))
        #expect(h.flow.request.trailers == ["t": "v"])
    }

    @Test("the server connection is recorded on the flow")
    func serverConnectionAttached() {
        var h = Harness(request: .get("/"))
        h.runRequestToServer()
        let server = ServerConnection(address: Address(host: "example.com", port: 80), usesTLS: false)
        h.machine.attachServerConnection(server)
        #expect(h.flow.serverConnection == server)
    }
}

// MARK: - Harness

/// Drives one machine as the server's handler does, recording the hooks it asks for and keeping the
/// copy of the flow the addons work on.
private struct Harness {
    typealias Action = HTTPStreamStateMachine.Action

    var machine: HTTPStreamStateMachine
    /// The flow as it was when the outstanding hook started: what the addons edit.
    private(set) var hookFlow: HTTPFlow?
    private(set) var hooks: [HTTPHook] = []

    init(request: HTTPRequest, limits: HTTPStreamStateMachine.Limits = .init()) {
        let client = ClientConnection(
            peername: Address(host: "127.0.0.1", port: 50000),
            sockname: Address(host: "127.0.0.1", port: 8080),
            proxyMode: "regular"
        )
        machine = HTTPStreamStateMachine(flow: HTTPFlow(request: request, clientConnection: client), limits: limits)
    }

    var flow: HTTPFlow { machine.flow }
    var isDone: Bool { machine.isDone }
    var hasStartedResponse: Bool { machine.hasStartedResponse }

    /// The request head as `.sendRequest` carries it after the request hook: the body travels beside it.
    var sentRequest: HTTPRequest {
        var request = machine.flow.request
        request.rawContent = nil
        return request
    }

    /// The response head as `.sendResponse` carries it.
    var sentResponse: HTTPResponse {
        guard var response = machine.flow.response else {
            Issue.record("the flow has no response")
            return HTTPResponse(statusCode: 599)
        }
        response.rawContent = nil
        return response
    }

    private mutating func record(_ action: Action) -> Action {
        if case .runHook(let hook) = action {
            hooks.append(hook)
            hookFlow = machine.flow
        }
        return action
    }

    mutating func start() -> Action { record(machine.start()) }
    mutating func requestBody(_ text: String) -> Action {
        record(machine.requestBodyReceived(ByteBuffer(string: text)))
    }
    mutating func requestEnd(trailers: Headers? = nil) -> Action {
        record(machine.requestEndReceived(trailers: trailers))
    }
    mutating func responseHead(_ response: HTTPResponse) -> Action { record(machine.responseHeadReceived(response)) }
    mutating func responseBody(_ text: String) -> Action {
        record(machine.responseBodyReceived(ByteBuffer(string: text)))
    }
    mutating func responseEnd(trailers: Headers? = nil) -> Action {
        record(machine.responseEndReceived(trailers: trailers))
    }
    mutating func responseEndSent() -> Action { record(machine.responseEndSent()) }
    mutating func serverFailed(_ message: String) -> Action { record(machine.serverFailed(message)) }
    mutating func clientClosed() -> Action { record(machine.clientClosed()) }
    mutating func fail(_ message: String, status: Int?) -> Action { record(machine.fail(message, status: status)) }

    /// Answers the outstanding hook with the addons' copy of the flow, edited by `edit`.
    mutating func completeHook(
        _ edit: (inout HTTPFlow) -> Void = { _ in },
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> Action {
        guard var edited = hookFlow else {
            Issue.record("no hook is running", sourceLocation: sourceLocation)
            return .wait
        }
        hookFlow = nil
        edit(&edited)
        return record(machine.hookCompleted(edited))
    }

    /// A bodiless request through requestheaders and request hooks, sent to the server.
    mutating func runRequestToServer(sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(start() == .runHook(.requestHeaders), sourceLocation: sourceLocation)
        #expect(requestEnd() == .wait, sourceLocation: sourceLocation)
        #expect(completeHook() == .runHook(.request), sourceLocation: sourceLocation)
        let send = completeHook()
        #expect(send == .sendRequest(sentRequest, body: ByteBuffer(), end: true), sourceLocation: sourceLocation)
    }
}

// MARK: - Messages

extension HTTPRequest {
    fileprivate static func get(_ path: String, method: String = "GET") -> HTTPRequest {
        HTTPRequest(
            method: method, scheme: "http", host: "example.com", port: 80, path: path,
            headers: ["Host": "example.com", "User-Agent": "test"]
        )
    }

    fileprivate static func post(_ path: String, body: String, headers: Headers = [:]) -> HTTPRequest {
        post(path, contentLength: body.utf8.count, headers: headers)
    }

    fileprivate static func post(
        _ path: String,
        contentLength: Int? = nil,
        chunked: Bool = false,
        headers extra: Headers = [:]
    ) -> HTTPRequest {
        var headers: Headers = ["Host": "example.com"]
        if let contentLength { headers.add("Content-Length", String(contentLength)) }
        if chunked { headers.add("Transfer-Encoding", "chunked") }
        for field in extra.fields { headers.add(field.name, field.value) }
        return HTTPRequest(method: "POST", scheme: "http", host: "example.com", port: 80, path: path, headers: headers)
    }
}

extension HTTPResponse {
    fileprivate static func ok(contentLength: Int?) -> HTTPResponse {
        var headers: Headers = ["Content-Type": "text/plain"]
        if let contentLength {
            headers.add("Content-Length", String(contentLength))
        } else {
            headers.add("Transfer-Encoding", "chunked")
        }
        return HTTPResponse(statusCode: 200, headers: headers)
    }
}
