import Foundation
import MitmAddons
import MitmCore
import MitmTestSupport
import NIOCore
import Testing

/// modify_headers, modify_body, map_remote and map_local through a real proxy: curl as the client,
/// loopback origins as the servers.
@Suite("Rewriting addons", .timeLimit(.minutes(1)))
struct RewritingAddonsTests {
    @Test("modify_headers: the origin sees the request headers set and removed, the client the response's")
    func modifyHeaders() async throws {
        let addon = try ModifyHeaders(specs: ["/~q/X-Added/yes", "|~q|User-Agent|", ":~s:X-Served-By:mitm"])
        try await withLoopbackOrigin { origin in
            try await withProxy(addons: [addon]) { proxy in
                let t = try await Curl.transfer(["-x", proxy.proxyURL, "-H", "X-Added: no", origin.url("/echo")])
                #expect(t.statusCode == 200, "\(t)")
                let seen = try #require(origin.requests.first)
                #expect(seen.header("X-Added") == "yes", "\(seen)")
                #expect(seen.headerNames.filter { $0.lowercased() == "x-added" }.count == 1, "\(seen)")
                #expect(seen.header("User-Agent") == nil, "\(seen)")
                #expect(t.header("X-Served-By") == "mitm", "\(t)")
            }
        }
    }

    @Test("modify_body: a gzip request body and a response body are rewritten, the request still gzip")
    func modifyBody() async throws {
        let addon = try ModifyBody(specs: ["/~q/secret/public", #"/~s/"method"/"verb""#])
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let gz = try ContentEncoding.encode(ByteBuffer(string: "the secret word is secret"), encoding: "gzip")
        let file = try scratch.write("body.gz", Data(gz.readableBytesView))
        try await withLoopbackOrigin { origin in
            try await withProxy(addons: [addon]) { proxy in
                let t = try await Curl.transfer([
                    "-x", proxy.proxyURL, "-H", "Content-Encoding: gzip", "--data-binary", "@" + file, origin.url("/echo"),
                ])
                #expect(t.statusCode == 200, "\(t)")
                let seen = try #require(origin.requests.first)
                #expect(seen.header("Content-Encoding") == "gzip")
                #expect(Array(seen.body.prefix(2)) == [0x1F, 0x8B], "re-encoded as gzip")
                #expect(seen.header("Content-Length") == String(seen.body.count))
                let decoded = try ContentEncoding.decode(ByteBuffer(bytes: seen.body), encoding: "gzip")
                #expect(String(buffer: decoded) == "the public word is public")
                #expect(t.bodyText.contains(#""verb""#), "\(t)")
                #expect(!t.bodyText.contains(#""method""#), "\(t)")
            }
        }
    }

    @Test("map_remote: a request for one origin is sent to another, with the Host header following")
    func mapRemote() async throws {
        try await withLoopbackOrigin { first in
            try await withLoopbackOrigin { second in
                let addon = try MapRemote(specs: ["|~d 127.0.0.1|//127.0.0.1:\(first.port)/|//127.0.0.1:\(second.port)/mapped/|"])
                try await withProxy(addons: [addon]) { proxy in
                    let t = try await Curl.transfer(["-x", proxy.proxyURL, first.url("/echo")])
                    #expect(t.statusCode == 404, "/mapped/echo is not a route of the second origin: \(t)")
                    #expect(first.requests.isEmpty, "\(first.requests)")
                    let seen = try #require(second.requests.first, "the second origin got nothing")
                    #expect(seen.uri.hasSuffix("/mapped/echo"), "\(seen)")
                    #expect(seen.header("Host") == "127.0.0.1:\(second.port)", "\(seen)")
                }
            }
        }
    }

    @Test("map_local: a local file is served with its content type, a missing one gives 404, the origin sees nothing")
    func mapLocal() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        _ = try scratch.write("style.css", Data("p { color: red }".utf8))
        try await withLoopbackOrigin { origin in
            let addon = try MapLocal(specs: ["|~d 127.0.0.1|:\(origin.port)/static|\(scratch.path)|"])
            try await withProxy(addons: [addon]) { proxy in
                let css = try await Curl.transfer(["-x", proxy.proxyURL, origin.url("/static/style.css")])
                #expect(css.statusCode == 200, "\(css)")
                #expect(css.bodyText == "p { color: red }")
                #expect(css.header("Content-Type") == "text/css", "\(css)")

                let missing = try await Curl.transfer(["-x", proxy.proxyURL, origin.url("/static/missing.js")])
                #expect(missing.statusCode == 404, "\(missing)")
                #expect(missing.bodyText.contains("no local file"), "\(missing)")
                #expect(await proxy.logs.wait(forMessageContaining: "missing.js"), "\(proxy.logs.messages)")

                let other = try await Curl.transfer(["-x", proxy.proxyURL, origin.url("/echo")])
                #expect(other.statusCode == 200, "unmatched URLs still reach the origin: \(other)")
                #expect(origin.requests.map(\.uri) == ["/echo"], "\(origin.requests)")
            }
        }
    }
}
