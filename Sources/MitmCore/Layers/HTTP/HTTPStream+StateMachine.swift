import NIOCore

/// The life of one HTTP request/response exchange (one flow), whatever HTTP version either side
/// speaks: mitmproxy's `HttpStream` as a state machine. It decides; the server's handlers do the I/O.
///
/// Events come in as method calls; each returns the one `Action` the driver must perform. Hooks are
/// blocking: after `.runHook(h)` the driver runs the addons on `flow` and answers with
/// `hookCompleted(_:)`, handing back the edited flow. Body data that arrives meanwhile is buffered.
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
        /// Nothing to do until the next event.
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
        /// End the response; with `done`, the exchange is over.
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
        .runHook(.requestHeaders)
    }

    // MARK: - Inbound from the client

    public mutating func requestBodyReceived(_ buffer: ByteBuffer) -> Action {
        switch state {
        case .requestHeadersHook, .requestHook:
            return append(buffer, limitStatus: 413, what: "Request")
        case .readingRequestBody:
            if flow.request.stream {
                return .sendRequestBody(buffer)
            }
            if let threshold = limits.streamLargeBodies, bodyLength + buffer.readableBytes > threshold {
                return switchRequestToStreaming(adding: buffer)
            }
            return append(buffer, limitStatus: 413, what: "Request")
        case .awaitingResponse, .responseHeadersHook, .readingResponseBody, .responseHook, .streamedResponseSent,
            .streamedResponseHook:
            // A streamed request still going while the server already answers.
            return flow.request.stream && !requestComplete ? .sendRequestBody(buffer) : .wait
        case .errorHook, .done:
            return .wait
        }
    }

    public mutating func requestEndReceived(trailers: Headers?) -> Action {
        requestComplete = true
        requestTrailers = trailers
        flow.request.trailers = trailers
        flow.request.timestampEnd = now()
        switch state {
        case .readingRequestBody:
            if flow.request.stream {
                state = .awaitingResponse
                return .sendRequestEnd(trailers: trailers)
            }
            flow.request.rawContent = takeBody()
            state = .requestHook
            return .runHook(.request)
        case .awaitingResponse, .responseHeadersHook, .readingResponseBody, .responseHook, .streamedResponseSent,
            .streamedResponseHook:
            return flow.request.stream ? .sendRequestEnd(trailers: trailers) : .wait
        case .requestHeadersHook, .requestHook, .errorHook, .done:
            return .wait
        }
    }

    // MARK: - Hooks

    public mutating func hookCompleted(_ edited: HTTPFlow) -> Action {
        flow = edited
        switch state {
        case .requestHeadersHook:
            return afterRequestHeadersHook()
        case .requestHook:
            return afterRequestHook()
        case .responseHeadersHook:
            return afterResponseHeadersHook()
        case .responseHook:
            state = .done
            var response = flow.response!
            let body = response.rawContent
            response.rawContent = nil
            responseStarted = true
            return .sendResponse(response, body: body, end: true)
        case .streamedResponseHook:
            state = .done
            return .wait
        case .errorHook(let status):
            state = .done
            if let status, !responseStarted {
                return .sendErrorResponse(status: status, message: flow.error?.message ?? "")
            }
            return responseStarted ? .closeClient : .wait
        case .readingRequestBody, .awaitingResponse, .readingResponseBody, .streamedResponseSent, .done:
            preconditionFailure("Internal inconsistency: hook completed in a state that runs none")
        }
    }

    private mutating func afterRequestHeadersHook() -> Action {
        if flow.request.headers["expect"]?.lowercased() == "100-continue" {
            flow.request.headers.remove("expect")
            if !requestComplete {
                state = .readingRequestBody
                return .sendContinue
            }
        }
        if let threshold = limits.streamLargeBodies,
            let length = flow.request.headers["content-length"].flatMap(Int.init), length > threshold
        {
            flow.request.stream = true
        }
        if flow.request.stream && flow.response == nil {
            return beginStreamingRequest()
        }
        if requestComplete {
            flow.request.rawContent = takeBody()
            state = .requestHook
            return .runHook(.request)
        }
        state = .readingRequestBody
        return .wait
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
        _ = append(buffer, limitStatus: 413, what: "Request")
        return beginStreamingRequest()
    }

    private mutating func afterRequestHook() -> Action {
        if flow.response != nil {
            // An addon answered: the server is never contacted (mitmproxy emulates responseheaders).
            responseFromAddon = true
            responseComplete = true
            flow.response!.timestampStart = now()
            state = .responseHeadersHook
            return .runHook(.responseHeaders)
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
        guard case .awaitingResponse = state else { return .wait }
        flow.response = response
        state = .responseHeadersHook
        return .runHook(.responseHeaders)
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
                _ = append(buffer, limitStatus: 502, what: "Response")
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
        switch state {
        case .readingResponseBody:
            if flow.response!.stream {
                // mitmproxy runs the response hook once a streamed body is through.
                state = .streamedResponseSent
                return .sendResponseEnd(trailers: trailers)
            }
            flow.response!.rawContent = takeBody()
            state = .responseHook
            return .runHook(.response)
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
        return .runHook(.response)
    }

    private mutating func afterResponseHeadersHook() -> Action {
        guard flow.response != nil else {
            return fail("addon removed the response", status: 502)
        }
        if responseFromAddon {
            state = .responseHook
            return .runHook(.response)
        }
        if let threshold = limits.streamLargeBodies,
            let length = flow.response!.headers["content-length"].flatMap(Int.init), length > threshold
        {
            flow.response!.stream = true
        }
        if flow.response!.stream {
            return beginStreamingResponse()
        }
        if responseComplete {
            flow.response!.rawContent = takeBody()
            state = .responseHook
            return .runHook(.response)
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
        case .done, .errorHook, .streamedResponseSent, .streamedResponseHook:
            return .wait
        case .requestHeadersHook, .readingRequestBody, .requestHook, .awaitingResponse, .responseHeadersHook,
            .readingResponseBody, .responseHook:
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
    /// response has not begun).
    public mutating func fail(_ message: String, status: Int?) -> Action {
        flow.error = FlowError(message)
        state = .errorHook(status: status)
        body = nil
        return .runHook(.error)
    }

    // MARK: - Body buffering

    private mutating func append(_ buffer: ByteBuffer, limitStatus: Int, what: String) -> Action {
        bodyLength += buffer.readableBytes
        if let limit = limits.bodySizeLimit, bodyLength > limit {
            return fail("\(what) body exceeds mitmproxy's body_size_limit (\(limit) bytes).", status: limitStatus)
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
