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
/// Processes run inside with `ip netns exec`. ``teardown()`` (also run on deinit) kills what
/// ``spawn(in:_:)`` started and deletes both namespaces.
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
        var spawned: [Process] = []
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

    deinit {
        teardown()
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
    public static var unavailableReason: String? { availability.reason }
    public static var isAvailable: Bool { unavailableReason == nil }

    private static let availability: (reason: String?, ipv6: String?) = {
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
        removeStaleNamespaces()
        do {
            let lab = try NetworkLab.build(proxyPort: 8080)
            lab.teardown()
            return (nil, lab.ipv6UnavailableReason)
        } catch {
            return ("network lab could not be built: \(error)", nil)
        }
        #else
        return ("network lab needs Linux network namespaces and iptables", nil)
        #endif
    }()

    /// Deletes the namespaces of labs whose test process died before its teardown (killed by a
    /// time limit, crashed), recognised by the pid in their name. Run once, with the availability check.
    static func removeStaleNamespaces() {
        let listing = runTool(["ip", "netns", "list"])
        guard listing.succeeded else { return }
        for line in listing.stdout.split(separator: "\n") {
            // Lines look like `mitmlab-1234-1-router (id: 3)`.
            let name = String(line.split(separator: " ").first ?? "")
            let parts = name.split(separator: "-")
            guard parts.count == 4, parts[0] == "mitmlab", let pid = Int32(parts[1]) else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH {
                _ = runTool(["ip", "netns", "del", name])
            }
        }
    }

    // MARK: - Building

    /// Builds a lab whose router redirects every TCP connection from the client to `proxyPort`.
    /// Throws a ``SetupError`` naming the command that failed (after cleaning up what it made);
    /// check ``unavailableReason`` first to skip instead.
    public static func make(proxyPort: Int = 8080) throws -> NetworkLab {
        if let reason = unavailableReason {
            throw SetupError(message: reason)
        }
        return try build(proxyPort: proxyPort)
    }

    private static func build(proxyPort: Int) throws -> NetworkLab {
        let n = counter.add(1, ordering: .relaxed).newValue
        let prefix = "mitmlab-\(ProcessInfo.processInfo.processIdentifier)-\(n)"
        let client = "\(prefix)-client"
        let router = "\(prefix)-router"
        // A leftover of a crashed run with the same pid would make `ip netns add` fail.
        _ = runTool(["ip", "netns", "del", client])
        _ = runTool(["ip", "netns", "del", router])

        var created: [String] = []
        func step(_ arguments: [String]) throws {
            let result = runTool(arguments)
            guard result.succeeded else {
                for namespace in created { _ = runTool(["ip", "netns", "del", namespace]) }
                let why = result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
                throw SetupError(
                    message: "`\(arguments.joined(separator: " "))` failed (exit \(result.status)): \(why)"
                )
            }
        }
        try step(["ip", "netns", "add", router])
        created.append(router)
        try step(["ip", "netns", "add", client])
        created.append(client)
        // Created inside the router namespace directly, so the names never clash in the host's.
        try step([
            "ip", "-n", router, "link", "add", "veth-r", "type", "veth", "peer", "name", "veth-c",
            "netns", client,
        ])
        try step(["ip", "-n", router, "addr", "add", "\(routerIPv4)/24", "dev", "veth-r"])
        try step(["ip", "-n", router, "addr", "add", "\(originIPv4)/32", "dev", "lo"])
        try step(["ip", "-n", client, "addr", "add", "\(clientIPv4)/24", "dev", "veth-c"])
        for namespace in [router, client] {
            try step(["ip", "-n", namespace, "link", "set", "lo", "up"])
        }
        try step(["ip", "-n", router, "link", "set", "veth-r", "up"])
        try step(["ip", "-n", client, "link", "set", "veth-c", "up"])
        try step(["ip", "-n", client, "route", "add", "default", "via", routerIPv4])
        try step([
            "ip", "netns", "exec", router, "iptables", "-t", "nat", "-A", "PREROUTING",
            "-i", "veth-r", "-p", "tcp", "-j", "REDIRECT", "--to-ports", "\(proxyPort)",
        ])
        let ipv6 = addIPv6(client: client, router: router, proxyPort: proxyPort)
        return NetworkLab(
            proxyPort: proxyPort,
            clientNamespace: client,
            routerNamespace: router,
            ipv6UnavailableReason: ipv6
        )
    }

    /// The IPv6 half is best effort: a kernel without IPv6 NAT still gets an IPv4 lab.
    /// Returns why it failed, or `nil`.
    private static func addIPv6(client: String, router: String, proxyPort: Int) -> String? {
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
            let result = runTool(arguments)
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
    public func run(in namespace: Namespace, _ arguments: [String], timeout: Double = 15) -> Result {
        Self.runTool(["ip", "netns", "exec", name(of: namespace)] + arguments, timeout: timeout)
    }

    /// Starts `arguments` in `namespace` without waiting. Its output goes to `stdout`/`stderr`
    /// (the null device when `nil`). ``teardown()`` kills it if it is still running.
    public func spawn(
        in namespace: Namespace,
        _ arguments: [String],
        stdout: FileHandle? = nil,
        stderr: FileHandle? = nil
    ) throws -> Process {
        let process = Self.makeProcess(["ip", "netns", "exec", name(of: namespace)] + arguments)
        process.standardOutput = stdout ?? FileHandle.nullDevice
        process.standardError = stderr ?? FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try state.withLock { state in
            guard !state.tornDown else { throw SetupError(message: "the lab was already torn down") }
            try process.run()
            state.spawned.append(process)
        }
        return process
    }

    /// Waits until something in `namespace` listens on TCP `port` (by `ss`), up to `timeout`
    /// seconds. Returns whether it did.
    public func waitUntilListening(in namespace: Namespace, port: Int, timeout: Double = 10) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let result = run(in: namespace, ["ss", "-Hltn", "sport", "=", ":\(port)"], timeout: 5)
            if result.succeeded && !result.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                return true
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return false
    }

    /// Kills the processes ``spawn(in:_:)`` started and deletes both namespaces (the veth pair goes
    /// with them). Safe to call more than once.
    public func teardown() {
        let processes: [Process]? = state.withLock { state in
            guard !state.tornDown else { return nil }
            state.tornDown = true
            return state.spawned
        }
        guard let processes else { return }
        for process in processes where process.isRunning {
            // `ip netns exec` execs the command, so this pid is the command itself.
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        for namespace in [clientNamespace, routerNamespace] {
            _ = Self.runTool(["ip", "netns", "del", namespace])
        }
    }

    // MARK: - Process plumbing

    static let scrubbedEnvironment: Set<String> = [
        "http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
        "NO_PROXY",
    ]

    private static func makeProcess(_ arguments: [String]) -> Process {
        let process = Process()
        if let tool = arguments.first, let path = executablePath(tool) {
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = Array(arguments.dropFirst())
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = arguments
        }
        process.environment = ProcessInfo.processInfo.environment.filter {
            !scrubbedEnvironment.contains($0.key)
        }
        return process
    }

    static func runTool(_ arguments: [String], timeout: Double = 15) -> Result {
        let process = makeProcess(arguments)
        let outPipe = Pipe()
        let errPipe = Pipe()
        process.standardOutput = outPipe
        process.standardError = errPipe
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            return Result(
                arguments: arguments,
                status: 127,
                stdout: "",
                stderr: "\(error)",
                timedOut: false
            )
        }
        // Both pipes are drained on their own threads so a chatty command never blocks on a full pipe.
        let collected = Mutex<(out: Data, err: Data)>((Data(), Data()))
        let readers = DispatchGroup()
        for (handle, isOut) in [
            (outPipe.fileHandleForReading, true), (errPipe.fileHandleForReading, false),
        ] {
            readers.enter()
            Thread {
                let data = (try? handle.readToEnd()) ?? Data()
                collected.withLock { if isOut { $0.out = data } else { $0.err = data } }
                readers.leave()
            }.start()
        }
        let timedOut = Atomic<Bool>(false)
        let pid = process.processIdentifier
        let exited = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            if exited.wait(timeout: .now() + timeout) == .timedOut {
                timedOut.store(true, ordering: .relaxed)
                kill(pid, SIGKILL)
            }
        }
        process.waitUntilExit()
        exited.signal()
        readers.wait()
        let output = collected.withLock { $0 }
        return Result(
            arguments: arguments,
            status: process.terminationStatus,
            stdout: String(decoding: output.out, as: UTF8.self),
            stderr: String(decoding: output.err, as: UTF8.self),
            timedOut: timedOut.load(ordering: .relaxed)
        )
    }

    static func executablePath(_ name: String) -> String? {
        // Root's PATH may lack /usr/sbin in some shells; ip and iptables live there.
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/sbin:/sbin"
        return path.split(separator: ":").map { "\($0)/\(name)" }.first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
    }
}
