import Foundation
import MitmCore

/// A flow file that could not be read whole: which file, and what was wrong.
public struct FlowFileError: Error, Sendable, Hashable, CustomStringConvertible {
    public var path: String
    public var message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { "\(path): \(message)" }
}

extension FlowReader {
    /// The HTTP flows of the files at `paths`, in order (mitmproxy's `read_flows_from_paths`): flow
    /// files, or HAR files (by extension, or by content starting with `{`). Other flows (TCP, …)
    /// are skipped. Throws at the first file that is missing or damaged, so a replay never runs on
    /// half a recording.
    public static func readHTTPFlows(paths: [String]) throws(FlowFileError) -> [HTTPFlow] {
        var flows: [HTTPFlow] = []
        for path in paths {
            let expanded = NSString(string: path).expandingTildeInPath
            guard let data = FileManager.default.contents(atPath: expanded) else {
                throw FlowFileError(path: expanded, message: "no such file or not readable")
            }
            let lower = expanded.lowercased()
            let firstByte = data.first { !($0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09) }
            if lower.hasSuffix(".har") || lower.hasSuffix(".zhar") || firstByte == UInt8(ascii: "{") {
                do {
                    flows += try HARReader.read(data: data)
                } catch {
                    throw FlowFileError(path: expanded, message: "\(error)")
                }
                continue
            }
            var reader = FlowReader(bytes: data)
            do {
                while let record = try reader.next() {
                    if let flow = record.httpFlow { flows.append(flow) }
                }
            } catch {
                throw FlowFileError(path: expanded, message: "\(error)")
            }
        }
        return flows
    }
}
