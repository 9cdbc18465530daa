import Foundation
import Synchronization

/// A disposable two-namespace network for testing transparent mode without touching the host.
///
/// Transparent mode can't be tested on loopback in one namespace: a `REDIRECT` in `OUTPUT` catches
/// the proxy's own connection to the origin too, and it loops. So the client gets a namespace of
/// its own and reaches everything through a router namespace, where the proxy, the origin and the
/// NAT rule live. Only packets arriving on the router's veth are redirected; the proxy's
/// connections to the origin (on the router's `lo`) are not.
///
/// ```
///   client namespace             router namespace
///   +----------------------+     +--------------------------------------------+
///   | veth-c               |     | veth-r                                     |
///   |  10.77.0.2/24        |-----|  10.77.0.1/24, fd77::1/64                  |
///   |  fd77::2/64          |     | lo: 10.77.1.1/32, fd77:1::1/128 ("origin") |
///   | default via router   |     | nat PREROUTING -i veth-r -p tcp            |
///   | curl, python3        |     |   -j REDIRECT --to-ports <proxyPort>       |
///   +----------------------+     | proxy, origin server                       |
///                                +--------------------------------------------+
/// ```
///
/// Every lab has its own namespace names (`mitmlab-<pid>-<n>-client`/`-router`), so labs in
/// parallel tests don't meet; addresses can repeat because each lab is a separate network.
/// Processes run inside with `ip netns exec`. ``with(proxyPort:_:)`` builds a lab for the length of
/// a closure; its teardown kills what ``spawn(in:_:stdout:stderr:)`` started and deletes both
/// namespaces.
///
/// Needs root, `ip` (iproute2) and `iptables`. ``unavailableReason`` says why a lab can't be built
/// here, so a test can skip with that message. Set `MITM_NETWORK_LAB=off` to skip on purpose.
public final class NetworkLab: Sendable {
    public enum Namespace: Sendable, Hashable {
        case client
        case router
    }

    /// What a command run in the lab printed and how it ended.
    public struct Result: Sendable, CustomStringConvertible {
        public var arguments: [String]
        public var status: Int32
        public var stdout: String
        public var stderr: String
        public var timedOut: Bool
        public var succeeded: Bool { status == 0 && !timedOut }

        public var description: String {
            """
            $ \(arguments.joined(separator: " "))
            exit \(status)\(timedOut ? " (killed after time limit)" : "")
            stdout: \(stdout.prefix(2000))
            stderr: \(stderr.prefix(2000))
            """
        }
    }

    /// Why the lab could not be built.
    public struct SetupError: Error, CustomStringConvertible {
        public var message: String
        public var description: String { message }
        public init(message: String) { self.message = message }
    }

    // MARK: - Addresses

    /// The client's address on the veth.
    public static let clientIPv4 = "10.77.0.2"
    /// The router's address on the veth: the client's default gateway.
    public static let routerIPv4 = "10.77.0.1"
    /// An address on the router's `lo` that stands for "some server on the internet".
    public static let originIPv4 = "10.77.1.1"
    public static let clientIPv6 = "fd77::2"
    public static let routerIPv6 = "fd77::1"
    public static let originIPv6 = "fd77:1::1"

    /// The port that the router's NAT rule redirects all the client's TCP to.
    public let proxyPort: Int
    public let clientNamespace: String
    public let routerNamespace: String
    /// The router's end of the veth: the interface the NAT rule matches with `-i`.
    public let routerInterface = "veth-r"
    public let clientInterface = "veth-c"
    /// `nil` when the IPv6 half (addresses, routes, `ip6tables -t nat`) works too; otherwise why not.
    public let ipv6UnavailableReason: String?
    public var hasIPv6: Bool { ipv6UnavailableReason == nil }

    private struct State {
        var spawned: [ChildProcess] = []
        var tornDown = false
    }
    private let state = Mutex(State())

    private static let counter = Atomic<Int>(0)

    private init(
        proxyPort: Int,
        clientNamespace: String,
        routerNamespace: String,
        ipv6UnavailableReason: String?
    ) {
        self.proxyPort = proxyPort
        self.clientNamespace = clientNamespace
        self.routerNamespace = routerNamespace
        self.ipv6UnavailableReason = ipv6UnavailableReason
    }

    public func name(of namespace: Namespace) -> String {
        switch namespace {
        case .client: clientNamespace
        case .router: routerNamespace
        }
    }

    // MARK: - Availability

    /// `nil` if labs can be built here; otherwise the reason, for a skipped test's message. The
    /// check runs once per process and builds (and tears down) one real lab, because the only
    /// reliable test of "may I create namespaces and NAT rules" is to try.
    public static var unavailableReason: String? {
        get async { await availability.value.reason }
    }

    private static let availability = Task<(reason: String?, ipv6: String?), Never> {
        if ProcessInfo.processInfo.environment["MITM_NETWORK_LAB"] == "off" {
            return ("network lab disabled by MITM_NETWORK_LAB=off", nil)
        }
        #if os(Linux)
        if geteuid() != 0 {
            return (
                "network lab needs root (network namespaces and iptables); running as uid \(geteuid())",
                nil
            )
        }
        for tool in ["ip", "iptables"] where executablePath(tool) == nil {
            return (
                "network lab needs `\(tool)` in PATH (Debian: apt-get install iproute2 iptables)", nil
            )
        }
        await removeStaleNamespaces()
        do {
            let lab = try await NetworkLab.build(proxyPort: 8080)
            await lab.teardown()
            return (nil, lab.ipv6UnavailableReason)
        } catch {
            return ("network lab could not be built: \(error)", nil)
        }
        #else
        return ("network lab needs Linux network namespaces and iptables", nil)
        #endif
    }

    /// Deletes the namespaces of labs whose test process died before its teardown (killed by a
    /// time limit, crashed), recognised by the pid in their name. Run once, with the availability check.
    static func removeStaleNamespaces() async {
        let listing = await runTool(["ip", "netns", "list"])
        guard listing.succeeded else { return }
        for line in listing.stdout.split(separator: "\n") {
            // Lines look like `mitmlab-1234-1-router (id: 3)`.
            let name = String(line.split(separator: " ").first ?? "")
            let parts = name.split(separator: "-")
            guard parts.count == 4, parts[0] == "mitmlab", let pid = Int32(parts[1]) else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH {
                _ = await runTool(["ip", "netns", "del", name])
            }
        }
    }

    // MARK: - Building

    /// Builds a lab whose router redirects every TCP connection from the client to `proxyPort`,
    /// runs `body` with it and tears it down, however `body` ends. Throws a ``SetupError`` naming
    /// the command that failed (after cleaning up what it made); check ``unavailableReason``
    /// first to skip instead.
    public static func with<T: Sendable>(
        proxyPort: Int = 8080,
        _ body: (NetworkLab) async throws -> T
    ) async throws -> T {
        if let reason = await unavailableReason {
            throw SetupError(message: reason)
        }
        let lab = try await build(proxyPort: proxyPort)
        do {
            let result = try await body(lab)
            await lab.teardown()
            return result
        } catch {
            await lab.teardown()
            throw error
        }
    }

    private static func build(proxyPort: Int) async throws -> NetworkLab {
        let n = counter.add(1, ordering: .relaxed).newValue
        let prefix = "mitmlab-\(ProcessInfo.processInfo.processIdentifier)-\(n)"
        let client = "\(prefix)-client"
        let router = "\(prefix)-router"
        // A leftover of a crashed run with the same pid would make `ip netns add` fail.
        _ = await runTool(["ip", "netns", "del", client])
        _ = await runTool(["ip", "netns", "del", router])

        var created: [String] = []
        func step(_ arguments: [String]) async throws {
            let result = await runTool(arguments)
            guard result.succeeded else {
                for namespace in created { _ = await runTool(["ip", "netns", "del", namespace]) }
                let why = result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
                throw SetupError(
                    message: "`\(arguments.joined(separator: " "))` failed (exit \(result.status)): \(why)"
                )
            }
        }
        try await step(["ip", "netns", "add", router])
        created.append(router)
        try await step(["ip", "netns", "add", client])
        created.append(client)
        // Created inside the router namespace directly, so the names never clash in the host's.
        try await step([
            "ip", "-n", router, "link", "add", "veth-r", "type", "veth", "peer", "name", "veth-c",
            "netns", client,
        ])
        try await step(["ip", "-n", router, "addr", "add", "\(routerIPv4)/24", "dev", "veth-r"])
        try await step(["ip", "-n", router, "addr", "add", "\(originIPv4)/32", "dev", "lo"])
        try await step(["ip", "-n", client, "addr", "add", "\(clientIPv4)/24", "dev", "veth-c"])
        for namespace in [router, client] {
            try await step(["ip", "-n", namespace, "link", "set", "lo", "up"])
        }
        try await step(["ip", "-n", router, "link", "set", "veth-r", "up"])
        try await step(["ip", "-n", client, "link", "set", "veth-c", "up"])
        try await step(["ip", "-n", client, "route", "add", "default", "via", routerIPv4])
        try await step([
            "ip", "netns", "exec", router, "iptables", "-t", "nat", "-A", "PREROUTING",
            "-i", "veth-r", "-p", "tcp", "-j", "REDIRECT", "--to-ports", "\(proxyPort)",
        ])
        let ipv6 = await addIPv6(client: client, router: router, proxyPort: proxyPort)
        return NetworkLab(
            proxyPort: proxyPort,
            clientNamespace: client,
            routerNamespace: router,
            ipv6UnavailableReason: ipv6
        )
    }

    /// The IPv6 half is best effort: a kernel without IPv6 NAT still gets an IPv4 lab.
    /// Returns why it failed, or `nil`.
    private static func addIPv6(client: String, router: String, proxyPort: Int) async -> String? {
        if executablePath("ip6tables") == nil {
            return "`ip6tables` is not in PATH"
        }
        // `nodad`: duplicate address detection would leave the addresses unusable ("tentative")
        // for a second or two after they are added.
        let steps: [[String]] = [
            ["ip", "-n", router, "addr", "add", "\(routerIPv6)/64", "dev", "veth-r", "nodad"],
            ["ip", "-n", router, "addr", "add", "\(originIPv6)/128", "dev", "lo"],
            ["ip", "-n", client, "addr", "add", "\(clientIPv6)/64", "dev", "veth-c", "nodad"],
            ["ip", "-n", client, "-6", "route", "add", "default", "via", routerIPv6],
            [
                "ip", "netns", "exec", router, "ip6tables", "-t", "nat", "-A", "PREROUTING",
                "-i", "veth-r", "-p", "tcp", "-j", "REDIRECT", "--to-ports", "\(proxyPort)",
            ],
        ]
        for arguments in steps {
            let result = await runTool(arguments)
            if !result.succeeded {
                let why = result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
                return "`\(arguments.joined(separator: " "))` failed (exit \(result.status)): \(why)"
            }
        }
        return nil
    }

    // MARK: - Running things inside

    /// Runs `arguments` in `namespace` and waits for it (killing it after `timeout` seconds).
    /// Proxy variables are removed from its environment, so curl goes where it is told.
    public func run(in namespace: Namespace, _ arguments: [String], timeout: Double = 15) async -> Result {
        await Self.runTool(["ip", "netns", "exec", name(of: namespace)] + arguments, timeout: timeout)
    }

    /// Starts `arguments` in `namespace` without waiting. Its output goes to `stdout`/`stderr`
    /// (discarded when `nil`). The teardown kills it if it is still running.
    @discardableResult
    public func spawn(
        in namespace: Namespace,
        _ arguments: [String],
        stdout: FileHandle? = nil,
        stderr: FileHandle? = nil
    ) async throws -> ChildProcess {
        guard !state.withLock({ $0.tornDown }) else { throw SetupError(message: "the lab was already torn down") }
        let child = try await ChildProcess.start(
            Self.executablePath("ip") ?? "ip",
            ["netns", "exec", name(of: namespace)] + arguments,
            stdout: stdout.map { .file($0) } ?? .discard,
            stderr: stderr.map { .file($0) } ?? .discard
        )
        state.withLock { $0.spawned.append(child) }
        return child
    }

    /// Waits until something in `namespace` listens on TCP `port` (by `ss`), on `address` if one
    /// is given, up to `timeout` seconds. Returns whether it did.
    public func waitUntilListening(
        in namespace: Namespace,
        port: Int,
        address: String? = nil,
        timeout: Double = 10
    ) async -> Bool {
        let wanted = address.map { $0.contains(":") ? "[\($0)]:\(port)" : "\($0):\(port)" }
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let result = await run(in: namespace, ["ss", "-Hltn", "sport", "=", ":\(port)"], timeout: 5)
            let listeners = result.stdout.split(separator: "\n").map { line in
                // State, Recv-Q, Send-Q, Local Address:Port, Peer Address:Port.
                line.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).first.map(String.init) ?? ""
            }
            if result.succeeded && listeners.contains(where: { wanted == nil ? !$0.isEmpty : $0 == wanted }) {
                return true
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return false
    }

    /// Kills the processes ``spawn(in:_:stdout:stderr:)`` started and deletes both namespaces (the
    /// veth pair goes with them). Safe to call more than once.
    func teardown() async {
        let processes: [ChildProcess]? = state.withLock { state in
            guard !state.tornDown else { return nil }
            state.tornDown = true
            return state.spawned
        }
        guard let processes else { return }
        for process in processes where process.isRunning {
            // `ip netns exec` execs the command, so this pid is the command itself.
            process.kill()
            _ = await process.waitForExit(timeout: 10)
        }
        for namespace in [clientNamespace, routerNamespace] {
            _ = await Self.runTool(["ip", "netns", "del", namespace])
        }
    }

    // MARK: - Process plumbing

    static func runTool(_ arguments: [String], timeout: Double = 15) async -> Result {
        let executable = arguments.first.flatMap(executablePath) ?? arguments.first ?? "true"
        do {
            let result = try await CommandRunner.run(executable, Array(arguments.dropFirst()), timeout: timeout)
            return Result(
                arguments: arguments,
                status: result.exitCode,
                stdout: result.output,
                stderr: result.errorOutput,
                timedOut: result.timedOut
            )
        } catch {
            return Result(arguments: arguments, status: 127, stdout: "", stderr: "\(error)", timedOut: false)
        }
    }

    static func executablePath(_ name: String) -> String? {
        // Root's PATH may lack /usr/sbin in some shells; ip and iptables live there.
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/sbin:/sbin"
        return path.split(separator: ":").map { "\($0)/\(name)" }.first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
    }
}
