import MitmCore

/// mitmproxy's `map_remote` addon (`--map-remote` / `-M`): sends matching requests to another URL,
/// with specs `[|filter]|url-regex|replacement` (see ``ModifySpec``; the closed form
/// `|filter|regex|replacement|` needs the filter), e.g. `|example.com/api|staging.example.com/api`.
///
/// In `request` (live flows without a response or error), for each matching spec in order, the regex
/// replaces every match in the request's ``HTTPRequest/prettyURL`` (the URL as the client named it);
/// if that changed the URL, the request is pointed at the result (``HTTPRequest/setURL(_:)``): scheme,
/// host, port and path change, and so does the Host header (when present) and the HTTP/2
/// `:authority`, as mitmproxy does when its `request.url` is set. The proxy then connects to the
/// new host. The regex and the replacement are Python-flavoured (`\1` or `\g<1>` for groups; no
/// escape decoding, as in mitmproxy); a replacement that does not give a valid
/// `scheme://host[:port]/path` leaves the request unchanged, with a warning.
public struct MapRemote: Addon {
    public var hooks: Set<HookName>? { [.request] }
    public let name = "mapremote"

    /// One parsed rule.
    public struct Rule: Sendable, Hashable {
        public let spec: ModifySpec
        let regex: SpecRegex
        let template: ReplacementTemplate

        public init(_ spec: ModifySpec) throws(ModifySpecError) {
            self.spec = spec
            self.regex = try SpecRegex(spec.subject, spec: spec.spec)
            self.template = try regex.template(spec.replacement, for: spec)
        }
    }

    public let rules: [Rule]

    /// Parses the `map_remote` option values. The replacement is a URL template; `@` has no
    /// special meaning here.
    ///
    /// - Throws: ``ModifySpecError`` for the first spec that does not parse.
    public init(specs: [String]) throws(ModifySpecError) {
        self.rules = try specs.map { spec throws(ModifySpecError) in try Rule(try ModifySpec(parsing: spec, replacementIsFile: false)) }
    }

    public init(rules: [Rule]) {
        self.rules = rules
    }

    public func request(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        guard flow.isLive, flow.response == nil, flow.error == nil else { return }
        for rule in rules where rule.spec.matches(flow) {
            let url = flow.request.prettyURL
            guard let newURL = rule.regex.substitute(in: url, template: rule.template), newURL != url else { continue }
            if !flow.request.setURL(newURL) {
                context.logger.warning("map_remote: '\(newURL)' (from '\(url)') is not a URL; request left unchanged")
            }
        }
    }
}
