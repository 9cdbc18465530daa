import Foundation
import MitmAddons
import MitmCore
import MitmTestSupport
import Testing

/// Addons against real traffic: hook order, isolation of failing addons, answering from an addon.
@Suite("Addon hooks", .timeLimit(.minutes(1)))
struct AddonHookTests {
    static let httpHookOrder: [HookName] = [.requestHeaders, .request, .responseHeaders, .response]

    @Test("An HTTP flow meets requestheaders, request, responseheaders, response, in that order")
    func hookOrder() async throws {
        let recorder = RecordingAddon()
        try await withLoopbackOrigin { origin in
            try await withProxy(addons: [recorder]) { proxy in
                let t = try await Curl.transfer(["-x", proxy.proxyURL, origin.url("/echo")])
                #expect(t.statusCode == 200, "\(t)")
                #expect(await recorder.wait(for: .response), "no response hook: \(recorder.events)")
                let flow = try #require(recorder.flows.first, "no flow recorded")
                #expect(recorder.httpHooks(for: flow.id) == Self.httpHookOrder, "\(recorder.events)")
                #expect(recorder.hookNames.first == .running, "running should come first: \(recorder.hookNames)")
                #expect(flow.response?.statusCode == 200)
                #expect(flow.error == nil)
                #expect(flow.request.path == "/echo")
                #expect(await recorder.wait(for: .serverConnected), "server_connected never ran: \(recorder.hookNames)")
                #expect(recorder.count(of: .clientConnected) == 1, "\(recorder.hookNames)")
            }
        }
        let names = recorder.hookNames
        let done = names.firstIndex(of: .done)
        #expect(done != nil, "done should run at shutdown: \(names)")
        if let done, let response = names.lastIndex(of: .response) {
            #expect(response < done, "no HTTP hook after done: \(names)")
        }
    }

    struct ThrowingAddon: Addon {
        struct Boom: Error, CustomStringConvertible {
            var description: String { "boom from a test addon" }
        }
        func request(_ flow: inout HTTPFlow, context: AddonContext) async throws { throw Boom() }
        func response(_ flow: inout HTTPFlow, context: AddonContext) async throws { throw Boom() }
    }

    @Test("An addon that throws is logged by name, and the flow still completes")
    func throwingAddon() async throws {
        let recorder = RecordingAddon()
        try await withLoopbackOrigin { origin in
            try await withProxy(addons: [ThrowingAddon(), recorder]) { proxy in
                let t = try await Curl.transfer(["-x", proxy.proxyURL, origin.url("/echo")])
                #expect(t.statusCode == 200, "\(t)")
                #expect(t.echo != nil, "\(t)")
                #expect(await recorder.wait(for: .response))
                let flow = try #require(recorder.flows.first)
                #expect(recorder.httpHooks(for: flow.id) == Self.httpHookOrder, "later addons still run: \(recorder.events)")
                #expect(proxy.logs.contains("ThrowingAddon.request"), "the error should name addon and hook: \(proxy.logs.messages)")
                #expect(proxy.logs.contains("boom from a test addon"), "\(proxy.logs.messages)")
                #expect(await proxy.logs.wait(forMessageContaining: "ThrowingAddon.response"), "\(proxy.logs.messages)")
            }
        }
    }

    struct AnsweringAddon: Addon {
        func request(_ flow: inout HTTPFlow, context: AddonContext) async throws {
            if flow.request.path.hasPrefix("/answered") {
                flow.response = .make(203, body: "answered by the addon", headers: ["Content-Type": "text/plain", "X-Answered": "1"])
            }
        }
    }

    @Test("An addon that sets flow.response in request answers without contacting the origin")
    func addonAnswers() async throws {
        let recorder = RecordingAddon()
        try await withLoopbackOrigin { origin in
            try await withProxy(addons: [AnsweringAddon(), recorder]) { proxy in
                let t = try await Curl.transfer(["-x", proxy.proxyURL, origin.url("/answered")])
                #expect(t.statusCode == 203, "\(t)")
                #expect(t.bodyText == "answered by the addon")
                #expect(t.header("X-Answered") == "1", "\(t)")
                #expect(await recorder.wait(for: .response))
                let flow = try #require(recorder.flows.first)
                #expect(recorder.httpHooks(for: flow.id) == Self.httpHookOrder, "\(recorder.events)")
                #expect(origin.requests.isEmpty, "the origin must not be contacted: \(origin.requests)")
                #expect(origin.connectionCount == 0, "the proxy opened \(origin.connectionCount) connection(s) to the origin")
            }
        }
    }

    struct SlowAddon: Addon {
        func requestHeaders(_ flow: inout HTTPFlow, context: AddonContext) async throws {
            try await Task.sleep(for: .milliseconds(50))
            flow.request.headers["X-Slow-Addon"] = "requestheaders"
        }
        func request(_ flow: inout HTTPFlow, context: AddonContext) async throws {
            try await Task.sleep(for: .milliseconds(50))
        }
        func responseHeaders(_ flow: inout HTTPFlow, context: AddonContext) async throws {
            try await Task.sleep(for: .milliseconds(50))
        }
        func response(_ flow: inout HTTPFlow, context: AddonContext) async throws {
            try await Task.sleep(for: .milliseconds(50))
            flow.response?.headers["X-Slow-Addon"] = "response"
        }
    }

    @Test("An async addon that sleeps 50 ms in each hook still works, and its edits stick")
    func slowAsyncAddon() async throws {
        try await withLoopbackOrigin { origin in
            try await withProxy(addons: [SlowAddon()]) { proxy in
                let results = try await withThrowingTaskGroup(of: CurlTransfer.self) { group in
                    for index in 0..<3 {
                        group.addTask { try await Curl.transfer(["-x", proxy.proxyURL, origin.url("/echo?n=\(index)")]) }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                for t in results {
                    #expect(t.statusCode == 200, "\(t)")
                    #expect(t.header("X-Slow-Addon") == "response", "\(t)")
                    #expect(t.echo?.header("X-Slow-Addon") == "requestheaders", "\(t)")
                    #expect(t.command.duration >= 0.2, "four 50 ms hooks cannot take \(t.command.duration) s")
                }
            }
        }
    }
}
