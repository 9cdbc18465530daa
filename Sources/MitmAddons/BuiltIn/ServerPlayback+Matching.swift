import Foundation
import MitmCore
import NIOCore

extension ServerPlayback {
    /// What a request must share with a recorded one for its response to be replayed (mitmproxy's
    /// loose request hash): scheme, method, path, the body (unless `server_replay_ignore_content`;
    /// form fields without `server_replay_ignore_payload_params`), the host as the client named it
    /// (unless `server_replay_ignore_host`), the port (unless `server_replay_ignore_port`), the query
    /// without `server_replay_ignore_params`, and the `server_replay_use_headers` values.
    public struct MatchKey: Sendable, Hashable {
        enum Part: Sendable, Hashable {
            case text(String)
            case optionalText(String?)
            case number(Int)
            case bytes([UInt8]?)
            case field(String, [UInt8])
        }

        let parts: [Part]

        public init(_ request: HTTPRequest, options: ServerPlaybackOptions) {
            var parts: [Part] = [.text(request.scheme), .text(request.method)]
            let (path, query) = Self.splitTarget(request.path)
            parts.append(.text(path))
            if !options.ignoreContent {
                if !options.ignorePayloadParams.isEmpty, let fields = Self.formFields(request), !fields.isEmpty {
                    let ignored = Set(options.ignorePayloadParams)
                    for (name, value) in fields where !ignored.contains(name) {
                        parts.append(.field(name, value))
                    }
                } else {
                    parts.append(.bytes(request.rawContent.map { Array($0.readableBytesView) }))
                }
            }
            if !options.ignoreHost {
                parts.append(.text(request.prettyHost))
            }
            if !options.ignorePort {
                parts.append(.number(request.port))
            }
            let ignoredParams = Set(options.ignoreParams)
            for (name, value) in FormURLEncoded.decode(query) where !ignoredParams.contains(name) {
                parts.append(.text(name))
                parts.append(.text(value))
            }
            for name in options.useHeaders {
                parts.append(.text(name))
                parts.append(.optionalText(request.headers[name]))
            }
            self.parts = parts
        }

        /// The path and the query of a request target (`/a?b=1#f` gives `/a` and `b=1`).
        static func splitTarget(_ target: String) -> (path: String, query: Substring) {
            var target = Substring(target)
            if let hash = target.firstIndex(of: "#") { target = target[..<hash] }
            guard let question = target.firstIndex(of: "?") else { return (String(target), "") }
            return (String(target[..<question]), target[target.index(after: question)...])
        }

        /// The fields of a `multipart/form-data` or `application/x-www-form-urlencoded` body, in
        /// order; `nil` for other bodies.
        static func formFields(_ request: HTTPRequest) -> [(String, [UInt8])]? {
            guard let contentType = request.headers["content-type"]?.lowercased() else { return nil }
            guard let content = try? request.content() else { return nil }
            let bytes = Array(content.readableBytesView)
            if contentType.hasPrefix("multipart/form-data") {
                guard let boundary = multipartBoundary(request.headers["content-type"]!) else { return nil }
                return multipartFields(bytes, boundary: boundary)
            }
            if contentType.hasPrefix("application/x-www-form-urlencoded") {
                return FormURLEncoded.decode(String(decoding: bytes, as: UTF8.self)).map { ($0.0, Array($0.1.utf8)) }
            }
            return nil
        }

        /// The `boundary` parameter of a multipart Content-Type, unquoted.
        static func multipartBoundary(_ contentType: String) -> String? {
            for parameter in contentType.split(separator: ";").dropFirst() {
                let pieces = parameter.split(separator: "=", maxSplits: 1)
                guard pieces.count == 2, pieces[0].trimmingCharacters(in: .whitespaces).lowercased() == "boundary" else {
                    continue
                }
                var value = pieces[1].trimmingCharacters(in: .whitespaces)
                if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") {
                    value = String(value.dropFirst().dropLast())
                }
                return value.isEmpty ? nil : value
            }
            return nil
        }

        /// The named parts of a multipart body (RFC 7578), each with its bytes.
        static func multipartFields(_ body: [UInt8], boundary: String) -> [(String, [UInt8])] {
            let delimiter = Array(("--" + boundary).utf8)
            var fields: [(String, [UInt8])] = []
            for section in split(body, on: delimiter).dropFirst() {
                if section.starts(with: Array("--".utf8)) { break }  // the close delimiter
                guard let headerEnd = firstRange(of: Array("\r\n\r\n".utf8), in: section) else { continue }
                let head = String(decoding: section[section.startIndex..<headerEnd.lowerBound], as: UTF8.self)
                guard let name = dispositionName(head) else { continue }
                var value = Array(section[headerEnd.upperBound...])
                if value.suffix(2) == [13, 10] { value.removeLast(2) }
                fields.append((name, value))
            }
            return fields
        }

        private static func dispositionName(_ head: String) -> String? {
            for line in head.split(whereSeparator: \.isNewline) {  // "\r\n" is one Character
                guard line.lowercased().hasPrefix("content-disposition:") else { continue }
                guard let range = line.range(of: "name=\"") else { return nil }
                let rest = line[range.upperBound...]
                guard let close = rest.firstIndex(of: "\"") else { return nil }
                return String(rest[..<close])
            }
            return nil
        }

        private static func split(_ bytes: [UInt8], on delimiter: [UInt8]) -> [ArraySlice<UInt8>] {
            var pieces: [ArraySlice<UInt8>] = []
            var rest = bytes[...]
            while let range = firstRange(of: delimiter, in: rest) {
                pieces.append(rest[rest.startIndex..<range.lowerBound])
                rest = rest[range.upperBound...]
            }
            pieces.append(rest)
            return pieces
        }

        private static func firstRange(of needle: [UInt8], in haystack: ArraySlice<UInt8>) -> Range<Int>? {
            guard !needle.isEmpty, haystack.count >= needle.count else { return nil }
            var index = haystack.startIndex
            while index + needle.count <= haystack.endIndex {
                if haystack[index] == needle[0], haystack[index..<index + needle.count].elementsEqual(needle) {
                    return index..<index + needle.count
                }
                index += 1
            }
            return nil
        }
    }
}
