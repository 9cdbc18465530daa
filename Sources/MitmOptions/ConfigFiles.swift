import Foundation
import Yams

/// A problem in a config file: the file, the line (and column), and what is wrong.
public struct ConfigFileError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var line: Int
    public var column: Int?
    public var message: String

    public init(path: String, line: Int, column: Int? = nil, message: String) {
        self.path = path
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String {
        let position = column.map { "\(line):\($0)" } ?? "\(line)"
        return "\(path):\(position): \(message)"
    }
}

/// mitmproxy 11's `config.yaml`: a YAML mapping of option names to values, typed as the options
/// are (`anticache: true`, `listen_port: 8081`, `ignore_hosts: [a, b]`, `body_size_limit: 3m`).
public enum ConfigYAML {
    /// The files mitmproxy reads from the confdir, in order.
    public static let fileNames = ["config.yaml", "config.yml"]

    /// Applies the config files in `confdir` that exist. Either every value of a file is applied,
    /// or none is and the error names the file, the position and the option.
    public static func load(confdir: String, into options: inout Options) throws(ConfigFileError) {
        let directory = NSString(string: confdir).expandingTildeInPath
        for name in fileNames {
            let path = directory + "/" + name
            guard FileManager.default.fileExists(atPath: path) else { continue }
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ConfigFileError(path: path, line: 1, message: "cannot read the file")
            }
            guard let text = String(data: data, encoding: .utf8) else {
                throw ConfigFileError(path: path, line: 1, message: "the file is not UTF-8 text")
            }
            try apply(text, path: path, to: &options)
        }
    }

    /// Applies one file's text.
    public static func apply(_ text: String, path: String, to options: inout Options) throws(ConfigFileError) {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw syntaxError(error, path: path)
        } catch {
            throw ConfigFileError(path: path, line: 1, message: "\(error)")
        }
        guard let root, root.null == nil else { return }  // an empty file sets nothing
        guard case .mapping(let mapping) = root else {
            throw ConfigFileError(
                path: path, line: root.mark?.line ?? 1, column: root.mark?.column,
                message: "expected a mapping of option names to values, as in `anticache: true`"
            )
        }
        var updated = options
        for (keyNode, valueNode) in mapping {
            guard let name = keyNode.string else {
                throw error(at: keyNode, path: path, "expected an option name")
            }
            guard let definition = Options.definition(named: name) else {
                throw error(at: keyNode, path: path, OptionError.unknown(name).description)
            }
            let value: OptionValue
            do {
                value = try optionValue(valueNode, kind: definition.kind)
            } catch let problem as OptionValueError {
                throw error(at: valueNode, path: path, "option \(name): \(problem.expected)")
            } catch {
                throw self.error(at: valueNode, path: path, "option \(name): \(error)")
            }
            do {
                try updated.update(name, value)
            } catch {
                throw self.error(at: valueNode, path: path, error.description)
            }
        }
        options = updated
    }

    /// The YAML value as an option value of `kind`, or what was expected.
    static func optionValue(_ node: Node, kind: OptionKind) throws -> OptionValue {
        if node.null != nil {
            switch kind {
            case .optionalInt, .optionalString, .sequence: return .none
            default: throw OptionValueError("expected a \(kind.typeName), found nothing")
            }
        }
        switch kind {
        case .bool:
            guard let flag = node.bool else { throw OptionValueError("expected true or false, found '\(node.string ?? "")'") }
            return .bool(flag)
        case .int, .optionalInt:
            guard let number = node.int else { throw OptionValueError("expected an integer, found '\(node.string ?? "")'") }
            return .int(number)
        case .number:
            guard let number = node.float else { throw OptionValueError("expected a number, found '\(node.string ?? "")'") }
            return .number(number)
        case .string, .optionalString, .choice:
            guard case .scalar(let scalar) = node else { throw OptionValueError("expected a single value, not a list or mapping") }
            return .string(scalar.string)
        case .sequence:
            guard case .sequence(let sequence) = node else {
                throw OptionValueError("expected a list, as in [a, b] or one `- item` per line")
            }
            return .list(try sequence.map { item in
                guard case .scalar(let scalar) = item else { throw OptionValueError("expected a list of strings") }
                return scalar.string
            })
        }
    }

    private static func error(at node: Node, path: String, _ message: String) -> ConfigFileError {
        ConfigFileError(path: path, line: node.mark?.line ?? 1, column: node.mark?.column, message: message)
    }

    private static func syntaxError(_ error: YamlError, path: String) -> ConfigFileError {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            let message = [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ": ")
            return ConfigFileError(path: path, line: mark.line, column: mark.column, message: "invalid YAML: \(message)")
        default:
            return ConfigFileError(path: path, line: 1, message: "invalid YAML: \(error)")
        }
    }
}

/// The config files of mitmproxy 0.18: `common.conf`, then `mitmdump.conf`, in the confdir. Each
/// line names a command-line flag by its long name, with a value in any of the forms
/// `name = value`, `name: value`, `name value` or `--name value`; a flag alone or `= true` turns it
/// on; `[a, b]` gives a repeatable flag several values; `#` and `;` start comments, and `---` and
/// `[section]` lines are ignored. Command-line flags override the files.
public enum ClassicConfig {
    /// One setting: the command-line arguments it stands for, and where it was.
    public struct Entry: Sendable, Hashable {
        public var flag: String
        public var arguments: [String]
        public var path: String
        public var line: Int
    }

    /// The files read for `tool`, in order.
    public static func fileNames(tool: String) -> [String] { ["common.conf", "\(tool).conf"] }

    /// The entries of the files in `confdir` that exist (and of `extra`, a `--conf` file, which
    /// must exist).
    public static func load(confdir: String, tool: String, extra: String? = nil) throws(ConfigFileError) -> [Entry] {
        let directory = NSString(string: confdir).expandingTildeInPath
        var paths = fileNames(tool: tool).map { directory + "/" + $0 }.filter { FileManager.default.fileExists(atPath: $0) }
        if let extra {
            let path = NSString(string: extra).expandingTildeInPath
            guard FileManager.default.fileExists(atPath: path) else {
                throw ConfigFileError(path: path, line: 1, message: "no such config file")
            }
            paths.append(path)
        }
        var entries: [Entry] = []
        for path in paths {
            guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
                throw ConfigFileError(path: path, line: 1, message: "cannot read the file as UTF-8 text")
            }
            entries += try parse(text, path: path)
        }
        return entries
    }

    /// The entries of one file's text.
    public static func parse(_ text: String, path: String) throws(ConfigFileError) -> [Entry] {
        var entries: [Entry] = []
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = index + 1
            let line = stripComment(String(rawLine)).trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") || line.hasPrefix("---")
                || (line.hasPrefix("[") && line.hasSuffix("]"))
            {
                continue
            }
            var rest = Substring(line)
            while rest.hasPrefix("-") { rest.removeFirst() }
            let keyEnd = rest.firstIndex { $0 == "=" || $0 == ":" || $0 == " " || $0 == "\t" } ?? rest.endIndex
            let key = String(rest[..<keyEnd])
            guard !key.isEmpty else {
                throw ConfigFileError(path: path, line: lineNumber, column: 1, message: "expected `name = value`, found '\(line)'")
            }
            var value = rest[keyEnd...].trimmingCharacters(in: .whitespaces)
            if value.hasPrefix("=") || value.hasPrefix(":") {
                value = String(value.dropFirst()).trimmingCharacters(in: .whitespaces)
            }
            value = unquote(value)
            let flag = "--" + key
            let arguments: [String]
            switch value.lowercased() {
            case "", "true": arguments = [flag]
            case "false": arguments = []
            default:
                if value.hasPrefix("["), value.hasSuffix("]") {
                    let items = value.dropFirst().dropLast().split(separator: ",")
                        .map { unquote($0.trimmingCharacters(in: .whitespaces)) }
                        .filter { !$0.isEmpty }
                    arguments = items.flatMap { [flag, $0] }
                } else {
                    arguments = [flag, value]
                }
            }
            entries.append(Entry(flag: key, arguments: arguments, path: path, line: lineNumber))
        }
        return entries
    }

    /// Drops a comment that follows whitespace (` # …`, ` ; …`), as configargparse does.
    private static func stripComment(_ line: String) -> String {
        var previousWasSpace = false
        for index in line.indices {
            let character = line[index]
            if previousWasSpace, character == "#" || character == ";" {
                return String(line[..<index])
            }
            previousWasSpace = character == " " || character == "\t"
        }
        return line
    }

    private static func unquote(_ text: String) -> String {
        if text.count >= 2, let first = text.first, first == "\"" || first == "'", text.last == first {
            return String(text.dropFirst().dropLast())
        }
        return text
    }
}

extension Options {
    /// `--options`: every option with its help, type and default, as a YAML file one can edit
    /// into a `config.yaml` (mitmproxy prints the same shape).
    public static func listing() -> String {
        let defaults = Options()
        var output = ""
        for definition in definitions {
            output += "\n"
            for line in wrap(definition.help + " Type \(definition.kind.typeName).", width: 70) {
                output += "# " + line + "\n"
            }
            let value = definition.yaml(definition.value(in: defaults))
            output += value.isEmpty || value.hasPrefix("\n") ? "\(definition.name):\(value)\n" : "\(definition.name): \(value)\n"
        }
        return output
    }

    private static func wrap(_ text: String, width: Int) -> [String] {
        var lines: [String] = []
        var current = ""
        for word in text.split(separator: " ") {
            if !current.isEmpty, current.count + 1 + word.count > width {
                lines.append(current)
                current = ""
            }
            current += current.isEmpty ? String(word) : " " + word
        }
        if !current.isEmpty { lines.append(current) }
        return lines
    }
}
