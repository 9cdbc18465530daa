import Foundation
import Logging
import MitmAddons
import MitmCore
import MitmIO
import MitmOptions

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

    /// The addons that save flows: `-w` (`save_stream_file`) and `hardump`.
    static func saveAddons(_ options: Options) throws -> [any Addon] {
        var addons: [any Addon] = []
        let filter = try options.saveStreamFilter.map { try compile($0, option: "save_stream_filter") }
        if var path = options.saveStreamFile {
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
            addons.append(SaveStreamFile(sink: FlowWriter(fileHandle: handle), filter: filter?.matches))
        }
        if !options.hardump.isEmpty {
            addons.append(SaveHAR(path: options.hardump, filter: filter?.matches))
        }
        return addons
    }

    /// Reads `path` (a mitmproxy flow file, or a HAR by its extension or content) and runs each flow
    /// through the addons as it is read, as mitmproxy's `-r` does. A damaged file yields the flows
    /// before the damage, then an error naming the byte offset. Returns false on any error.
    static func read(
        _ path: String?, filter: DumperOptions.Filter? = nil, into addons: AddonManager, logger: Logger
    ) async -> Bool {
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
                for var flow in try HARReader.read(data: data) where filter?.matches(.http(flow)) ?? true {
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
                    if let filter, !filter.matches(flow) { continue }
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
