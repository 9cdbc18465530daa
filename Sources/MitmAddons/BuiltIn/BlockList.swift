import MitmCore

/// mitmproxy's `block_list` addon: requests matching a filter are answered by the proxy with a fixed
/// status and an empty body, never reaching the server; status 444 closes the client connection
/// without any answer (nginx's convention, mitmproxy's `flow.kill()`).
///
/// Each spec is `/filter/status-code`: its first character is the separator, as in mitmproxy's
/// `modify_headers`/`map_remote` specs, so `|~d example.com|404` works as well. Only live flows
/// still waiting for an answer are blocked (not flows read from a file, nor flows another addon
/// has already answered or killed). A blocked flow gets `metadata["blocklisted"] = "true"`.
public struct BlockList: Addon {
    public var hooks: Set<HookName>? { [.request] }
    public let name = "blocklist"

    /// One parsed `block_list` spec.
    public struct Spec: Sendable, Hashable {
        public var filter: FlowFilter
        public var statusCode: Int

        /// The status that closes the connection instead of answering.
        public static let noResponse = 444

        /// Parses `/filter/status-code` (any first character as the separator).
        public init(parsing spec: String) throws(BlockListSpecError) {
            guard let separator = spec.first else {
                throw BlockListSpecError(position: 0, message: "empty spec: expected /filter/status-code")
            }
            let rest = spec.dropFirst()
            let parts = rest.split(separator: separator, maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 2 else {
                throw BlockListSpecError(
                    position: 0,
                    message: "expected 2 parts (filter and status code) separated by '\(separator)', found \(parts.count)"
                )
            }
            let filterText = String(parts[0])
            let statusText = String(parts[1])
            // Positions count Unicode scalars from 0, the separator being 0 (as `FlowFilterError`).
            let statusPosition = 2 + filterText.unicodeScalars.count
            guard let status = Int(statusText), (100...999).contains(status) else {
                throw BlockListSpecError(
                    position: statusPosition,
                    message: "invalid status code '\(statusText)': expected an integer from 100 to 999 (444: close without answering)"
                )
            }
            do {
                self.filter = try FlowFilter(filterText)
            } catch {
                throw BlockListSpecError(position: 1 + error.position, message: "invalid filter: \(error.message)")
            }
            self.statusCode = status
        }
    }

    public let specs: [Spec]

    /// The addon for the `block_list` option's values.
    public init(specs: [String]) throws(BlockListSpecError) {
        var parsed: [Spec] = []
        for spec in specs {
            do {
                parsed.append(try Spec(parsing: spec))
            } catch {
                throw BlockListSpecError(position: error.position, message: error.message, spec: spec)
            }
        }
        self.specs = parsed
    }

    public func request(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        guard flow.isLive, flow.response == nil, flow.error == nil else { return }
        guard let spec = specs.first(where: { $0.filter.matches(flow) }) else { return }
        flow.metadata["blocklisted"] = "true"
        if spec.statusCode == Spec.noResponse {
            flow.kill()
        } else {
            flow.response = .make(spec.statusCode, body: "", headers: [:])
        }
    }
}

/// A `block_list` spec that does not parse: where (a character position in the spec, from 0) and
/// what was expected. The option's name is for the caller to add.
public struct BlockListSpecError: Error, Sendable, Hashable, CustomStringConvertible {
    public var position: Int
    public var message: String
    /// The whole spec, when known.
    public var spec: String?

    public init(position: Int, message: String, spec: String? = nil) {
        self.position = position
        self.message = message
        self.spec = spec
    }

    public var description: String {
        let prefix = spec.map { "'\($0)': " } ?? ""
        return "\(prefix)\(message) (at position \(position))"
    }
}
