import Foundation
import MitmCore
import MitmTestSupport
import Testing

/// `stream_large_bodies`: large bodies pass through without being kept on the flow.
@Suite("Streaming", .timeLimit(.minutes(1)))
struct StreamingTests {
    @Test("A 20 MiB download with stream_large_bodies = 1 MiB arrives intact and is not kept on the flow")
    func largeDownload() async throws {
        let size = 20 * 1024 * 1024
        let recorder = RecordingAddon()
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        try await withLoopbackOrigin { origin in
            try await withProxy(addons: [recorder], configure: { $0.streamLargeBodies = 1024 * 1024 }) { proxy in
                let output = scratch.file("download")
                let result = try await Curl.run(
                    ["-x", proxy.proxyURL, "-o", output, "-w", "%{http_code} %{size_download}", origin.url("/bytes/\(size)")],
                    maxTime: 30
                )
                #expect(result.output == "200 \(size)", "\(result)")
                let expected = TestDigest.sha256Hex(LoopbackOrigin.patternBytes(count: size))
                #expect(try TestDigest.sha256Hex(fileAt: output) == expected, "the streamed body differs from what the origin sent")
                #expect(await recorder.wait(for: .response), "\(recorder.events)")
                let flow = try #require(recorder.flows(at: .response).first)
                #expect(flow.response?.stream == true, "the response should be marked as streamed")
                #expect(flow.response?.rawContent == nil, "a streamed body must not be kept on the flow")
            }
        }
    }

    @Test("A chunked download larger than stream_large_bodies is streamed and arrives intact")
    func largeChunkedDownload() async throws {
        let size = 3 * 1024 * 1024 + 17
        let recorder = RecordingAddon()
        try await withLoopbackOrigin { origin in
            try await withProxy(addons: [recorder], configure: { $0.streamLargeBodies = 1024 * 1024 }) { proxy in
                let t = try await Curl.transfer(["-x", proxy.proxyURL, origin.url("/chunked/\(size)")], maxTime: 20)
                #expect(t.statusCode == 200, "\(t.command)")
                #expect(t.body.count == size)
                #expect(TestDigest.sha256Hex(t.body) == TestDigest.sha256Hex(LoopbackOrigin.patternBytes(count: size)))
                #expect(await recorder.wait(for: .response))
                #expect(recorder.flows(at: .response).first?.response?.stream == true)
            }
        }
    }

    @Test("A large upload with stream_large_bodies = 1 MiB reaches the origin intact")
    func largeUpload() async throws {
        let body = Data(LoopbackOrigin.patternBytes(count: 4 * 1024 * 1024))
        try await withLoopbackOrigin { origin in
            try await withProxy(configure: { $0.streamLargeBodies = 1024 * 1024 }) { proxy in
                let t = try await Curl.transfer(["-x", proxy.proxyURL, "--data-binary", "@-", origin.url("/status/200")], maxTime: 20, stdin: body)
                #expect(t.statusCode == 200, "\(t)")
                let recorded = try #require(origin.requests.first)
                #expect(recorded.body.count == body.count)
                #expect(TestDigest.sha256Hex(recorded.body) == TestDigest.sha256Hex(body))
            }
        }
    }
}
