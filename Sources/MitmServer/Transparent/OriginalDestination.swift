import NIOCore

#if os(Linux)
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
#endif

/// Where a transparently proxied client meant to connect, before the firewall redirected it to us.
///
/// In mitmproxy's transparent mode the client never names its server: it connects to `10.77.1.1:80`
/// and a NAT rule (`iptables … -j REDIRECT --to-ports 8080`) rewrites the destination to the proxy.
/// The kernel remembers the rewrite in its connection-tracking table, and on Linux hands it back
/// through `getsockopt(SOL_IP, SO_ORIGINAL_DST)` (IPv4) or `getsockopt(SOL_IPV6,
/// IP6T_SO_ORIGINAL_DST)` (IPv6). This is mitmproxy's `platform/linux.py` `original_addr`.
///
/// Use it from a listener's child-channel initializer, before the pipeline is configured:
///
/// ```swift
/// .childChannelInitializer { channel in
///     OriginalDestination.lookup(channel).flatMapThrowing { destination in
///         try configure(channel, serverAddress: destination)
///     }
/// }
/// ```
///
/// A failed lookup is an ``OriginalDestinationError``; the usual one is
/// ``OriginalDestinationError/Code/notRedirected``: somebody connected to the proxy port directly,
/// and there is no server to forward to (mitmproxy: "Request destination unknown").
struct OriginalDestination: Sendable, Hashable, CustomStringConvertible {
    /// The numeric address as text: `10.77.1.1` or `fd77:1::1` (no brackets, no zone).
    var host: String
    var port: Int

    init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `host:port`, with brackets around an IPv6 host (`[fd77:1::1]:443`).
    var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// Looks up where the client of `channel` (a TCP connection accepted by a `ServerBootstrap`)
    /// originally connected to. The future completes on the channel's event loop; called from that
    /// loop it is already complete when returned, as NIO runs the `getsockopt` at once.
    ///
    /// Fails with an ``OriginalDestinationError``: `.notRedirected` when no NAT rule rewrote this
    /// connection, `.conntrackUnavailable` when the kernel has no connection tracking to ask,
    /// `.unsupportedPlatform` on anything but Linux.
    static func lookup(_ channel: any Channel) -> EventLoopFuture<OriginalDestination> {
        #if os(Linux)
        return LinuxLookup.lookup(channel)
        #else
        return channel.eventLoop.makeFailedFuture(OriginalDestinationError(.unsupportedPlatform))
        #endif
    }

    /// ``lookup(_:)`` for synchronous code already on the channel's event loop, such as a
    /// child-channel initializer building its pipeline with `syncOperations`, or `channelActive`.
    ///
    /// NIO has no synchronous `getsockopt` for struct-valued options (`channel.syncOptions` only
    /// reads `ChannelOption`s, and `SocketOption` values are `Int32`). But NIOPosix performs
    /// `unsafeGetSocketOption` at once when called on the event loop, and a completed future runs
    /// its callbacks inline there, so the answer is available before this returns. Off the loop,
    /// or if a future NIO ever defers the call, this throws `.notOnEventLoop` rather than block.
    static func lookupOnEventLoop(_ channel: any Channel) throws -> OriginalDestination {
        guard channel.eventLoop.inEventLoop else {
            throw OriginalDestinationError(.notOnEventLoop)
        }
        let answer = NIOLoopBoundBox<Result<OriginalDestination, any Error>?>(
            nil,
            eventLoop: channel.eventLoop
        )
        lookup(channel).whenComplete { result in answer.value = result }
        guard let result = answer.value else {
            throw OriginalDestinationError(
                .notOnEventLoop,
                detail: "the socket option read did not complete at once"
            )
        }
        return try result.get()
    }
}

/// Why the original destination could not be found. Equality looks at ``code`` only.
struct OriginalDestinationError: Error, Hashable, CustomStringConvertible {
    enum Code: Sendable, Hashable {
        /// The connection was not rewritten by a NAT rule: the client connected to the proxy's own
        /// address and port, so there is no other server it wanted.
        case notRedirected
        /// `getsockopt` is not served because the kernel's connection tracking (`nf_conntrack`) is
        /// not loaded. Any `-t nat` rule loads it.
        case conntrackUnavailable
        /// The channel is not a TCP/IP socket of NIOPosix (or is already closed).
        case notATCPSocket
        /// ``OriginalDestination/lookupOnEventLoop(_:)`` was called off the channel's event loop.
        case notOnEventLoop
        /// Not Linux: `SO_ORIGINAL_DST` does not exist here.
        case unsupportedPlatform
        /// Any other failure of `getsockopt`, with its `errno`.
        case systemError(errno: Int32)
    }

    var code: Code
    /// What went wrong, in words for a log line.
    var message: String
    var file: String
    var line: Int

    init(_ code: Code, detail: String? = nil, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.file = file
        self.line = line
        let base: String
        switch code {
        case .notRedirected:
            base =
                "connection was not redirected, so its original destination is unknown (a client connected "
                + "to the transparent proxy's port directly; transparent mode needs an iptables REDIRECT rule "
                + "in front of it)"
        case .conntrackUnavailable:
            base =
                "the kernel has no connection tracking to ask for the original destination "
                + "(SO_ORIGINAL_DST needs nf_conntrack; an iptables -t nat REDIRECT rule loads it)"
        case .notATCPSocket:
            base = "original destination lookup needs a TCP socket channel accepted by ServerBootstrap"
        case .notOnEventLoop:
            base =
                "the synchronous original destination lookup must run on the channel's event loop; "
                + "use lookup(_:) elsewhere"
        case .unsupportedPlatform:
            base =
                "transparent mode needs Linux (SO_ORIGINAL_DST); on macOS use pf with an rdr rule, but "
                + "looking the destination up in pf's state table (DIOCNATLOOK on /dev/pf) is not implemented yet"
        case .systemError(let errno):
            base = "getsockopt(SO_ORIGINAL_DST) failed with errno \(errno)"
        }
        self.message = detail.map { "\(base); \($0)" } ?? base
    }

    var description: String { message }

    static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    func hash(into hasher: inout Hasher) { hasher.combine(code) }
}

#if os(Linux)
/// The `getsockopt` calls and the reading of their answers. Kept internal and non-inlinable: NIO
/// asks that `unsafeGetSocketOption` with libc struct types is called from such functions (see
/// the note in NIOCore's `SocketOptionProvider.swift`).
enum LinuxLookup {
    /// `SO_ORIGINAL_DST` (`<linux/netfilter_ipv4.h>`) and `IP6T_SO_ORIGINAL_DST`
    /// (`<linux/netfilter_ipv6/ip6_tables.h>`) are both 80; Glibc's module exports neither.
    static let soOriginalDst: SocketOptionName = 80
    static let solIP = SocketOptionLevel(SOL_IP)
    static let solIPv6 = SocketOptionLevel(SOL_IPV6)

    /// Which of the two calls a socket needs. Decided by the socket's *local address*, not its
    /// family: a dual-stack listener on `::` accepts IPv4 clients as IPv4-mapped IPv6
    /// (`::ffff:10.77.0.1`), and for those only the IPv4 call answers (the IPv6 one gives ENOENT).
    enum Family: Equatable {
        case ipv4
        case ipv6
    }

    static func lookup(_ channel: any Channel) -> EventLoopFuture<OriginalDestination> {
        guard let local = channel.localAddress, let localEndpoint = endpoint(of: local),
            let provider = channel as? any SocketOptionProvider
        else {
            return channel.eventLoop.makeFailedFuture(
                OriginalDestinationError(
                    .notATCPSocket,
                    detail: "local address \(channel.localAddress.map { "\($0)" } ?? "none")"
                )
            )
        }
        let answer: EventLoopFuture<OriginalDestination>
        switch localEndpoint.family {
        case .ipv4:
            answer = provider.unsafeGetSocketOption(level: solIP, name: soOriginalDst).map {
                (raw: sockaddr_in) in
                destination(fromIPv4: raw)
            }
        case .ipv6:
            answer = provider.unsafeGetSocketOption(level: solIPv6, name: soOriginalDst).map {
                (raw: sockaddr_in6) in
                destination(fromIPv6: raw)
            }
        }
        return answer.flatMapErrorThrowing { error in
            throw interpret(error, local: localEndpoint.destination)
        }.flatMapThrowing { destination in
            try checkRedirected(destination, local: localEndpoint.destination)
        }
    }

    /// The socket's own address as the kernel would report an unrewritten destination: IPv4-mapped
    /// IPv6 addresses become dotted IPv4. `nil` for Unix domain sockets.
    static func endpoint(
        of address: SocketAddress
    ) -> (
        family: Family, destination: OriginalDestination
    )? {
        switch address {
        case .v4(let v4):
            return (.ipv4, destination(fromIPv4: v4.address))
        case .v6(let v6):
            if let mapped = ipv4Mapped(v6.address.sin6_addr) {
                var v4 = sockaddr_in()
                v4.sin_family = sa_family_t(AF_INET)
                v4.sin_port = v6.address.sin6_port
                v4.sin_addr = mapped
                return (.ipv4, destination(fromIPv4: v4))
            }
            return (.ipv6, destination(fromIPv6: v6.address))
        case .unixDomainSocket:
            return nil
        }
    }

    /// The IPv4 address inside `::ffff:a.b.c.d`, or `nil` for any other IPv6 address.
    static func ipv4Mapped(_ address: in6_addr) -> in_addr? {
        withUnsafeBytes(of: address) { bytes -> in_addr? in
            guard bytes.prefix(10).allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff else {
                return nil
            }
            var v4 = in_addr()
            withUnsafeMutableBytes(of: &v4) { $0.copyBytes(from: bytes[12..<16]) }
            return v4
        }
    }

    static func destination(fromIPv4 raw: sockaddr_in) -> OriginalDestination {
        let address = SocketAddress(raw, host: "")
        return OriginalDestination(host: address.ipAddress ?? "?", port: address.port ?? 0)
    }

    static func destination(fromIPv6 raw: sockaddr_in6) -> OriginalDestination {
        var raw = raw
        // The kernel fills in the scope of link-local addresses; the host string stays plain.
        raw.sin6_scope_id = 0
        let address = SocketAddress(raw, host: "")
        return OriginalDestination(host: address.ipAddress ?? "?", port: address.port ?? 0)
    }

    /// Turns a failed `getsockopt` into a reason. Which errno means what (Linux 6.x,
    /// `net/netfilter/nf_conntrack_proto.c`, `getorigdst` and `ipv6_getorigdst`):
    ///
    /// - `ENOENT`: conntrack has no entry for this connection. That is what a connection that was
    ///   never NATed gets in a network namespace where nothing uses conntrack (no `-t nat` rule);
    ///   it is also the answer to asking the wrong family (IPv6 call on an IPv4 connection).
    /// - `ENOPROTOOPT`: no module registered the option, i.e. `nf_conntrack` is not loaded.
    static func interpret(
        _ error: any Error,
        local: OriginalDestination
    )
        -> OriginalDestinationError
    {
        guard let ioError = error as? IOError else {
            return OriginalDestinationError(.systemError(errno: 0), detail: "\(error)")
        }
        switch ioError.errnoCode {
        case ENOENT:
            return OriginalDestinationError(
                .notRedirected,
                detail: "no connection-tracking entry for the connection to \(local) (ENOENT)"
            )
        case ENOPROTOOPT:
            return OriginalDestinationError(.conntrackUnavailable, detail: "ENOPROTOOPT")
        case ENOTCONN, EBADF, ENOTSOCK:
            return OriginalDestinationError(.notATCPSocket, detail: "\(ioError)")
        default:
            return OriginalDestinationError(
                .systemError(errno: ioError.errnoCode),
                detail: "\(ioError)"
            )
        }
    }

    /// Where conntrack does track the connection but no rule rewrote it (a namespace that has
    /// `-t nat` rules, but not for this client), the "original" destination is the socket's own
    /// address. Forwarding there would connect the proxy to itself, so it counts as not redirected.
    static func checkRedirected(
        _ destination: OriginalDestination,
        local: OriginalDestination
    ) throws -> OriginalDestination {
        if destination == local {
            throw OriginalDestinationError(
                .notRedirected,
                detail: "the kernel reports the proxy's own address \(local) as the destination"
            )
        }
        return destination
    }
}
#endif
