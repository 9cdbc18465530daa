import MitmCore
import NIOCore

/// mitmproxy's `modify_body` addon (`--modify-body` / `-B`; `--replace` and `--replace-from-file`
/// in mitmproxy 0.18, the latter now written `@file`): regex replacement in request and response
/// bodies, with specs `[/filter]/regex/[@]replacement` (see ``ModifySpec``).
///
/// - In `request` (live flows without a response or error) the request body is rewritten; in
///   `response` (live flows without an error) the response body.
/// - The regex runs over the body with its Content-Encoding undone (gzip, deflate, br, zstd), and
///   the result is encoded again with the same coding, with Content-Length updated, as mitmproxy's
///   `message.content = …` does. A body that does not decode is left alone with a warning.
/// - The body is searched as bytes, as mitmproxy does: each byte is one character (ISO-8859-1), so
///   bytes that are not UTF-8 survive untouched and can be matched with `\xHH`. The regex is
///   Python-flavoured (translated for NSRegularExpression), with `.` matching newlines (`re.DOTALL`).
///   Character classes such as `\w` follow Unicode rules over those characters, where Python's
///   bytes patterns are ASCII-only.
/// - The replacement is a Python template: `\g<1>`, `\g<name>`, and (after the spec's own escape
///   decoding, so written `\\1` inline) `\1`. An inline replacement referring to a group the regex
///   lacks is rejected when parsed; an `@file` replacement is read and checked on each use, and
///   skipped with a warning when it cannot be.
/// - Streamed bodies (`stream` set, or no buffered body) are not modified.
/// - Specs run in order, each seeing the previous one's result; the filter is evaluated per spec.
public struct ModifyBody: Addon {
    public var hooks: Set<HookName>? { [.request, .response] }
    public let name = "modifybody"

    /// One parsed rule.
    public struct Rule: Sendable, Hashable {
        public let spec: ModifySpec
        let regex: SpecRegex
        /// The inline template, parsed once; `nil` for `@file` replacements.
        let template: ReplacementTemplate?

        public init(_ spec: ModifySpec) throws(ModifySpecError) {
            self.spec = spec
            self.regex = try SpecRegex(bytes: try spec.unescapedSubject(), dotMatchesNewlines: true, spec: spec.spec)
            if spec.replacementFile == nil {
                self.template = try regex.template(SpecRegex.latin1String(try spec.readReplacement()), for: spec)
            } else {
                self.template = nil
            }
        }

        /// The template to use now: the parsed inline one, or the file read and parsed again.
        func currentTemplate() throws -> ReplacementTemplate {
            if let template { return template }
            return try regex.template(SpecRegex.latin1String(try spec.readReplacement()), for: spec)
        }
    }

    public let rules: [Rule]

    /// Parses the `modify_body` option values.
    ///
    /// - Throws: ``ModifySpecError`` for the first spec that does not parse.
    public init(specs: [String]) throws(ModifySpecError) {
        self.rules = try specs.map { spec throws(ModifySpecError) in try Rule(try ModifySpec(parsing: spec)) }
    }

    public init(rules: [Rule]) {
        self.rules = rules
    }

    public func request(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        guard flow.isLive, flow.response == nil, flow.error == nil else { return }
        run(&flow, context: context)
    }

    public func response(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        guard flow.isLive, flow.error == nil, flow.response != nil else { return }
        run(&flow, context: context)
    }

    private func run(_ flow: inout HTTPFlow, context: AddonContext) {
        for rule in rules where rule.spec.matches(flow) {
            let template: ReplacementTemplate
            do {
                template = try rule.currentTemplate()
            } catch {
                context.logger.warning("modify_body: \(error)")
                continue
            }
            if flow.response != nil {
                guard !flow.response!.stream else { continue }
                Self.rewrite(&flow.response!, rule: rule, template: template, context: context)
            } else {
                guard !flow.request.stream else { continue }
                Self.rewrite(&flow.request, rule: rule, template: template, context: context)
            }
        }
    }

    private static func rewrite<M: HTTPMessage>(
        _ message: inout M,
        rule: Rule,
        template: ReplacementTemplate,
        context: AddonContext
    ) {
        let content: ByteBuffer
        do {
            guard let decoded = try message.content() else { return }
            content = decoded
        } catch {
            context.logger.warning("modify_body: body left unchanged: \(error)")
            return
        }
        let bytes = Array(content.readableBytesView)
        guard let replaced = rule.regex.substitute(inBytes: bytes, template: template), replaced != bytes else { return }
        do {
            try message.setContent(ByteBuffer(bytes: replaced))
        } catch {
            context.logger.warning("modify_body: body left unchanged: \(error)")
        }
    }
}
