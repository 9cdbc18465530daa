import Foundation
import MitmCore
import MitmIO
import Testing

private let readableFixtures = [
    "corrupted_gzip_body.mitm", "diff_data.mitm", "dumpfile-011.mitm", "dumpfile-018.mitm", "dumpfile-019.mitm",
    "dumpfile-10.mitm", "dumpfile-19.mitm", "dumpfile-7-websocket.mitm", "dumpfile-7.mitm", "error_log.mitm",
    "event_stream.mitm", "incomplete_log.mitm", "successful_log.mitm", "websocket.mitm",
]

private let expectedCounts = [
    "corrupted_gzip_body.mitm": 1, "diff_data.mitm": 7, "dumpfile-011.mitm": 1, "dumpfile-018.mitm": 1,
    "dumpfile-019.mitm": 1, "dumpfile-10.mitm": 1, "dumpfile-19.mitm": 1, "dumpfile-7-websocket.mitm": 6,
    "dumpfile-7.mitm": 2, "error_log.mitm": 2, "event_stream.mitm": 2, "incomplete_log.mitm": 4,
    "successful_log.mitm": 2, "websocket.mitm": 3,
]

@Test(arguments: readableFixtures)
func readsFixtureLikeMitmproxy(name: String) throws {
    let handle = try FileHandle(forReadingFrom: Fixtures.url(name))
    defer { try? handle.close() }
    var reader = FlowReader(fileHandle: handle, chunkSize: 997)  // odd chunks: values straddle reads
    var records: [FlowRecord] = []
    while let record = try reader.next() { records.append(record) }
    #expect(records.count == expectedCounts[name])

    let expected = try #require((Fixtures.expected[name] as? [String: Any])?["flows"] as? [[String: Any]])
    try #require(records.count == expected.count)
    for (record, want) in zip(records, expected) {
        #expect(record.type == want["type"] as? String)
        #expect(record.state["id"]?.text == want["id"] as? String)
        if record.type == "tcp" {
            let flow = try #require(record.flow?.tcpFlow)
            let messages = try #require(want["tcp_messages"] as? [[Any]])
            #expect(flow.messages.map(\.fromClient) == messages.map { $0[0] as? Bool })
            #expect(flow.messages.map(\.content.readableBytes) == messages.map { $0[1] as? Int })
            #expect(zip(flow.messages, messages).allSatisfy { abs($0.timestamp - ($1[2] as? Double ?? 0)) < 1e-6 })
            #expect([flow.serverConnection.address.host, "\(flow.serverConnection.address.port)"]
                == (want["server_address"] as? [Any])?.map { "\($0)" })
            #expect(flow.clientConnection.peername.port == (want["client_peername"] as? [Any])?.last as? Int)
            #expect(flow.error?.message == want["error"] as? String)
            #expect(flow.marked == want["marked"] as? String)
            continue
        }
        let flow = try #require(record.httpFlow)
        #expect(flow.request.method == want["method"] as? String)
        #expect(flow.request.url == want["url"] as? String)
        #expect(flow.request.headers.fields.map { [$0.name, $0.value] } == want["request_headers"] as? [[String]])
        #expect((flow.request.rawContent?.readableBytes ?? 0) == want["request_body"] as? Int)
        // (Foundation's JSON parser may be off by one unit in the last place.)
        #expect(abs(flow.request.timestampStart - (want["request_start"] as? Double ?? 0)) < 1e-6)
        #expect(flow.response?.statusCode == want["status"] as? Int)
        #expect(flow.response?.headers.fields.map { [$0.name, $0.value] } == want["response_headers"] as? [[String]])
        #expect(flow.response.map { $0.rawContent?.readableBytes ?? 0 } == want["response_body"] as? Int)
        #expect(flow.error?.message == want["error"] as? String)
        #expect(flow.marked == want["marked"] as? String)
        #expect(flow.websocket?.messages.count == want["websocket_messages"] as? Int)
        if let websocket = flow.websocket {
            #expect(websocket.closeCode == want["websocket_close_code"] as? Int)
            #expect(websocket.closedByClient == want["websocket_closed_by_client"] as? Bool)
            let kinds = try #require(want["websocket_message_kinds"] as? [[Any]])
            #expect(websocket.messages.map(\.kind.rawValue) == kinds.map { $0[0] as? Int })
            #expect(websocket.messages.map(\.fromClient) == kinds.map { $0[1] as? Bool })
            #expect(websocket.messages.map(\.content.readableBytes) == kinds.map { $0[2] as? Int })
        }
    }
}

@Test func readsOldFormatFields() throws {
    let records = try FlowReader.readAll(contentsOf: Fixtures.url("dumpfile-011.mitm"))
    let flow = try #require(records.first?.httpFlow)
    #expect(flow.request.httpVersion == "HTTP/1.1")
    #expect(flow.response?.reason == "OK")
    #expect(flow.response?.headers["content-length"] == "1270")
    #expect(flow.clientConnection.peername == Address(host: "127.0.0.1", port: 60786))
    #expect(flow.clientConnection.tls != nil)
    #expect(flow.serverConnection?.address == Address(host: "example.com", port: 443))
    #expect(flow.serverConnection?.sni == "example.com")
    #expect(flow.serverConnection?.tls?.certificateChain.count == 1)
    #expect(flow.id == UUID(uuidString: "e072a53a-711a-46b7-aaa5-ad61ac7e4459"))
}

@Test func refusesFormat010() {
    let (records, error) = readAll(try! Fixtures.bytes("dumpfile-010.mitm"))
    #expect(records.isEmpty)
    let message = error?.message ?? ""
    #expect(message.contains("cannot read files with flow format version (0, 10)"))
    #expect(error?.offset == 0)
}

@Test func refusesNewerFormatAskingForUpdate() {
    let state: TNetDict = ["type": .string("http"), "version": .int(99)]
    let (_, error) = readAll(TNetValue.dict(state).serialized())
    #expect(error?.message.contains("version 99, please update") == true)
}

@Test func roundTripsFlows() throws {
    let flows = (0..<6).map(sampleFlow)
    let collector = ByteCollector()
    let writer = collector.writer
    for flow in flows { try writer.write(flow) }
    let (records, error) = readAll(collector.bytes)
    #expect(error == nil)
    #expect(records.map(\.httpFlow) == flows)
    #expect(records.allSatisfy { $0.state["version"] == .int(21) })
}

@Test(arguments: readableFixtures)
func rewritingFixturesKeepsTheirFlows(name: String) throws {
    let original = try FlowReader.readAll(contentsOf: Fixtures.url(name))
    let collector = ByteCollector()
    let writer = collector.writer
    for record in original { try writer.write(record) }
    let (again, error) = readAll(collector.bytes)
    #expect(error == nil)
    #expect(again.map(\.flow) == original.map(\.flow))
}

@Test func truncatedFileYieldsEarlierFlowsThenOffset() throws {
    let bytes = try Fixtures.bytes("incomplete_log.mitm")
    let full = readAll(bytes).records
    try #require(full.count == 4)
    let cut = full[2].offset + 100
    let (records, error) = readAll(Array(bytes[..<cut]))
    #expect(records.count == 2)
    #expect(records.map(\.flow) == full.prefix(2).map(\.flow))
    let failure = try #require(error)
    #expect(failure.offset == full[2].offset)
    #expect(failure.message.contains("truncated"))
}

@Test func corruptFlowNamesItsOffset() throws {
    var bytes = try Fixtures.bytes("successful_log.mitm")
    let records = readAll(bytes).records
    let second = records[1].offset
    bytes[second] = UInt8(ascii: "x")  // the length prefix of the second flow
    let (read, error) = readAll(bytes)
    #expect(read.count == 1)
    #expect(error?.offset == second)
    #expect(error.map { "\($0)" }?.contains("byte \(second)") == true)
}

@Test func emptyFileHasNoFlows() {
    let (records, error) = readAll([])
    #expect(records.isEmpty && error == nil)
}

@Test func asyncSequenceReadsFlows() async throws {
    let handle = try FileHandle(forReadingFrom: Fixtures.url("diff_data.mitm"))
    defer { try? handle.close() }
    var types: [String] = []
    for try await record in FlowReader(fileHandle: handle).records { types.append(record.type) }
    #expect(types == ["http", "http", "http", "http", "tcp", "tcp", "http"])
}

@Test func readingABigFileUsesBoundedMemory() throws {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("mitmio-big-\(UUID().uuidString).mitm")
    defer { try? FileManager.default.removeItem(at: file) }
    _ = FileManager.default.createFile(atPath: file.path, contents: nil)
    let out = try FileHandle(forWritingTo: file)
    let writer = FlowWriter(fileHandle: out)
    let flow = sampleFlow(4)
    let flowSize = FlowWriter.encode(flow).count
    for _ in 0..<2000 { try writer.write(flow) }
    try out.close()

    let handle = try FileHandle(forReadingFrom: file)
    defer { try? handle.close() }
    var reader = FlowReader(fileHandle: handle, chunkSize: 4096)
    var count = 0
    var peak = 0
    while let record = try reader.next() {
        #expect(record.httpFlow == flow)
        count += 1
        peak = max(peak, reader.bufferedByteCount)
    }
    #expect(count == 2000)
    #expect(peak <= 2 * (flowSize + 4096))  // not 2000 × flowSize
}

@Test func harInputGetsAClearMessage() {
    let (records, error) = readAll(Array("\u{FEFF}{\"log\": {\"entries\": []}}".utf8))
    #expect(records.isEmpty)
    #expect(error?.offset == 0)
    #expect(error?.message.contains("HAR") == true)
}
