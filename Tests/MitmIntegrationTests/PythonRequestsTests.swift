import Foundation
import MitmTestSupport
import Testing

/// Python `requests` as a second, independent client implementation.
@Suite("Python requests", .timeLimit(.minutes(1)))
struct PythonRequestsTests {
    static let script = """
        import json, sys, requests
        proxy, url, ca = sys.argv[1], sys.argv[2], sys.argv[3]
        s = requests.Session()
        s.trust_env = False
        r = s.post(url, data=b"from requests", proxies={"http": proxy, "https": proxy}, verify=ca, timeout=10)
        print(json.dumps({"status": r.status_code, "body": r.text}))
        """

    /// Whether `import requests` works, installing it with pip once if it does not.
    static func requestsAvailable() async -> Bool {
        if (try? await CommandRunner.run("python3", ["-c", "import requests"], timeout: 20))?.succeeded == true {
            return true
        }
        _ = try? await CommandRunner.run("python3", ["-m", "pip", "install", "--quiet", "requests"], timeout: 120)
        return (try? await CommandRunner.run("python3", ["-c", "import requests"], timeout: 20))?.succeeded == true
    }

    private func run(origin kind: LoopbackOrigin.Kind, host: String) async throws {
        guard await Self.requestsAvailable() else {
            try Test.cancel("Python requests is not installed and `python3 -m pip install requests` failed")
        }
        try await withLoopbackOrigin(kind) { origin in
            try await withProxy(configure: { $0.sslInsecure = true }) { proxy in
                let url = origin.url("/echo", host: host)
                let result = try await CommandRunner.run(
                    "python3", ["-c", Self.script, proxy.proxyURL, url, proxy.caCertificatePath], timeout: 20
                )
                #expect(result.succeeded, "\(result)")
                struct Output: Decodable { var status: Int; var body: String }
                let output = try #require(
                    try? JSONDecoder().decode(Output.self, from: Data(result.output.utf8)), "unexpected output: \(result)"
                )
                #expect(output.status == 200, "\(result)")
                let echo = try #require(try? JSONDecoder().decode(EchoResponse.self, from: Data(output.body.utf8)), "\(output.body)")
                #expect(echo.method == "POST")
                #expect(echo.body == "from requests")
                #expect(origin.requests.first?.isTLS == kind.usesTLS)
            }
        }
    }

    @Test("requests through the proxy to an HTTPS origin, verifying against the proxy CA")
    func https() async throws {
        try await run(origin: .tlsH2, host: "localhost")
    }

    @Test("requests through the proxy to an HTTP origin")
    func http() async throws {
        try await run(origin: .plain, host: "127.0.0.1")
    }
}
