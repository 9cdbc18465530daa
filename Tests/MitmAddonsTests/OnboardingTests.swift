import Foundation
import MitmAddons
import MitmCore
import NIOCore
import Testing

/// The onboarding addon on flows, no sockets: which requests it answers, and with what.
@Suite struct OnboardingTests {
    static func flow(host: String = "mitm.it", port: Int = 80, path: String = "/", live: Bool = true) -> HTTPFlow {
        let request = HTTPRequest(method: "GET", scheme: "http", host: host, port: port, path: path, headers: ["Host": host])
        let client = ClientConnection(peername: Address(host: "127.0.0.1", port: 1), sockname: Address(host: "127.0.0.1", port: 8080), proxyMode: "regular")
        return HTTPFlow(request: request, clientConnection: client, isLive: live)
    }

    /// A confdir with stand-in certificate files, and a context pointing at it.
    static func withConfdir(_ body: (AddonContext, String) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("onboarding-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for ext in ["pem", "p12", "cer"] {
            try Data("certificate as \(ext)".utf8).write(to: URL(fileURLWithPath: "\(directory)/mitmproxy-ca-cert.\(ext)"))
        }
        var options = ProxyOptions()
        options.confdir = directory
        try await body(AddonContext(options: options), directory)
    }

    static func body(_ flow: HTTPFlow) -> String {
        flow.response?.rawContent.map { String(buffer: $0) } ?? ""
    }

    @Test(
        "the certificate downloads come from the confdir with their types and file names",
        arguments: [
            ("/cert/pem", "application/x-x509-ca-cert", "mitmproxy-ca-cert.pem", "pem"),
            ("/cert/p12", "application/x-pkcs12", "mitmproxy-ca-cert.p12", "p12"),
            ("/cert/cer", "application/x-x509-ca-cert", "mitmproxy-ca-cert.cer", "cer"),
        ]
    )
    func downloads(path: String, contentType: String, file: String, ext: String) async throws {
        try await Self.withConfdir { context, _ in
            var flow = Self.flow(path: path)
            try await Onboarding().request(&flow, context: context)
            #expect(flow.response?.statusCode == 200)
            #expect(flow.response?.headers["content-type"] == contentType)
            #expect(flow.response?.headers["content-disposition"] == "attachment; filename=\(file)")
            #expect(Self.body(flow) == "certificate as \(ext)")
            #expect(flow.response?.headers["content-length"] == String("certificate as \(ext)".utf8.count))
        }
    }

    @Test("/ is a self-contained page with instructions for every platform and the download links")
    func page() async throws {
        try await Self.withConfdir { context, _ in
            var flow = Self.flow(path: "/?from=test")
            try await Onboarding().request(&flow, context: context)
            #expect(flow.response?.statusCode == 200)
            #expect(flow.response?.headers["content-type"] == "text/html; charset=utf-8")
            let html = Self.body(flow)
            for platform in ["Windows", "macOS", "Linux", "iOS", "Android", "Firefox"] {
                #expect(html.contains("<h2>\(platform)"), "no section for \(platform)")
            }
            for link in ["/cert/pem", "/cert/p12", "/cert/cer"] {
                #expect(html.contains("href=\"\(link)\""), "no link to \(link)")
            }
            #expect(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"), "nothing from elsewhere")
        }
    }

    @Test("unknown paths get 404; requests to other hosts are not touched")
    func notFoundAndOtherHosts() async throws {
        try await Self.withConfdir { context, _ in
            var unknown = Self.flow(path: "/cert/der")
            try await Onboarding().request(&unknown, context: context)
            #expect(unknown.response?.statusCode == 404)
            var other = Self.flow(host: "example.com")
            try await Onboarding().request(&other, context: context)
            #expect(other.response == nil)
        }
    }

    @Test("onboarding=false, another onboarding_host or port, and flows that are not live are not served")
    func options() async throws {
        try await Self.withConfdir { context, _ in
            var disabled = Self.flow()
            try await Onboarding(enabled: false).request(&disabled, context: context)
            #expect(disabled.response == nil)
            var custom = Self.flow(host: "setup.proxy")
            try await Onboarding(host: "setup.proxy").request(&custom, context: context)
            #expect(custom.response?.statusCode == 200)
            var wrongPort = Self.flow(port: 80)
            try await Onboarding(port: 8081).request(&wrongPort, context: context)
            #expect(wrongPort.response == nil)
            var rightPort = Self.flow(port: 8081)
            try await Onboarding(port: 8081).request(&rightPort, context: context)
            #expect(rightPort.response?.statusCode == 200)
            var replayed = Self.flow(live: false)
            try await Onboarding().request(&replayed, context: context)
            #expect(replayed.response == nil)
        }
    }

    @Test("the server's check agrees with the addon's defaults")
    func proxyOptions() {
        let options = ProxyOptions()
        #expect(options.onboarding && options.onboardingHost == "mitm.it" && options.onboardingPort == nil)
        #expect(options.isOnboardingTarget(host: "MITM.it", port: 443))
        #expect(!options.isOnboardingTarget(host: "example.com", port: 443))
        var off = options
        off.onboarding = false
        #expect(!off.isOnboardingTarget(host: "mitm.it", port: 443))
    }

    @Test("a missing certificate file is a 404 naming it")
    func missingFile() async throws {
        var options = ProxyOptions()
        options.confdir = "/nonexistent-confdir-\(UUID().uuidString)"
        var flow = Self.flow(path: "/cert/pem")
        try await Onboarding().request(&flow, context: AddonContext(options: options))
        #expect(flow.response?.statusCode == 404)
        #expect(Self.body(flow).contains("mitmproxy-ca-cert.pem"))
    }
}
