import Foundation

/// Identifies one flow.
public typealias FlowID = UUID

/// One HTTP request/response exchange with its connections (mitmproxy's `http.HTTPFlow`). Flows are
/// values: a hook receives one and hands back the edited copy.
public struct HTTPFlow: Sendable, Hashable, Identifiable {
    public var id: FlowID
    public var request: HTTPRequest
    public var response: HTTPResponse?
    public var error: FlowError?
    public var clientConnection: ClientConnection
    public var serverConnection: ServerConnection?
    /// `"request"` for a replayed request, `"response"` for a replayed response.
    public var isReplay: String?
    public var marked: String
    public var comment: String
    public var timestampCreated: Double
    /// Free-form data addons attach to the flow.
    public var metadata: [String: String]

    public init(request: HTTPRequest, clientConnection: ClientConnection, serverConnection: ServerConnection? = nil) {
        self.id = FlowID()
        self.request = request
        self.clientConnection = clientConnection
        self.serverConnection = serverConnection
        self.marked = ""
        self.comment = ""
        self.timestampCreated = request.timestampStart
        self.metadata = [:]
    }
}
