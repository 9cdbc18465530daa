import Foundation
import MitmTestSupport
import Testing

/// One curl transfer: what `-w` printed, the body (`-o`) and the response heads (`-D`).
struct CurlTransfer: CustomStringConvertible {
    var command: CommandResult
    var statusCode: Int
    var httpVersion: String
    var numConnects: Int
    var body: Data
    /// Every response head curl saw (interim ones such as 100 Continue included), raw.
    var headerDump: String

    var bodyText: String { String(decoding: body, as: UTF8.self) }

    /// The header fields of the final response, in order, names as received.
    var headers: [(name: String, value: String)] {
        let blocks = headerDump.replacingOccurrences(of: "\r\n", with: "\n").components(separatedBy: "\n\n")
            .filter { !$0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty }
        guard let last = blocks.last else { return [] }
        return last.split(separator: "\n").dropFirst().compactMap { line in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
    }

    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    var echo: EchoResponse? { try? JSONDecoder().decode(EchoResponse.self, from: body) }

    var description: String {
        "HTTP \(statusCode) (version \(httpVersion), connects \(numConnects))\nheaders:\n\(headerDump)\nbody: \(bodyText.prefix(1000))\n\(command)"
    }
}

enum Curl {
    /// Runs curl for one URL with `arguments` (which must include the URL), capturing body, heads
    /// and the write-out variables. `--max-time` bounds it.
    static func transfer(_ arguments: [String], maxTime: Int = 10, stdin: Data? = nil) async throws -> CurlTransfer {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let bodyPath = scratch.file("body")
        let headerPath = scratch.file("headers")
        let command = try await CommandRunner.run(
            "curl",
            ["-sS", "--max-time", String(maxTime), "-o", bodyPath, "-D", headerPath,
             "-w", "%{http_code} %{http_version} %{num_connects}"] + arguments,
            stdin: stdin,
            timeout: Double(maxTime + 5)
        )
        let writeOut = command.output.split(separator: " ").map(String.init)
        return CurlTransfer(
            command: command,
            statusCode: writeOut.count > 0 ? Int(writeOut[0]) ?? 0 : 0,
            httpVersion: writeOut.count > 1 ? writeOut[1] : "",
            numConnects: writeOut.count > 2 ? Int(writeOut[2]) ?? -1 : -1,
            body: (try? Data(contentsOf: URL(fileURLWithPath: bodyPath))) ?? Data(),
            headerDump: (try? String(contentsOfFile: headerPath, encoding: .utf8)) ?? ""
        )
    }

    /// Runs curl with exactly `arguments` (several URLs, custom output), bounded by `--max-time`.
    static func run(_ arguments: [String], maxTime: Int = 10) async throws -> CommandResult {
        try await CommandRunner.run("curl", ["-sS", "--max-time", String(maxTime)] + arguments, timeout: Double(maxTime + 5))
    }
}

/// A TCP port on 127.0.0.1 that refuses connections for the whole test run: a socket is bound to it
/// and never listens, so no other test (or process) can take the port in the meantime, as could
/// happen to a port merely released.
func closedPort() async throws -> Int {
    try ReservedClosedPort.port.get()
}

private enum ReservedClosedPort {
    static let port: Result<Int, any Error> = Result {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw TestFailure("socket() failed: \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                bind(descriptor, raw, length) == 0 && getsockname(descriptor, raw, &length) == 0
            }
        }
        guard bound else { throw TestFailure("bind() failed: \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
