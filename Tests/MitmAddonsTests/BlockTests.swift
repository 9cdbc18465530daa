import MitmAddons
import MitmCore
import MitmTestSupport
import Testing

/// The block addon on a client connection, no sockets (as mitmproxy's `test_block.py`).
@Suite struct BlockTests {
    static func client(_ host: String) -> ClientConnection {
        ClientConnection(peername: Address(host: host, port: 54321), sockname: Address(host: "0.0.0.0", port: 8080), proxyMode: "regular")
    }

    /// The error `Block` leaves on a client from `host`.
    static func verdict(_ host: String, global: Bool, `private`: Bool) async throws -> String? {
        var client = Self.client(host)
        try await Block(blockGlobal: global, blockPrivate: `private`).clientConnected(&client, context: AddonContext())
        return client.error
    }

    @Test("loopback clients are always served", arguments: ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"])
    func loopbackAllowed(host: String) async throws {
        #expect(try await Self.verdict(host, global: true, private: true) == nil)
    }

    @Test(
        "block_private refuses private clients",
        arguments: ["10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.1.1", "fd00::1", "fe80::1%eth0", "::ffff:192.168.0.2"]
    )
    func privateRefused(host: String) async throws {
        #expect(try await Self.verdict(host, global: false, private: true) == "Connection killed by block_private.")
        #expect(try await Self.verdict(host, global: true, private: false) == nil, "block_global leaves private clients alone")
    }

    @Test("block_global refuses global clients", arguments: ["1.2.3.4", "8.8.8.8", "2a00:1450::1", "::ffff:9.9.9.9"])
    func globalRefused(host: String) async throws {
        #expect(try await Self.verdict(host, global: true, private: false) == "Connection killed by block_global.")
        #expect(try await Self.verdict(host, global: false, private: true) == nil, "block_private leaves global clients alone")
        #expect(try await Self.verdict(host, global: false, private: false) == nil)
    }

    @Test("shared address space (100.64.0.0/10) is neither private nor global")
    func sharedAddressSpace() async throws {
        #expect(try await Self.verdict("100.64.1.1", global: true, private: true) == nil)
    }

    @Test("defaults are mitmproxy's: block_global on, block_private off")
    func defaults() {
        let block = Block()
        #expect(block.blockGlobal)
        #expect(!block.blockPrivate)
    }

    @Test("the refusal is logged naming the address and the option")
    func logLine() async throws {
        let logs = LogRecorder()
        var client = Self.client("1.2.3.4")
        try await Block().clientConnected(&client, context: AddonContext(logger: logs.logger()))
        #expect(logs.messages.contains("Client connection from 1.2.3.4 killed by block_global option."), "\(logs.messages)")
    }

    @Test("a peer that is not an IP address (a Unix socket) is left alone")
    func notAnAddress() async throws {
        #expect(try await Self.verdict("?", global: true, private: true) == nil)
    }

    @Test("address classes follow Python's ipaddress")
    func classes() throws {
        let documentation = try #require(IPAddressClass("192.0.2.1"))
        #expect(documentation.isPrivate && !documentation.isGlobal)
        let mapped = try #require(IPAddressClass("::ffff:10.1.1.1"))
        #expect(mapped.isIPv4 && mapped.isPrivate)
        #expect(IPAddressClass("example.com") == nil)
    }
}
