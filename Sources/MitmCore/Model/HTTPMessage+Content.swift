import NIOCore

/// What requests and responses share (mitmproxy's `Message`), with `content` and `text`: the body
/// with its Content-Encoding undone. `rawContent` keeps the bytes exactly as they crossed the wire.
public protocol HTTPMessage {
    var httpVersion: String { get set }
    var headers: Headers { get set }
    var rawContent: ByteBuffer? { get set }
    var trailers: Headers? { get set }
    var timestampStart: Double { get set }
    var timestampEnd: Double? { get set }
}

extension HTTPRequest: HTTPMessage {}
extension HTTPResponse: HTTPMessage {}

extension HTTPMessage {
    /// The decoded body, or `nil` when there is none (streamed or not yet read). Throws when the
    /// body does not decode as its Content-Encoding says.
    public func content(limit: Int = ContentEncoding.defaultDecodeLimit) throws(ContentEncodingError) -> ByteBuffer? {
        guard let rawContent else { return nil }
        guard let encoding = headers["content-encoding"], !encoding.isEmpty else { return rawContent }
        return try ContentEncoding.decode(rawContent, contentEncodingHeader: encoding, limit: limit)
    }

    /// The decoded body as text (UTF-8, invalid bytes replaced), or `nil` without a body.
    public var text: String? {
        guard let content = try? content() else { return nil }
        return String(buffer: content)
    }

    /// Replaces the body with `content`, encoded with the message's current Content-Encoding, and
    /// updates Content-Length (mitmproxy's `message.content = …`).
    public mutating func setContent(_ content: ByteBuffer) throws(ContentEncodingError) {
        if let encoding = headers["content-encoding"], !encoding.isEmpty {
            rawContent = try ContentEncoding.encode(content, contentEncodingHeader: encoding)
        } else {
            rawContent = content
        }
        if !headers.contains("transfer-encoding") {
            headers["content-length"] = String(rawContent!.readableBytes)
        }
    }

    /// Sets the body from text, as UTF-8.
    public mutating func setText(_ text: String) throws(ContentEncodingError) {
        try setContent(ByteBuffer(string: text))
    }
}
