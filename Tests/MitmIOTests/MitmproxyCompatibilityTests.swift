import Foundation
import MitmCore
import MitmIO
import MitmTestSupport
import Testing

/// mitmproxy 11's own reader, run on a file we wrote. Needs the venv `scripts/mitmproxy-venv.sh`
/// makes (`.venv-mitmproxy-test` in the package root, or `MITMPROXY_TEST_PYTHON`); cancelled without it.
@Test func mitmproxyReadsOurFiles() async throws {
    let python = try mitmproxyPython()

    let flows = (0..<6).map(sampleFlow)
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("mitmio-compat-\(UUID().uuidString).mitm")
    defer { try? FileManager.default.removeItem(at: file) }
    _ = FileManager.default.createFile(atPath: file.path, contents: nil)
    let handle = try FileHandle(forWritingTo: file)
    let writer = FlowWriter(fileHandle: handle)
    for flow in flows { try writer.write(flow) }
    try handle.close()

    let script = """
        import base64, json, sys
        from mitmproxy.io import io
        out = []
        with open(sys.argv[1], "rb") as fo:
            for f in io.FlowReader(fo).stream():
                r, s = f.request, f.response
                out.append({
                    "id": f.id, "method": r.method, "url": r.url, "http_version": r.http_version,
                    "request_headers": [list(h) for h in r.headers.items(multi=True)],
                    "request_body": base64.b64encode(r.raw_content or b"").decode(),
                    "request_start": repr(r.timestamp_start), "request_end": repr(r.timestamp_end),
                    "status": s.status_code if s else None, "reason": s.reason if s else None,
                    "response_headers": [list(h) for h in s.headers.items(multi=True)] if s else None,
                    "response_body": base64.b64encode(s.raw_content or b"").decode() if s else None,
                    "response_start": repr(s.timestamp_start) if s else None,
                    "error": f.error.msg if f.error else None, "marked": f.marked, "comment": f.comment,
                    "is_replay": f.is_replay, "client": list(f.client_conn.peername), "sni": f.server_conn.sni,
                    "server_tls": f.server_conn.tls, "certs": len(f.server_conn.certificate_list),
                })
        print(json.dumps(out))
        """
    let data = try await runPython(python, script, [file.path])

    let read = try #require(try JSONSerialization.jsonObject(with: data) as? [[String: Any]])
    try #require(read.count == flows.count)
    for (flow, theirs) in zip(flows, read) {
        #expect(theirs["id"] as? String == flow.id.uuidString.lowercased())
        #expect(theirs["method"] as? String == flow.request.method)
        #expect(theirs["url"] as? String == flow.request.url)
        #expect(theirs["http_version"] as? String == flow.request.httpVersion)
        #expect(theirs["request_headers"] as? [[String]] == flow.request.headers.fields.map { [$0.name, $0.value] })
        #expect(theirs["request_body"] as? String == Data(flow.request.rawContent.map { Array($0.readableBytesView) } ?? []).base64EncodedString())
        #expect(theirs["request_start"] as? String == "\(flow.request.timestampStart)")
        #expect(theirs["request_end"] as? String == "\(flow.request.timestampEnd!)")
        #expect(theirs["status"] as? Int == flow.response?.statusCode)
        #expect(theirs["reason"] as? String == flow.response?.reason)
        #expect(theirs["response_headers"] as? [[String]] == flow.response?.headers.fields.map { [$0.name, $0.value] })
        #expect(theirs["response_body"] as? String == flow.response.map { Data(Array($0.rawContent!.readableBytesView)).base64EncodedString() })
        #expect(theirs["response_start"] as? String == flow.response.map { "\($0.timestampStart)" })
        #expect(theirs["error"] as? String == flow.error?.message)
        #expect(theirs["marked"] as? String == flow.marked)
        #expect(theirs["comment"] as? String == flow.comment)
        #expect(theirs["is_replay"] as? String == flow.isReplay)
        #expect(theirs["client"] as? [AnyHashable] == [flow.clientConnection.peername.host, flow.clientConnection.peername.port] as [AnyHashable])
        #expect(theirs["sni"] as? String == flow.serverConnection?.sni)
        #expect(theirs["server_tls"] as? Bool == true)
        #expect(theirs["certs"] as? Int == 1)
    }
}

/// Every fixture, read by us and written back, reads in mitmproxy 11 with the same state as the
/// original (connection ids aside: mitmproxy makes up random ones for files older than format 5;
/// and WebSocket message contents, which mitmproxy's own migration of pre-12 files leaves as `str`
/// where format 21 has `bytes`, and we write `bytes`).
@Test func mitmproxyReadsRewrittenFixturesIdentically() async throws {
    let python = try mitmproxyPython()
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mitmio-rewrite-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    var names: [String] = []
    for name in try FileManager.default.contentsOfDirectory(atPath: Fixtures.directory.path).sorted()
    where name.hasSuffix(".mitm") && name != "dumpfile-010.mitm" {
        let collector = ByteCollector()
        let writer = collector.writer
        for record in try FlowReader.readAll(contentsOf: Fixtures.url(name)) { try writer.write(record) }
        try Data(collector.bytes).write(to: directory.appendingPathComponent(name))
        names.append(name)
    }
    let script = """
        import json, os, sys
        from mitmproxy.io import io
        fixtures, ours = sys.argv[1], sys.argv[2]
        diffs = []
        def diff(a, b, path):
            if path.endswith("_conn.id"):
                return
            if isinstance(a, dict) and isinstance(b, dict):
                for k in sorted(set(a) | set(b), key=str):
                    if k not in a or k not in b:
                        diffs.append(path + "." + str(k) + " missing")
                    else:
                        diff(a[k], b[k], path + "." + str(k))
            elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
                for i, (x, y) in enumerate(zip(a, b)):
                    diff(x, y, path + "[%d]" % i)
            elif isinstance(a, str) and isinstance(b, bytes) and ".websocket.messages[" in path and a.encode() == b:
                return
            elif a != b:
                diffs.append("%s: %r != %r" % (path, a, b))
        def read(path):
            with open(path, "rb") as fo:
                return [f.get_state() for f in io.FlowReader(fo).stream()]
        for name in sys.argv[3:]:
            a, b = read(os.path.join(fixtures, name)), read(os.path.join(ours, name))
            if len(a) != len(b):
                diffs.append("%s: %d flows != %d" % (name, len(a), len(b)))
            for i, (x, y) in enumerate(zip(a, b)):
                diff(x, y, "%s#%d" % (name, i))
        print(json.dumps(diffs))
        """
    let data = try await runPython(python, script, [Fixtures.directory.path, directory.path] + names)
    let diffs = try #require(try JSONSerialization.jsonObject(with: data) as? [String])
    #expect(diffs == [])
}

/// The venv's python, or the test is cancelled.
private func mitmproxyPython() throws -> String {
    let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let python = ProcessInfo.processInfo.environment["MITMPROXY_TEST_PYTHON"]
        ?? packageRoot.appendingPathComponent(".venv-mitmproxy-test/bin/python").path
    guard FileManager.default.isExecutableFile(atPath: python) else {
        try Test.cancel("No mitmproxy 11.0.2 venv at \(python): run scripts/mitmproxy-venv.sh to enable this test")
    }
    return python
}

/// Runs `script` and returns its standard output; a non-zero exit fails the test with its stderr.
private func runPython(_ python: String, _ script: String, _ arguments: [String]) async throws -> Data {
    let result = try await CommandRunner.run(python, ["-c", script] + arguments, timeout: 120)
    try #require(result.succeeded, "mitmproxy failed: \(result)")
    return result.stdout
}
