import NIOCore

/// The life of one HTTP request/response exchange (one flow), whatever HTTP version either side
/// speaks: mitmproxy's `HttpStream` as a state machine. It decides; the server's handlers do the I/O.
///
/// Events come in as method calls; each returns the one `Action` the driver must perform. Hooks are
/// blocking: after `.runHook(h)` the driver runs the addons on `flow` and answers with
/// `hookCompleted(_:)`, handing back the edited flow. Only one hook is out at a time: body data that
/// arrives meanwhile is buffered, a request or response end is recorded and put on the edited flow, and
/// a failure (client gone, server failed, body too large) waits for the hook to complete, as mitmproxy's
/// `check_killed` does.
///
/// ```
///   requestHeaders hook ──► request body ──► request hook ──► server ──► responseHeaders hook
///        │ (stream: forward body as it comes)      │ (addon set a response: skip the server)
///        ▼                                         ▼
///   response body ──► response hook ──► send to client ──► done
///   any failure ──► error hook ──► error response (or close, once the response has begun)
/// ```
public struct HTTPStreamStateMachine: Sendable {
    /// Size limits, from `body_size_limit` and `stream_large_bodies`.
    public struct Limits: Sendable, Hashable {
        public var bodySizeLimit: Int?
        public var streamLargeBodies: Int?

        public init(bodySizeLimit: Int? = nil, streamLargeBodies: Int? = nil) {
            self.bodySizeLimit = bodySizeLimit
            self.streamLargeBodies = streamLargeBodies
        }
    }

    public enum Action: Sendable, Equatable {
        /// Nothing to do until the next event. When `isDone` is true afterwards (the response hook of a
        /// streamed response has completed), the exchange is over.
        case wait
        /// Run the hook on `flow` and call `hookCompleted(_:)` with the result.
        case runHook(HTTPHook)
        /// Answer `Expect: 100-continue` with an interim response; the header is not forwarded.
        case sendContinue
        /// Send the request head to the server (connecting first if needed), then `body`, and the end
        /// of the message if `end`.
        case sendRequest(HTTPRequest, body: ByteBuffer?, end: Bool)
        case sendRequestBody(ByteBuffer)
        case sendRequestEnd(trailers: Headers?)
        /// Send the response head to the client, then `body`, and the end of the message if `end`.
        case sendResponse(HTTPResponse, body: ByteBuffer?, end: Bool)
        case sendResponseBody(ByteBuffer)
        /// End the streamed response, then call `responseEndSent()`: the response hook runs after it.
        case sendResponseEnd(trailers: Headers?)
        /// Answer the client with an error response (its status and a readable reason), then the
        /// exchange is over.
        case sendErrorResponse(status: Int, message: String)
        /// The response had begun when the exchange failed: the client connection must be closed.
        case closeClient
    }

    private enum State: Sendable {
        case requestHeadersHook
        case readingRequestBody
        case requestHook
        case awaitingResponse
        case responseHeadersHook
        case readingResponseBody
        case responseHook
        /// A streamed response is through; once the driver has sent its end, the response hook runs.
        case streamedResponseSent
        case streamedResponseHook
        case errorHook(status: Int?)
        case done
    }

    public private(set) var flow: HTTPFlow
    private var state: State = .requestHeadersHook
    private let limits: Limits

    /// Buffered body bytes of the message currently being read (request, then response).
    private var body: ByteBuffer?
    private var bodyLength = 0
    private var requestComplete = false
    private var requestTrailers: Headers?
    private var responseComplete = false
    private var responseTrailers: Headers?
    /// Whether we have started sending the request to the server / the response to the client.
    private var requestForwarded = false
    private var responseStarted = false
    /// Whether the response came from an addon rather than the server.
    private var responseFromAddon = false
    /// Whether a hook is out with the driver (answered by `hookCompleted(_:)`).
    private var hookInFlight = false
    /// A failure that happened while a hook was out; it is handled once the hook completes.
    private var deferredFailure: (message: String, status: Int?)?
    /// A request / response end that arrived while a hook was out: the addons' copy of the flow lacks
    /// its trailers and timestamp, so they are put on the edited flow.
    private var lateRequestEnd: (trailers: Headers?, timestamp: Double)?
    private var lateResponseEnd: (trailers: Headers?, timestamp: Double)?

    public init(flow: HTTPFlow, limits: Limits) {
        self.flow = flow
        self.limits = limits
    }

    public var isDone: Bool {
        if case .done = state { return true }
        return false
    }

    /// Whether the response was begun towards the client (so an error can no longer be answered).
    public var hasStartedResponse: Bool { responseStarted }

    // MARK: - Start

    /// The request head has been received: the flow begins with the requestheaders hook.
    public mutating func start() -> Action {
        runHook(.requestHeaders)
    }

    // MARK: - Inbound from the client

    public mutating func requestBodyReceived(_ buffer: ByteBuffer) -> Action {
        switch state {
        case .requestHeadersHook, .requestHook:
            return append(buffer, limitStatus: 413, what: "Request")
        case .readingRequestBody:
            if requestForwarded {
                return .sendRequestBody(buffer)
            }
            if streamsRequest {
                // Streaming was decided while the client waited for 100 Continue: it starts now.
                return switchRequestToStreaming(adding: buffer)
            }
            if flow.response == nil, let threshold = limits.streamLargeBodies,
                bodyLength + buffer.readableBytes > threshold
            {
                return switchRequestToStreaming(adding: buffer)
            }
            return append(buffer, limitStatus: 413, what: "Request")
        case .awaitingResponse, .responseHeadersHook, .readingResponseBody, .responseHook, .streamedResponseSent,
            .streamedResponseHook:
            // A streamed request still going while the server already answers.
            return requestForwarded && flow.request.stream && !requestComplete ? .sendRequestBody(buffer) : .wait
        case .errorHook, .done:
            return .wait
        }
    }

    public mutating func requestEndReceived(trailers: Headers?) -> Action {
        requestComplete = true
        requestTrailers = trailers
        flow.request.trailers = trailers
        flow.request.timestampEnd = now()
        if hookInFlight {
            lateRequestEnd = (trailers, flow.request.timestampEnd!)
        }
        switch state {
        case .readingRequestBody:
            if requestForwarded {
                state = .awaitingResponse
                return .sendRequestEnd(trailers: trailers)
            }
            if streamsRequest {
                // Streaming was decided after 100 Continue, but the body was empty or came in one piece.
                return beginStreamingRequest()
            }
            flow.request.rawContent = takeBody()
            state = .requestHook
            return runHook(.request)
        case .awaitingResponse, .responseHeadersHook, .readingResponseBody, .responseHook, .streamedResponseSent,
            .streamedResponseHook:
            return requestForwarded && flow.request.stream ? .sendRequestEnd(trailers: trailers) : .wait
        case .requestHeadersHook, .requestHook, .errorHook, .done:
            return .wait
        }
    }

    // MARK: - Hooks

    public mutating func hookCompleted(_ edited: HTTPFlow) -> Action {
        precondition(hookInFlight, "Internal inconsistency: hook completed while none was running")
        hookInFlight = false
        flow = edited
        if flow.websocket != nil, flow.websocket?.messages.isEmpty == true, !flow.isAcceptedWebSocketUpgrade {
            // An addon turned the 101 into something else: no WebSocket connection follows, and the
            // flow ends as an ordinary exchange (savers then keep it at its response).
            flow.websocket = nil
        }
        if let late = lateRequestEnd {
            lateRequestEnd = nil
            flow.request.trailers = late.trailers
            flow.request.timestampEnd = late.timestamp
        }
        if let late = lateResponseEnd {
            lateResponseEnd = nil
            flow.response?.trailers = late.trailers
            flow.response?.timestampEnd = late.timestamp
        }
        if let failure = deferredFailure {
            deferredFailure = nil
            switch state {
            case .requestHeadersHook, .requestHook, .responseHeadersHook:
                return fail(failure.message, status: failure.status)
            case .responseHook, .streamedResponseHook:
                // As mitmproxy, a flow whose response hook has run gets no error hook as well.
                flow.error = FlowError(failure.message)
                return finishFailed(status: failure.status)
            case .errorHook:
                break  // already failing
            case .readingRequestBody, .awaitingResponse, .readingResponseBody, .streamedResponseSent, .done:
                preconditionFailure("Internal inconsistency: hook completed in a state that runs none")
            }
        }
        if flow.isKilled, let emitErrorHook = killCheck {
            return killed(emitErrorHook: emitErrorHook)
        }
        switch state {
        case .requestHeadersHook:
            return afterRequestHeadersHook()
        case .requestHook:
            return afterRequestHook()
        case .responseHeadersHook:
            return afterResponseHeadersHook()
        case .responseHook:
            guard var response = flow.response else {
                return fail("addon removed the response", status: 502)
            }
            state = .done
            let body = response.rawContent
            response.rawContent = nil
            responseStarted = true
            return .sendResponse(response, body: body, end: true)
        case .streamedResponseHook:
            state = .done
            return .wait
        case .errorHook(let status):
            return finishFailed(status: status)
        case .readingRequestBody, .awaitingResponse, .readingResponseBody, .streamedResponseSent, .done:
            preconditionFailure("Internal inconsistency: hook completed in a state that runs none")
        }
    }

    /// After which hooks an addon may kill the flow (`HTTPFlow.kill()`), and whether the error hook
    /// runs then: not after the response hook, as in mitmproxy (`check_killed`). `nil` where a kill
    /// is not checked (the error hook itself).
    private var killCheck: Bool? {
        switch state {
        case .requestHeadersHook, .requestHook, .responseHeadersHook: true
        case .responseHook, .streamedResponseHook: false
        case .readingRequestBody, .awaitingResponse, .readingResponseBody, .streamedResponseSent, .errorHook, .done: nil
        }
    }

    /// An addon killed the flow: nothing more is forwarded, and the client gets no answer (its
    /// connection, or HTTP/2 stream, is closed) once the error hook has run.
    private mutating func killed(emitErrorHook: Bool) -> Action {
        responseStarted = true  // so nothing is answered
        body = nil
        flow.error = FlowError(FlowError.killedMessage)
        guard emitErrorHook else {
            state = .done
            return .closeClient
        }
        state = .errorHook(status: nil)
        return runHook(.error)
    }

    /// The flow failed and its hooks have run: answer with `status`, or close a client whose response
    /// had begun.
    private mutating func finishFailed(status: Int?) -> Action {
        state = .done
        if let status, !responseStarted {
            return .sendErrorResponse(status: status, message: flow.error?.message ?? "")
        }
        return responseStarted ? .closeClient : .wait
    }

    private mutating func afterRequestHeadersHook() -> Action {
        let length = Self.declaredBodyLength(flow.request.headers)
        if let limit = limits.bodySizeLimit, let length, length > limit {
            // mitmproxy checks the declared length too, so a streamed body cannot slip past the limit.
            return fail(Self.bodySizeLimitMessage("Request", limit: limit), status: 413)
        }
        if let threshold = limits.streamLargeBodies, let length, length > threshold {
            flow.request.stream = true
        }
        if flow.request.headers["expect"]?.lowercased() == "100-continue" {
            flow.request.headers.remove("expect")
            if !requestComplete {
                // The client sends the body only after this; a streamed request starts with its first part.
                state = .readingRequestBody
                return .sendContinue
            }
        }
        if streamsRequest {
            return beginStreamingRequest()
        }
        if requestComplete {
            flow.request.rawContent = takeBody()
            state = .requestHook
            return runHook(.request)
        }
        state = .readingRequestBody
        return .wait
    }

    /// Whether the request body is forwarded as it arrives. Never when an addon has answered: the
    /// server is not contacted then, and the body is read for the request hook.
    private var streamsRequest: Bool {
        flow.request.stream && flow.response == nil
    }

    private mutating func beginStreamingRequest() -> Action {
        flow.request.stream = true
        let buffered = takeBody()
        requestForwarded = true
        if requestComplete {
            state = .awaitingResponse
            return .sendRequest(flow.request, body: buffered, end: true)
        }
        state = .readingRequestBody
        return .sendRequest(flow.request, body: buffered, end: false)
    }

    private mutating func switchRequestToStreaming(adding buffer: ByteBuffer) -> Action {
        let appended = append(buffer, limitStatus: 413, what: "Request")
        guard case .wait = appended else { return appended }
        return beginStreamingRequest()
    }

    private mutating func afterRequestHook() -> Action {
        if flow.response != nil {
            // An addon answered: the server is never contacted (mitmproxy emulates responseheaders).
            responseFromAddon = true
            responseComplete = true
            flow.response!.timestampStart = now()
            state = .responseHeadersHook
            return runHook(.responseHeaders)
        }
        state = .awaitingResponse
        requestForwarded = true
        var head = flow.request
        let body = head.rawContent
        head.rawContent = nil
        return .sendRequest(head, body: body, end: true)
    }

    // MARK: - Inbound from the server

    /// The exchange has a server connection now (recorded on the flow).
    public mutating func attachServerConnection(_ server: ServerConnection) {
        flow.serverConnection = server
    }

    public mutating func responseHeadReceived(_ response: HTTPResponse) -> Action {
        switch state {
        case .awaitingResponse:
            break
        case .readingRequestBody where requestForwarded:
            break  // the server answers a streamed request before its end (HTTP/2 bidirectional streams, early errors)
        case .requestHeadersHook, .readingRequestBody, .requestHook, .responseHeadersHook, .readingResponseBody,
            .responseHook, .streamedResponseSent, .streamedResponseHook, .errorHook, .done:
            return .wait
        }
        flow.response = response
        if flow.isAcceptedWebSocketUpgrade {
            // Set before the response hooks, as mitmproxy does, so addons know a WebSocket connection
            // follows (and the savers wait for websocket_end).
            flow.websocket = WebSocketData()
        }
        state = .responseHeadersHook
        return runHook(.responseHeaders)
    }

    public mutating func responseBodyReceived(_ buffer: ByteBuffer) -> Action {
        switch state {
        case .responseHeadersHook, .responseHook:
            return append(buffer, limitStatus: 502, what: "Response")
        case .readingResponseBody:
            if flow.response!.stream {
                return .sendResponseBody(buffer)
            }
            if let threshold = limits.streamLargeBodies, bodyLength + buffer.readableBytes > threshold {
                let appended = append(buffer, limitStatus: 502, what: "Response")
                guard case .wait = appended else { return appended }
                return beginStreamingResponse()
            }
            return append(buffer, limitStatus: 502, what: "Response")
        case .requestHeadersHook, .readingRequestBody, .requestHook, .awaitingResponse, .streamedResponseSent,
            .streamedResponseHook, .errorHook, .done:
            return .wait
        }
    }

    public mutating func responseEndReceived(trailers: Headers?) -> Action {
        responseComplete = true
        responseTrailers = trailers
        guard flow.response != nil else { return .wait }
        flow.response!.trailers = trailers
        flow.response!.timestampEnd = now()
        if hookInFlight {
            lateResponseEnd = (trailers, flow.response!.timestampEnd!)
        }
        switch state {
        case .readingResponseBody:
            if flow.response!.stream {
                // mitmproxy runs the response hook once a streamed body is through.
                state = .streamedResponseSent
                return .sendResponseEnd(trailers: trailers)
            }
            flow.response!.rawContent = takeBody()
            state = .responseHook
            return runHook(.response)
        case .requestHeadersHook, .readingRequestBody, .requestHook, .awaitingResponse, .responseHeadersHook,
            .responseHook, .streamedResponseSent, .streamedResponseHook, .errorHook, .done:
            return .wait
        }
    }

    /// The driver has sent the end of the response. For a streamed response the response hook runs
    /// now; a buffered one is already done.
    public mutating func responseEndSent() -> Action {
        guard case .streamedResponseSent = state else { return .wait }
        state = .streamedResponseHook
        return runHook(.response)
    }

    private mutating func afterResponseHeadersHook() -> Action {
        guard flow.response != nil else {
            return fail("addon removed the response", status: 502)
        }
        if responseFromAddon {
            state = .responseHook
            return runHook(.response)
        }
        let hasBody = !HTTPResponse.hasNoBody(statusCode: flow.response!.statusCode, requestMethod: flow.request.method)
        let length = hasBody ? Self.declaredBodyLength(flow.response!.headers) : nil
        if let limit = limits.bodySizeLimit, let length, length > limit {
            return fail(Self.bodySizeLimitMessage("Response", limit: limit), status: 502)
        }
        if let threshold = limits.streamLargeBodies, let length, length > threshold {
            flow.response!.stream = true
        }
        if flow.response!.stream {
            return beginStreamingResponse()
        }
        if responseComplete {
            flow.response!.rawContent = takeBody()
            state = .responseHook
            return runHook(.response)
        }
        state = .readingResponseBody
        return .wait
    }

    private mutating func beginStreamingResponse() -> Action {
        flow.response!.stream = true
        let buffered = takeBody()
        responseStarted = true
        var head = flow.response!
        head.rawContent = nil
        if responseComplete {
            state = .streamedResponseSent
            return .sendResponse(head, body: buffered, end: true)
        }
        state = .readingResponseBody
        return .sendResponse(head, body: buffered, end: false)
    }

    // MARK: - Failures

    /// The server could not be reached, or failed before the response was complete.
    public mutating func serverFailed(_ message: String) -> Action {
        switch state {
        case .done, .errorHook, .responseHook, .streamedResponseSent, .streamedResponseHook:
            // In the response hook the response is complete: nothing more is needed from the server.
            return .wait
        case .requestHeadersHook, .readingRequestBody, .requestHook, .awaitingResponse, .responseHeadersHook,
            .readingResponseBody:
            return fail(message, status: 502)
        }
    }

    /// The client went away before the exchange was over.
    public mutating func clientClosed() -> Action {
        switch state {
        case .done, .errorHook, .streamedResponseSent, .streamedResponseHook:
            return .wait
        case .requestHeadersHook, .readingRequestBody, .requestHook, .awaitingResponse, .responseHeadersHook,
            .readingResponseBody, .responseHook:
            responseStarted = true  // nothing can be answered any more
            return fail("Client disconnected.", status: nil)
        }
    }

    /// Fails the flow with `message`: the error hook runs, then the client gets `status` (if the
    /// response has not begun). While a hook is out the failure waits for it (the first one wins).
    public mutating func fail(_ message: String, status: Int?) -> Action {
        if hookInFlight {
            if deferredFailure == nil {
                deferredFailure = (message, status)
            }
            return .wait
        }
        flow.error = FlowError(message)
        state = .errorHook(status: status)
        body = nil
        return runHook(.error)
    }

    private mutating func runHook(_ hook: HTTPHook) -> Action {
        hookInFlight = true
        return .runHook(hook)
    }

    // MARK: - Body sizes

    /// The body length a head declares: its Content-Length, unless Transfer-Encoding overrides it
    /// (RFC 9112 §6.3).
    private static func declaredBodyLength(_ headers: Headers) -> Int? {
        guard !headers.contains("transfer-encoding"), let value = headers["content-length"] else { return nil }
        return Int(value)
    }

    private static func bodySizeLimitMessage(_ what: String, limit: Int) -> String {
        "\(what) body exceeds mitmproxy's body_size_limit (\(limit) bytes)."
    }

    // MARK: - Body buffering

    private mutating func append(_ buffer: ByteBuffer, limitStatus: Int, what: String) -> Action {
        bodyLength += buffer.readableBytes
        if let limit = limits.bodySizeLimit, bodyLength > limit {
            return fail(Self.bodySizeLimitMessage(what, limit: limit), status: limitStatus)
        }
        if body == nil {
            body = buffer
        } else {
            var buffer = buffer
            body!.writeBuffer(&buffer)
        }
        return .wait
    }

    private mutating func takeBody() -> ByteBuffer {
        defer {
            body = nil
            bodyLength = 0
        }
        return body ?? ByteBuffer()
    }
}
