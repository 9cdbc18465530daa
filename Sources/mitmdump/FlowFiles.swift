import Foundation
import Logging
import MitmAddons
import MitmCore
import MitmIO

/// The flow-file options of mitmdump (mitmproxy's `save`, `readfile` and `savehar` addons).
struct FileOptions {
    /// `save_stream_file` (`-w`); a leading `+` appends.
    var saveStreamFile: String?
    /// `save_stream_filter`: what `-w` saves (default: the positional filter).
    var saveStreamFilter: DumperOptions.Filter?
    /// `hardump`: write a HAR (or `.zhar`) of every flow at shutdown.
    var harDump: String?
}

extension FlowWriter: FlowSink {}

/// Reading and writing flow files for mitmdump: `-r`, `-w`, `--set hardump`.
enum FlowFiles {
    /// Compiles a filter expression, or fails naming the option, the expression and the position.
    static func compile(_ expression: String, option: String) throws -> DumperOptions.Filter {
        do {
            let filter = try FlowFilter(expression)
            return DumperOptions.Filter(expression: expression, matches: { filter.matches($0) })
        } catch {
            throw OptionError.invalid(option, expression, "\(error)")
        }
    }

    /// The addons that save flows: `-w` and `hardump`.
    static func saveAddons(_ files: FileOptions, positionalFilter: DumperOptions.Filter?) throws -> [any Addon] {
        var addons: [any Addon] = []
        if var path = files.saveStreamFile {
            let append = path.hasPrefix("+")
            if append { path.removeFirst() }
            path = NSString(string: path).expandingTildeInPath
            if !append || !FileManager.default.fileExists(atPath: path) {
                guard FileManager.default.createFile(atPath: path, contents: nil) else {
                    throw OptionError.invalid("save_stream_file", path, "cannot create the file")
                }
            }
            guard let handle = FileHandle(forWritingAtPath: path) else {
                throw OptionError.invalid("save_stream_file", path, "cannot open the file for writing")
            }
            if append { handle.seekToEndOfFile() }
            let filter = files.saveStreamFilter ?? positionalFilter
            addons.append(SaveStreamFile(sink: FlowWriter(fileHandle: handle), filter: filter?.matches))
        }
        if let path = files.harDump {
            addons.append(SaveHAR(path: path, filter: positionalFilter?.matches))
        }
        return addons
    }

    /// Reads `path` (a mitmproxy flow file, or a HAR by its extension or content) and runs each flow
    /// through the addons as it is read, as mitmproxy's `-r` does. A damaged file yields the flows
    /// before the damage, then an error naming the byte offset. Returns false on any error.
    static func read(_ path: String?, into addons: AddonManager, logger: Logger) async -> Bool {
        guard let path else { return true }
        let expanded = NSString(string: path).expandingTildeInPath
        guard let handle = FileHandle(forReadingAtPath: expanded) else {
            logger.error("Cannot read flow file \(expanded): no such file or not readable.")
            return false
        }
        defer { try? handle.close() }
        let lower = expanded.lowercased()
        if lower.hasSuffix(".har") || lower.hasSuffix(".zhar") || lower.hasSuffix(".json") {
            do {
                let data = try handle.readToEnd() ?? Data()
                for var flow in try HARReader.read(data: data) {
                    await addons.replay(&flow)
                }
                return true
            } catch {
                logger.error("\(expanded): \(error)")
                return false
            }
        }
        var reader = FlowReader(fileHandle: handle)
        do {
            while let record = try reader.next() {
                if var flow = record.flow {
                    await addons.replay(&flow)
                } else if let reason = record.skippedReason {
                    logger.debug("\(expanded): skipped a \(record.type) flow at byte \(record.offset): \(reason)")
                }
            }
            return true
        } catch {
            logger.error("\(expanded): \(error)")
            return false
        }
    }
}
