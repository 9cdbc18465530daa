import Foundation

/// One request as ``LoopbackOrigin`` received it.
public struct RecordedRequest: Sendable, CustomStringConvertible {
    public var method: String
    /// The request target exactly as received (`/echo?x=1`; HTTP/2: the `:path`).
    public var uri: String
    /// `HTTP/1.1`, `HTTP/1.0` or `HTTP/2.0`.
    public var httpVersion: String
    /// Header fields in wire order, names in wire case. For HTTP/2, the `host` field carries `:authority`.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// Which accepted connection (1, 2, …) it came on; two requests with the same id shared a connection.
    public var connectionID: Int
    public var isTLS: Bool
    /// Trailer fields after a chunked (or HTTP/2) body, in order.
    public var trailers: [(name: String, value: String)] = []

    /// The first value of `name`, compared case-insensitively.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    /// Names of the header fields, in order.
    public var headerNames: [String] { headers.map(\.name) }

    public var bodyString: String { String(decoding: body, as: UTF8.self) }

    public var description: String {
        "\(method) \(uri) \(httpVersion) [conn \(connectionID)\(isTLS ? ", TLS" : "")] "
            + headers.map { "\($0.name): \($0.value)" }.joined(separator: " | ") + " body \(body.count) bytes"
    }
}

/// The body of an `/echo` response.
public struct EchoResponse: Codable, Sendable, Hashable {
    public var method: String
    public var uri: String
    public var httpVersion: String
    /// `[name, value]` pairs in wire order.
    public var headers: [[String]]
    /// The request body, decoded as UTF-8 (lossy).
    public var body: String
    public var bodyLength: Int

    public func header(_ name: String) -> String? {
        headers.first { $0.first?.lowercased() == name.lowercased() }?.last
    }
}
