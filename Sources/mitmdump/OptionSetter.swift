import Logging
import MitmAddons
import MitmCore

/// A bad option: which one, the value, and what was expected.
enum OptionError: Error, CustomStringConvertible {
    case unknown(String)
    case syntax(String)
    case invalid(String, String, String)

    var description: String {
        switch self {
        case .unknown(let name): "No such option: \(name)"
        case .syntax(let text): "Invalid --set argument '\(text)': expected name=value"
        case .invalid(let name, let value, let expected): "Invalid value '\(value)' for option \(name): \(expected)"
        }
    }
}

/// `--set name=value` for the options this build knows, by mitmproxy's names.
enum OptionSetter {
    static func set(
        _ name: String,
        _ value: String,
        options: inout ProxyOptions,
        dumper: inout DumperOptions,
        verbosity: inout Logger.Level,
        files: inout FileOptions
    ) throws {
        func bool() throws -> Bool {
            switch value.lowercased() {
            case "true", "1", "yes", "on": return true
            case "false", "0", "no", "off": return false
            default: throw OptionError.invalid(name, value, "expected true or false")
            }
        }
        func int(_ range: ClosedRange<Int> = 0...Int.max) throws -> Int {
            guard let number = Int(value), range.contains(number) else {
                throw OptionError.invalid(name, value, "expected an integer in \(range.lowerBound)...\(range.upperBound)")
            }
            return number
        }
        func seconds() throws -> Double {
            guard let number = Double(value), number > 0 else {
                throw OptionError.invalid(name, value, "expected a positive number of seconds")
            }
            return number
        }
        func size() throws -> Int? {
            if value.isEmpty || value.lowercased() == "none" { return nil }
            guard let size = parseSize(value) else {
                throw OptionError.invalid(name, value, "expected a size such as 1024, 10k, 5m or 1g")
            }
            return size
        }
        switch name {
        case "listen_host": options.listenHost = value
        case "listen_port": options.listenPort = try int(0...65535)
        case "mode":
            do { options.modes = [try ProxyModeSpec(parsing: value)] } catch { throw OptionError.invalid(name, value, "\(error)") }
        case "connection_strategy":
            guard let strategy = ProxyOptions.ConnectionStrategy(rawValue: value) else {
                throw OptionError.invalid(name, value, "expected eager or lazy")
            }
            options.connectionStrategy = strategy
        case "proxyauth": options.proxyauth = value.isEmpty ? nil : value
        case "upstream_auth": options.upstreamAuth = value.isEmpty ? nil : value
        case "confdir": options.confdir = value
        case "upstream_cert": options.upstreamCert = try bool()
        case "ssl_insecure": options.sslInsecure = try bool()
        case "http2": options.http2 = try bool()
        case "keep_host_header": options.keepHostHeader = try bool()
        case "anticache": options.anticache = try bool()
        case "anticomp": options.anticomp = try bool()
        case "certs": options.certs.append(value)
        // List options: each `--set` adds one pattern, as mitmproxy's repeated `--set name=value`.
        case "ignore_hosts": options.ignoreHosts.append(value)
        case "allow_hosts": options.allowHosts.append(value)
        case "tcp_hosts": options.tcpHosts.append(value)
        case "rawtcp": options.rawTCP = try bool()
        case "show_ignored_hosts": options.showIgnoredHosts = try bool()
        case "body_size_limit": options.bodySizeLimit = try size()
        case "stream_large_bodies": options.streamLargeBodies = try size()
        case "header_size_limit": options.headerSizeLimit = try size() ?? Int.max
        case "idle_timeout": options.idleTimeout = try seconds()
        case "request_head_timeout": options.requestHeadTimeout = try seconds()
        case "connect_timeout": options.connectTimeout = try seconds()
        case "threads": options.threads = value.isEmpty || value == "auto" ? nil : try int(1...256)
        case "flow_detail": dumper.flowDetail = try int(0...4)
        case "save_stream_file": files.saveStreamFile = value.isEmpty ? nil : value
        case "save_stream_filter": files.saveStreamFilter = value.isEmpty ? nil : try FlowFiles.compile(value, option: name)
        case "hardump": files.harDump = value.isEmpty ? nil : value
        case "showhost": dumper.showHost = try bool()
        case "dumper_duration": dumper.showDuration = try bool()
        case "termlog_verbosity":
            switch value {
            case "error": verbosity = .error
            case "warn": verbosity = .warning
            case "info": verbosity = .info
            case "alert": verbosity = .notice
            case "debug": verbosity = .debug
            default: throw OptionError.invalid(name, value, "expected one of error, warn, info, alert, debug")
            }
        default:
            throw OptionError.unknown(name)
        }
    }
}
