import Foundation
import MitmAddons
import MitmCore
import MitmTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The small built-in addons against real traffic: curl through the proxy, one test per addon.
@Suite("Built-in addons", .timeLimit(.minutes(2)))
struct BuiltInAddonsTests {
    @Test("block_list: a matching request gets the status and an empty body, 444 an empty reply; others pass")
    func blockList() async throws {
        let addon = try BlockList(specs: [":~u /blocked:403", "|~u /dropped|444"])
        try await withLoopbackOrigin { origin in
            try await withProxy(addons: [addon]) { proxy in
                let blocked = try await Curl.transfer(["-x", proxy.proxyURL, origin.url("/blocked")])
                #expect(blocked.statusCode == 403, "\(blocked)")
                #expect(blocked.body.isEmpty, "\(blocked)")

                let dropped = try await Curl.transfer(["-x", proxy.proxyURL, origin.url("/dropped")])
                #expect(dropped.command.exitCode == 52, "curl should report an empty reply: \(dropped)")
                #expect(dropped.command.errorOutput.contains("Empty reply"), "\(dropped)")

                let passed = try await Curl.transfer(["-x", proxy.proxyURL, origin.url("/echo")])
                #expect(passed.statusCode == 200, "\(passed)")
                #expect(origin.requests.map(\.uri) == ["/echo"], "blocked requests never reach the origin")
            }
        }
    }

    @Test("stickycookie: the second request, by a client without a cookie jar, carries the cookie the first response set")
    func stickyCookie() async throws {
        let addon = try StickyCookie(filter: "~d 127.0.0.1")
        try await withLoopbackOrigin { origin in
            try await withProxy(addons: [addon]) { proxy in
                let first = try await Curl.transfer(["-x", proxy.proxyURL, origin.url("/set-cookie?session=abc123")])
                #expect(first.statusCode == 200, "\(first)")
                #expect(first.header("Set-Cookie") == "session=abc123; Path=/", "\(first)")
                let second = try await Curl.transfer(["-x", proxy.proxyURL, origin.url("/echo")])
                let echo = try #require(second.echo, "\(second)")
                #expect(echo.header("cookie") == "session=abc123", "\(echo.headers)")
            }
        }
    }

    @Test("stickyauth: a request without credentials gets those an earlier request to the host sent")
    func stickyAuth() async throws {
        let addon = try StickyAuth(filter: "~d 127.0.0.1")
        try await withLoopbackOrigin { origin in
            try await withProxy(addons: [addon]) { proxy in
                let first = try await Curl.transfer(["-x", proxy.proxyURL, "-u", "alice:secret", origin.url("/echo")])
                #expect(first.echo?.header("authorization") == "Basic YWxpY2U6c2VjcmV0", "\(first)")
                let second = try await Curl.transfer(["-x", proxy.proxyURL, origin.url("/echo")])
                let echo = try #require(second.echo, "\(second)")
                #expect(echo.header("authorization") == "Basic YWxpY2U6c2VjcmV0", "\(echo.headers)")
            }
        }
    }

    @Test("onboarding: mitm.it is served by the proxy over HTTP and through CONNECT, though it does not resolve")
    func onboarding() async throws {
        try await withProxy(addons: [Onboarding()]) { proxy in
            let pem = try await Curl.transfer(["-x", proxy.proxyURL, "http://mitm.it/cert/pem"])
            #expect(pem.statusCode == 200, "\(pem)")
            let confdirPEM = try Data(contentsOf: URL(fileURLWithPath: proxy.caCertificatePath))
            #expect(pem.body == confdirPEM, "the download is the confdir's certificate")
            #expect(pem.header("Content-Disposition") == "attachment; filename=mitmproxy-ca-cert.pem", "\(pem)")

            let page = try await Curl.transfer(["-x", proxy.proxyURL, "--cacert", proxy.caCertificatePath, "https://mitm.it/"])
            #expect(page.statusCode == 200, "\(page)")
            #expect(page.bodyText.contains("/cert/p12"), "\(page)")

            let missing = try await Curl.transfer(["-x", proxy.proxyURL, "--cacert", proxy.caCertificatePath, "https://mitm.it/nothing"])
            #expect(missing.statusCode == 404, "\(missing)")
            // Neither the CONNECT (eager) nor the certificate (upstream_cert) tried to reach mitm.it.
            #expect(!proxy.logs.messages.contains { $0.contains("Error connecting") }, "\(proxy.logs.messages)")
        }
    }

    /// The proxy listens inside a `NetworkLab`'s router namespace (its listener is made on a thread
    /// that joined that namespace), so clients reach it from real, non-loopback addresses: the lab's
    /// private `10.77.0.2`, and `1.2.3.4`, a global address added to the client's interface (it
    /// exists only inside the lab).
    @Test("block: with the defaults, a private client is served and a global one is cut off unserved")
    func block() async throws {
        if let reason = await NetworkLab.unavailableReason {
            try Test.cancel("skipped: \(reason)")
        }
        try await NetworkLab.with(proxyPort: 18080) { lab in
            let global = "1.2.3.4"
            for (namespace, arguments) in [
                (NetworkLab.Namespace.client, ["ip", "addr", "add", "\(global)/32", "dev", lab.clientInterface]),
                (.router, ["ip", "route", "add", "\(global)/32", "dev", lab.routerInterface]),
            ] {
                let result = await lab.run(in: namespace, arguments)
                try #require(result.succeeded, "\(result)")
            }
            let executor = try NetworkNamespaceExecutor(namespace: lab.routerNamespace)
            try await withTaskExecutorPreference(executor) {
                let listenInLab: (inout ProxyOptions) -> Void = { options in
                    options.listenHost = "0.0.0.0"
                    options.listenPort = lab.proxyPort
                }
                try await withProxy(addons: [Block(), Onboarding()], configure: listenInLab) { proxy in
                    let proxyURL = "http://\(NetworkLab.routerIPv4):\(lab.proxyPort)"
                    let curl = ["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", "-x", proxyURL]

                    let served = await lab.run(in: .client, curl + ["http://mitm.it/cert/pem"])
                    #expect(served.succeeded && served.stdout == "200", "a private client is served by default: \(served)")

                    let refused = await lab.run(in: .client, curl + ["--interface", global, "http://mitm.it/cert/pem"])
                    #expect(!refused.succeeded, "a global client gets no answer: \(refused)")
                    #expect(refused.stdout == "000", "\(refused)")
                    #expect(
                        await proxy.logs.wait(forMessageContaining: "Client connection from \(global) killed by block_global option."),
                        "\(proxy.logs.messages)"
                    )
                    #expect(!proxy.logs.contains("Client connection from \(NetworkLab.clientIPv4) killed"), "\(proxy.logs.messages)")
                }
            }
        }
    }
}

/// A task executor whose one thread has joined a network namespace (`setns`), so the sockets that
/// tasks preferring it create, such as a proxy's listener, belong to that namespace. Connections
/// accepted on such a listener stay in it whichever thread serves them. The thread waits for jobs
/// until the test process ends.
final class NetworkNamespaceExecutor: TaskExecutor, @unchecked Sendable {
    /// Guards `jobs`; signalled when one is added.
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []

    struct JoinError: Error, CustomStringConvertible {
        var description: String
    }

    init(namespace: String) throws {
        let joined = DispatchSemaphore(value: 0)
        let failure = Handoff()
        let thread = Thread { [self] in
            let fd = open("/var/run/netns/\(namespace)", O_RDONLY)
            if fd < 0 || Self.setns(fd, Self.cloneNewNet) != 0 {
                failure.set("could not join network namespace \(namespace): errno \(errno)")
                joined.signal()
                return
            }
            close(fd)
            joined.signal()
            run()
        }
        thread.start()
        joined.wait()
        if let message = failure.get() { throw JoinError(description: message) }
    }

    /// `CLONE_NEWNET` from `<sched.h>`.
    private static let cloneNewNet: Int32 = 0x4000_0000

    /// glibc's `setns(2)` wrapper, which the Glibc module does not import (it needs `_GNU_SOURCE`).
    private static func setns(_ fd: Int32, _ type: Int32) -> Int32 {
        typealias Function = @convention(c) (Int32, Int32) -> Int32
        guard let symbol = dlsym(nil, "setns") else { return -1 }
        return unsafeBitCast(symbol, to: Function.self)(fd, type)
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }

    /// A message handed from the joining thread to `init`, which waits on a semaphore for it.
    private final class Handoff: @unchecked Sendable {
        private let lock = NSLock()
        private var message: String?
        func set(_ text: String) { lock.withLock { message = text } }
        func get() -> String? { lock.withLock { message } }
    }
}
