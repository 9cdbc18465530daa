import Foundation
import MitmCore
import MitmIO
import NIOCore
import Synchronization

enum Fixtures {
    static let directory = Bundle.module.resourceURL!.appendingPathComponent("Fixtures/flows")

    static func url(_ name: String) -> URL { directory.appendingPathComponent(name) }

    static func bytes(_ name: String) throws -> [UInt8] { Array(try Data(contentsOf: url(name))) }

    /// What mitmproxy 11.0.2 reads from each fixture (see Fixtures/make-expected.py).
    static var expected: [String: Any] {
        let data = try! Data(contentsOf: url("expected.json"))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }
}

/// Reads every record of `bytes`, and the error that stopped the reading, if any.
func readAll(_ bytes: [UInt8]) -> (records: [FlowRecord], error: FlowReadError?) {
    var reader = FlowReader(bytes: bytes)
    var records: [FlowRecord] = []
    do {
        while let record = try reader.next() { records.append(record) }
        return (records, nil)
    } catch {
        return (records, error)
    }
}

/// A real certificate (DER), taken from a fixture: mitmproxy parses the certificates it reads.
let realCertificate: [UInt8] = {
    let records = try! FlowReader.readAll(contentsOf: Fixtures.url("successful_log.mitm"))
    return records[0].flow!.serverConnection!.tls!.certificateChain[0]
}()

func sampleFlow(_ i: Int = 0) -> HTTPFlow {
    var request = HTTPRequest(
        method: i % 2 == 0 ? "GET" : "POST", scheme: "https", host: "example.com", port: 8443 + i,
        authority: "example.com:\(8443 + i)", path: "/path/\(i)?q=ü",
        headers: ["Host": "example.com", "X-Repeated": "a", "x-repeated": "b"],
        rawContent: ByteBuffer(bytes: (0..<(i * 7)).map { UInt8(truncatingIfNeeded: $0 * 31) }),
        timestampStart: 1_700_000_000.125 + Double(i)
    )
    request.timestampEnd = request.timestampStart + 0.5
    var client = ClientConnection(
        peername: Address(host: "127.0.0.1", port: 50000 + i), sockname: Address(host: "127.0.0.1", port: 8080),
        proxyMode: "regular", timestampStart: 1_700_000_000
    )
    client.tls = TLSInfo(sni: "example.com", alpn: "http/1.1", alpnOffers: ["h2", "http/1.1"], tlsVersion: "TLSv1.3", cipher: "TLS_AES_128_GCM_SHA256")
    client.tlsAttempted = true
    client.timestampTLSSetup = 1_700_000_000.01
    client.timestampEnd = 1_700_000_009
    var server = ServerConnection(address: Address(host: "example.com", port: 8443 + i), usesTLS: true, sni: "example.com")
    server.tls = TLSInfo(sni: "example.com", alpn: "http/1.1", tlsVersion: "TLSv1.3", certificateChain: [realCertificate])
    server.peername = Address(host: "93.184.216.34", port: 8443 + i)
    server.sockname = Address(host: "10.0.0.2", port: 40000)
    server.timestampStart = 1_700_000_000.02
    server.timestampTCPSetup = 1_700_000_000.03
    server.timestampTLSSetup = 1_700_000_000.04
    var flow = HTTPFlow(request: request, clientConnection: client, serverConnection: server)
    if i % 3 != 2 {
        var response = HTTPResponse(statusCode: 200 + i, reason: "Fine", headers: ["content-type": "text/plain", "set-cookie": "a=1", "Set-Cookie": "b=2"],
                                    rawContent: ByteBuffer(string: "body \(i)"), timestampStart: request.timestampStart + 1)
        response.timestampEnd = response.timestampStart + 0.25
        response.trailers = ["grpc-status": "0"]
        flow.response = response
    } else {
        flow.error = FlowError("Connection killed.", timestamp: 1_700_000_005.5)
    }
    flow.marked = i == 1 ? ":default:" : ""
    flow.comment = "comment \(i)"
    flow.isReplay = i == 1 ? "request" : nil
    flow.metadata = ["k": "v\(i)"]
    return flow
}

/// Collects what a `FlowWriter` writes.
final class ByteCollector: Sendable {
    private let storage = Mutex<[UInt8]>([])
    var bytes: [UInt8] { storage.withLock { $0 } }
    var writer: FlowWriter { FlowWriter(sink: { bytes in self.storage.withLock { $0.append(contentsOf: bytes) } }) }
}
