import MitmCore

/// Every option of the proxy and its built-in addons, by mitmproxy's names (mitmproxy's `Options`).
///
/// Values come from, in rising precedence: the defaults, `config.yaml` in the confdir, the classic
/// `common.conf`/`mitmdump.conf`, command-line flags, and `--set name=value`. Each option is
/// defined once in ``definitions`` (type, default, help text); setting one by name goes through
/// its definition, so a bad value is refused with the option's name, the value and what was
/// expected, wherever it came from.
///
/// The proxy core's options live in ``proxy`` (``ProxyOptions``, what the server reads); the
/// others are kept here as given, and the front end builds the addons from them.
public struct Options: Sendable {
    public var proxy = ProxyOptions()

    // MARK: mitmdump and the dumper
    /// `flow_detail`: how much of each flow mitmdump prints, 0 to 4.
    public var flowDetail = 1
    /// `showhost`: show URLs with the Host header's host.
    public var showhost = false
    /// `dumper_duration` (ours): append each flow's duration to mitmdump's response line.
    public var dumperDuration = true
    /// `dumper_filter`: only matching flows are printed (mitmdump's positional filter sets it).
    public var dumperFilter: String?
    /// `content_view_lines_cutoff`: lines of a body flow detail 3 shows.
    public var contentViewLinesCutoff = 512
    /// `termlog_verbosity`: error, warn, info, alert or debug.
    public var termlogVerbosity = "info"

    // MARK: Flow files
    /// `rfile`: read flows from this file at start (`-r`).
    public var rfile: String?
    /// `readfile_filter`: only flows matching this are read from `rfile`.
    public var readfileFilter: String?
    /// `save_stream_file`: save flows to this file as they end (`-w`; a leading `+` appends).
    public var saveStreamFile: String?
    /// `save_stream_filter`: only matching flows are saved.
    public var saveStreamFilter: String?
    /// `hardump`: write a HAR file of every flow at shutdown.
    public var hardump = ""
    /// `server`: start the proxy server (`-n` turns it off).
    public var server = true
    /// `keepserving`: keep running after client replay or `rfile` are done, with `server` off.
    public var keepserving = false
    /// `scripts`: Python addon scripts (`-s`).
    public var scripts: [String] = []

    // MARK: Rewriting
    /// `modify_headers`: `[/filter]/name/value` specs (`-H`, classic `--setheader`).
    public var modifyHeaders: [String] = []
    /// `modify_body`: `[/filter]/regex/replacement` specs (`-B`, classic `--replace`).
    public var modifyBody: [String] = []
    /// `map_remote`: `[|filter]|url-regex|replacement` specs (`-M`).
    public var mapRemote: [String] = []
    /// `map_local`: `[|filter]|url-regex|path` specs.
    public var mapLocal: [String] = []

    // MARK: Blocking
    /// `block_list`: `/filter/status` specs.
    public var blockList: [String] = []
    /// `block_global`: refuse clients from globally routable addresses.
    public var blockGlobal = true
    /// `block_private`: refuse clients from private addresses.
    public var blockPrivate = false

    // MARK: Replay
    /// `client_replay`: flow files whose requests are replayed (`-C`, classic `-c`).
    public var clientReplay: [String] = []
    /// `client_replay_concurrency`: requests replayed at once; -1 means all.
    public var clientReplayConcurrency = 1
    /// `server_replay`: flow files whose responses answer matching requests (`-S`).
    public var serverReplay: [String] = []
    /// `server_replay_extra`: what happens to requests with no recorded response.
    public var serverReplayExtra = "forward"
    public var serverReplayIgnoreContent = false
    public var serverReplayIgnoreHost = false
    public var serverReplayIgnoreParams: [String] = []
    public var serverReplayIgnorePayloadParams: [String] = []
    public var serverReplayIgnorePort = false
    public var serverReplayRefresh = true
    public var serverReplayReuse = false
    public var serverReplayUseHeaders: [String] = []

    // MARK: Sticky state
    /// `stickycookie`: filter of the flows whose cookies are replayed (`-t`).
    public var stickycookie: String?
    /// `stickyauth`: filter of the flows whose Authorization is replayed (`-u`).
    public var stickyauth: String?

    /// Values given for options mitmproxy has and this build does not implement.
    public var notImplemented: [String: OptionValue] = [:]

    public init() {}

    // MARK: - Setting options by name

    /// The definition of the option called `name`.
    public static func definition(named name: String) -> OptionDefinition? {
        definitionsByName[name]
    }

    private static let definitionsByName: [String: OptionDefinition] = Dictionary(
        definitions.map { ($0.name, $0) },
        uniquingKeysWith: { first, _ in first }
    )

    /// The value of option `name`.
    public func value(of name: String) throws(OptionError) -> OptionValue {
        guard let definition = Self.definition(named: name) else { throw .unknown(name) }
        return definition.value(in: self)
    }

    /// Sets option `name` to `value`, or fails with the option's name, the value and what was
    /// expected. Nothing changes on failure.
    public mutating func update(_ name: String, _ value: OptionValue) throws(OptionError) {
        guard let definition = Self.definition(named: name) else { throw .unknown(name) }
        var updated = self
        do {
            try definition.store(value, in: &updated)
        } catch {
            throw .invalid(name, value.text, "\(error)")
        }
        self = updated
    }

    /// Sets option `name` from command-line text, as mitmproxy's `--set` does: `nil` is `--set
    /// name` without a value; a sequence option takes all of `texts`, one item each.
    public mutating func set(_ name: String, texts: [String?]) throws(OptionError) {
        guard let definition = Self.definition(named: name) else { throw .unknown(name) }
        let value: OptionValue
        do {
            if definition.kind == .sequence {
                value = .list(texts.compactMap { $0 })
            } else {
                value = try definition.parse(text: texts.last ?? nil, current: self)
            }
        } catch {
            throw .invalid(name, texts.compactMap { $0 }.joined(separator: ", "), "\(error)")
        }
        try update(name, value)
    }

    /// Applies `--set` arguments (`name=value` or `name`) in order. All the `--set`s of one
    /// sequence option together make its new list, as in mitmproxy.
    public mutating func apply(setArguments arguments: [String]) throws(OptionError) {
        var order: [String] = []
        var texts: [String: [String?]] = [:]
        for argument in arguments {
            let name: String
            let text: String?
            if let eq = argument.firstIndex(of: "=") {
                name = String(argument[..<eq])
                text = String(argument[argument.index(after: eq)...])
            } else {
                name = argument
                text = nil
            }
            guard !name.isEmpty else { throw .syntax(argument) }
            guard let definition = Self.definition(named: name) else { throw .unknown(name) }
            if definition.kind == .sequence {
                if texts[name] == nil { order.append(name) }
                texts[name, default: []].append(text)
            } else {
                try set(name, texts: [text])
            }
        }
        for name in order {
            try set(name, texts: texts[name] ?? [])
        }
    }

    /// The options set to a value other than their default that this build does not implement.
    public var ignoredOptions: [String] {
        notImplemented.keys.sorted()
    }
}

/// A bad option: which one, the value, and what was expected.
public enum OptionError: Error, Sendable, CustomStringConvertible, Equatable {
    case unknown(String)
    case syntax(String)
    case invalid(String, String, String)

    public var description: String {
        switch self {
        case .unknown(let name):
            if let suggestion = Options.closestName(to: name) {
                return "No such option: \(name) (did you mean \(suggestion)?)"
            }
            return "No such option: \(name)"
        case .syntax(let text): return "Invalid --set argument '\(text)': expected name=value"
        case .invalid(let name, let value, let expected): return "Invalid value '\(value)' for option \(name): \(expected)"
        }
    }

    /// The option the error is about.
    public var option: String {
        switch self {
        case .unknown(let name): name
        case .syntax(let text): text
        case .invalid(let name, _, _): name
        }
    }
}

extension OptionValue {
    /// The value as a user typed it, for messages.
    public var text: String {
        switch self {
        case .bool(let flag): flag ? "true" : "false"
        case .int(let number): String(number)
        case .number(let number): number == number.rounded() ? String(Int(number)) : String(number)
        case .string(let text): text
        case .list(let items): items.joined(separator: ", ")
        case .none: ""
        }
    }
}

extension Options {
    /// The defined option nearest to a misspelt `name`, if one is close enough to be a typo.
    static func closestName(to name: String) -> String? {
        let lowered = name.lowercased().replacingOccurrences(of: "-", with: "_")
        if definitionsByName[lowered] != nil { return lowered }
        var best: (name: String, distance: Int)?
        for definition in definitions {
            let distance = editDistance(lowered, definition.name)
            if distance <= max(1, min(3, definition.name.count / 4)), distance < (best?.distance ?? .max) {
                best = (definition.name, distance)
            }
        }
        return best?.name
    }

    private static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.utf8)
        let b = Array(b.utf8)
        if a.isEmpty { return b.count }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in stride(from: 1, through: b.count, by: 1) {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            }
            previous = current
        }
        return previous[b.count]
    }
}
