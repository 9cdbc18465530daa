import Foundation
import MitmCore

/// mitmproxy's `modify_headers` addon (`--modify-headers` / `-H`, `--setheader` in mitmproxy 0.18):
/// sets or removes headers on matching flows, with specs `[/filter]/name/[@]value` (see ``ModifySpec``).
///
/// Runs on request headers in `requestheaders` (live flows without a response or error yet) and on
/// response headers in `responseheaders` (live flows without an error). As in mitmproxy 11:
///
/// 1. every spec's filter is evaluated first, on the flow as it arrived, so one rule's edit cannot
///    make another rule match or stop matching;
/// 2. every matching spec's header is removed (all fields of that name, case-insensitive);
/// 3. every matching spec with a non-empty value adds its header, in spec order; so several specs
///    for one name add several fields, and an empty value just removes.
///
/// The name and an inline value are read with Python's string escapes (``ModifySpec/unescape(_:part:spec:)``);
/// an `@file` value is read each time, and a file that cannot be read is skipped with a warning.
/// Flows that are not live (read from a file) are left alone.
public struct ModifyHeaders: Addon {
    public var hooks: Set<HookName>? { [.requestHeaders, .responseHeaders] }
    public let name = "modifyheaders"

    /// One parsed rule.
    public struct Rule: Sendable, Hashable {
        public let spec: ModifySpec
        /// The header name (escapes decoded).
        public let headerName: String

        public init(_ spec: ModifySpec) throws(ModifySpecError) {
            self.spec = spec
            self.headerName = try ModifyHeaders.text(spec.unescapedSubject())
        }
    }

    public let rules: [Rule]

    /// Parses the `modify_headers` option values.
    ///
    /// - Throws: ``ModifySpecError`` for the first spec that does not parse.
    public init(specs: [String]) throws(ModifySpecError) {
        self.rules = try specs.map { spec throws(ModifySpecError) in try Rule(try ModifySpec(parsing: spec)) }
    }

    public init(rules: [Rule]) {
        self.rules = rules
    }

    public func requestHeaders(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        guard flow.isLive, flow.response == nil, flow.error == nil else { return }
        let matched = rules.filter { $0.spec.matches(flow) }
        apply(matched, to: &flow.request.headers, context: context)
    }

    public func responseHeaders(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        guard flow.isLive, flow.error == nil, flow.response != nil else { return }
        let matched = rules.filter { $0.spec.matches(flow) }
        apply(matched, to: &flow.response!.headers, context: context)
    }

    private func apply(_ matched: [Rule], to headers: inout Headers, context: AddonContext) {
        for rule in matched {
            headers.remove(rule.headerName)
        }
        for rule in matched {
            let value: [UInt8]
            do {
                value = try rule.spec.readReplacement()
            } catch {
                context.logger.warning("modify_headers: \(error)")
                continue
            }
            if !value.isEmpty {
                headers.add(rule.headerName, Self.text(value))
            }
        }
    }

    /// Header bytes as text: UTF-8 when they are (so they go back on the wire unchanged), else
    /// ISO-8859-1, one character per byte.
    static func text(_ bytes: [UInt8]) -> String {
        if let utf8 = String(bytes: bytes, encoding: .utf8) { return utf8 }
        return SpecRegex.latin1String(bytes)
    }
}
