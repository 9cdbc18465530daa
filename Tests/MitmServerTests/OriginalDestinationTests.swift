import NIOCore
import NIOEmbedded
import NIOPosix
import Testing

@testable import MitmServer

#if canImport(Glibc)
import Glibc
#endif

/// The lookup without a network lab: how answers and errors are read, and a real but unredirected
/// loopback connection. None of these needs root.
@Suite struct OriginalDestinationTests {
    @Test func describesIPv6HostsInBrackets() {
        #expect(OriginalDestination(host: "10.77.1.1", port: 80).description == "10.77.1.1:80")
        #expect(OriginalDestination(host: "fd77:1::1", port: 443).description == "[fd77:1::1]:443")
    }

    @Test func errorsAreEqualByCodeAlone() {
        #expect(
            OriginalDestinationError(.notRedirected, detail: "a")
                == OriginalDestinationError(.notRedirected)
        )
        #expect(
            OriginalDestinationError(.notRedirected) != OriginalDestinationError(.conntrackUnavailable)
        )
    }

    @Test func channelWithoutSocketIsRejected() throws {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        #expect(throws: OriginalDestinationError(.notATCPSocket)) {
            try OriginalDestination.lookup(channel).wait()
        }
    }

    #if os(Linux)
    @Test func ipv4MappedLocalAddressAsksTheIPv4Question() throws {
        let mapped = try SocketAddress(ipAddress: "::ffff:10.77.0.1", port: 8080)
        let endpoint = try #require(LinuxLookup.endpoint(of: mapped))
        #expect(endpoint.family == .ipv4)
        #expect(endpoint.destination == OriginalDestination(host: "10.77.0.1", port: 8080))

        let plain = try #require(
            LinuxLookup.endpoint(of: try SocketAddress(ipAddress: "fd77::1", port: 8080))
        )
        #expect(plain.family == .ipv6)
        #expect(plain.destination == OriginalDestination(host: "fd77::1", port: 8080))
    }

    /// Both ways Linux says "this connection was not NATed" end up as `.notRedirected`.
    @Test func kernelAnswersAreInterpreted() throws {
        let local = OriginalDestination(host: "10.77.0.1", port: 8080)
        let enoent = LinuxLookup.interpret(
            IOError(errnoCode: ENOENT, reason: "getsockopt"),
            local: local
        )
        #expect(enoent.code == .notRedirected)
        #expect(enoent.message.contains("ENOENT"))
        let noModule = LinuxLookup.interpret(
            IOError(errnoCode: ENOPROTOOPT, reason: "getsockopt"),
            local: local
        )
        #expect(noModule.code == .conntrackUnavailable)
        let other = LinuxLookup.interpret(
            IOError(errnoCode: EINVAL, reason: "getsockopt"),
            local: local
        )
        #expect(other.code == .systemError(errno: EINVAL))

        #expect(throws: OriginalDestinationError(.notRedirected)) {
            try LinuxLookup.checkRedirected(local, local: local)
        }
        let elsewhere = OriginalDestination(host: "10.77.1.1", port: 80)
        #expect(try LinuxLookup.checkRedirected(elsewhere, local: local) == elsewhere)
    }

    /// A plain loopback connection in the test's own namespace: the kernel either has no
    /// conntrack entry (ENOENT) or reports our own address; both must read as "not redirected".
    @Test func loopbackConnectionIsNotRedirected() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let accepted = group.any().makePromise(of: Result<OriginalDestination, any Error>.self)
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                // The synchronous lookup, as a pipeline-building initializer would use it.
                accepted.succeed(Result { try OriginalDestination.lookupOnEventLoop(channel) })
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        let port = try #require(server.localAddress?.port)
        let client = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port)
            .get()
        let result = try await accepted.futureResult.get()
        try? await client.close()
        try? await server.close()
        #expect(throws: OriginalDestinationError(.notRedirected)) { try result.get() }
        // And off the event loop the synchronous lookup refuses instead of blocking.
        #expect(throws: OriginalDestinationError(.notOnEventLoop)) {
            try OriginalDestination.lookupOnEventLoop(client)
        }
    }
    #endif
}
