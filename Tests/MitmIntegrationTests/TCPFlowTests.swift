import Foundation
import MitmCore
import MitmTestSupport
import NIOCore
import Testing

/// Raw TCP through `CONNECT`: `tcp_hosts`, `rawtcp`, `ignore_hosts` and `allow_hosts`, with
/// loopback TCP origins (plain and TLS) and real clients (NIO sockets, Python's `ssl`).
@Suite("TCP flows", .timeLimit(.minutes(1)))
struct TCPFlowTests {
    /// Opens a tunnel to `target` through the proxy and waits for the 200.
    func tunnel(_ proxy: ProxyHarness, to target: String) async throws -> RawConnection {
        let client = try await RawConnection.connect(port: proxy.port)
        try await client.send("CONNECT \(target) HTTP/1.1\r\nHost: \(target)\r\n\r\n")
        #expect(await client.waitForText("\r\n\r\n"), "no answer to CONNECT: \(client.receivedText)")
        #expect(client.receivedText.hasPrefix("HTTP/1.1 200"), "\(client.receivedText)")
        return client
    }

    /// The text after the CONNECT answer.
    func payload(_ client: RawConnection) -> String {
        let text = client.receivedText
        guard let end = text.range(of: "\r\n\r\n") else { return "" }
        return String(text[end.upperBound...])
    }

    func waitForFlowsToFinish(_ proxy: ProxyHarness) async {
        let deadline = Date().addingTimeInterval(5)
        while proxy.server.openFlowCount > 0 && Date() < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    // MARK: - tcp_hosts

    @Test("tcp_hosts: relayed as a TCP flow, messages recorded, hooks start, message…, end")
    func tcpHostsRelay() async throws {
        let origin = try await TCPOrigin.start()
        defer { Task { await origin.shutdown() } }
        let addon = TCPRecordingAddon()
        try await withProxy(addons: [addon], configure: { $0.tcpHosts = ["^127\\.0\\.0\\.1$"] }) { proxy in
            let client = try await tunnel(proxy, to: origin.address)
            try await client.send("ping")
            #expect(await client.waitForText("ping", timeout: 5))
            try await client.shutdownOutput()
            #expect(await client.waitForClose(), "the origin's FIN should reach the client")
            #expect(await addon.wait(for: .tcpEnd))
            #expect(addon.hookNames == [.tcpStart, .tcpMessage, .tcpMessage, .tcpEnd])
            let flow = try #require(addon.lastFlow)
            #expect(flow.messages.map(\.fromClient) == [true, false])
            #expect(flow.messages.map { String(buffer: $0.content) } == ["ping", "ping"])
            #expect(flow.error == nil)
            #expect(flow.serverConnection.address == Address(host: "127.0.0.1", port: origin.port))
            #expect(flow.serverConnection.peername?.port == origin.port)
            #expect(flow.serverConnection.timestampTCPSetup != nil)
            #expect(flow.clientConnection.peername.host == "127.0.0.1")
            await waitForFlowsToFinish(proxy)
            #expect(proxy.server.openFlowCount == 0)
            await client.close()
        }
    }

    @Test("An addon's edit of a message is what is forwarded")
    func rewrite() async throws {
        let origin = try await TCPOrigin.start()
        defer { Task { await origin.shutdown() } }
        let addon = TCPRecordingAddon { message in
            message.fromClient ? String(buffer: message.content).uppercased() : nil
        }
        try await withProxy(addons: [addon], configure: { $0.tcpHosts = ["127.0.0.1"] }) { proxy in
            let client = try await tunnel(proxy, to: origin.address)
            try await client.send("hello")
            #expect(await client.waitForText("HELLO"), "\(client.receivedText)")
            #expect(origin.receivedBytes == Array("HELLO".utf8))
            await client.close()
            #expect(await addon.wait(for: .tcpEnd))
            #expect(addon.lastFlow?.messages.first.map { String(buffer: $0.content) } == "HELLO")
        }
    }

    @Test("A server that speaks first, after the client's first bytes")
    func greeting() async throws {
        let origin = try await TCPOrigin.start(.greeting("220 ready\r\n"))
        defer { Task { await origin.shutdown() } }
        let addon = TCPRecordingAddon()
        try await withProxy(addons: [addon], configure: { $0.tcpHosts = ["."] }) { proxy in
            let client = try await tunnel(proxy, to: origin.address)
            try await client.send("EHLO x\r\n")
            #expect(await client.waitForText("220 ready\r\nEHLO x\r\n"), "\(client.receivedText)")
            await client.close()
            #expect(await addon.wait(for: .tcpEnd))
        }
    }

    @Test("tcp_hosts: a server that speaks first reaches a client that waits for it (we connect on CONNECT)")
    func serverSpeaksFirst() async throws {
        let origin = try await TCPOrigin.start(.greeting("220 ready\r\n"))
        defer { Task { await origin.shutdown() } }
        let addon = TCPRecordingAddon()
        try await withProxy(addons: [addon], configure: { $0.tcpHosts = ["^127\\.0\\.0\\.1$"] }) { proxy in
            let client = try await tunnel(proxy, to: origin.address)
            #expect(await client.waitForText("220 ready\r\n"), "\(client.receivedText)")
            try await client.send("QUIT\r\n")
            #expect(await client.waitForText("220 ready\r\nQUIT\r\n"), "\(client.receivedText)")
            try await client.shutdownOutput()
            #expect(await client.waitForClose())
            #expect(await addon.wait(for: .tcpEnd))
            let flow = try #require(addon.lastFlow)
            #expect(flow.messages.map(\.fromClient) == [false, true, false])
            #expect(flow.messages.first.map { String(buffer: $0.content) } == "220 ready\r\n")
            await client.close()
        }
    }

    @Test("Shutdown ends a TCP flow still open after the grace period: tcp_end runs before done")
    func shutdownEndsOpenFlows() async throws {
        let origin = try await TCPOrigin.start()
        defer { Task { await origin.shutdown() } }
        let addon = TCPRecordingAddon()
        let proxy = try await ProxyHarness.start(addons: [addon], configure: { $0.tcpHosts = ["."] })
        let client = try await tunnel(proxy, to: origin.address)
        try await client.send("still here")
        #expect(await client.waitForText("still here"))
        await proxy.shutdown(grace: 0.2)
        #expect(addon.hookNames.last == .tcpEnd, "\(addon.hookNames)")
        #expect(await client.waitForClose())
        await client.close()
    }

    // MARK: - rawtcp

    @Test("rawtcp: a protocol that is neither HTTP nor TLS becomes a TCP flow")
    func rawTCPFallback() async throws {
        let origin = try await TCPOrigin.start()
        defer { Task { await origin.shutdown() } }
        let addon = TCPRecordingAddon()
        try await withProxy(addons: [addon]) { proxy in
            let client = try await tunnel(proxy, to: origin.address)
            try await client.send("SSH-2.0-test\r\n")
            #expect(await client.waitForText("SSH-2.0-test\r\n"))
            await client.close()
            #expect(await addon.wait(for: .tcpEnd))
            #expect(addon.lastFlow?.messages.first.map { String(buffer: $0.content) } == "SSH-2.0-test\r\n")
        }
    }

    @Test("rawtcp=false: the bytes go to the HTTP layer, as in mitmproxy, which rejects them; no TCP flow")
    func rawTCPOff() async throws {
        let origin = try await TCPOrigin.start()
        defer { Task { await origin.shutdown() } }
        let addon = TCPRecordingAddon()
        try await withProxy(addons: [addon], configure: { $0.rawTCP = false }) { proxy in
            let client = try await tunnel(proxy, to: origin.address)
            try await client.send("SSH-2.0-test\r\n\r\n")
            #expect(await client.waitForClose())
            #expect(payload(client).hasPrefix("HTTP/1.1 400"), "\(client.receivedText)")
            #expect(origin.receivedBytes.isEmpty)
            #expect(addon.events.isEmpty)
            await client.close()
        }
    }

    // MARK: - Failures

    @Test("A closed port with connection_strategy=lazy: tcp_error names the reason, the client is closed, a log line says why")
    func connectRefused() async throws {
        let closedPort = try await closedPort()
        let addon = TCPRecordingAddon()
        // (Eager, the default, answers the CONNECT itself with 502: see BadInputTests.)
        try await withProxy(addons: [addon], configure: { $0.tcpHosts = ["."]; $0.connectionStrategy = .lazy }) { proxy in
            let client = try await tunnel(proxy, to: "127.0.0.1:\(closedPort)")
            try await client.send("anyone?")
            #expect(await client.waitForClose())
            #expect(await addon.wait(for: .tcpError))
            #expect(addon.hookNames == [.tcpStart, .tcpError])
            let message = "Error connecting to 127.0.0.1:\(closedPort): Connection refused"
            #expect(addon.lastFlow?.error?.message == message)
            #expect(await proxy.logs.wait(forMessageContaining: message))
            await waitForFlowsToFinish(proxy)
            #expect(proxy.server.openFlowCount == 0)
        }
    }

    @Test("A server that resets the connection: tcp_error, the client is closed")
    func serverReset() async throws {
        let origin = try await TCPOrigin.start(.resetAfterFirstRead)
        defer { Task { await origin.shutdown() } }
        let addon = TCPRecordingAddon()
        try await withProxy(addons: [addon], configure: { $0.tcpHosts = ["."] }) { proxy in
            let client = try await tunnel(proxy, to: origin.address)
            try await client.send("boom")
            #expect(await client.waitForClose())
            #expect(await addon.wait(for: .tcpError))
            #expect(addon.lastFlow?.error?.message == "Server connection error: Connection reset by peer")
            #expect(!addon.hookNames.contains(.tcpEnd))
        }
    }

    @Test("A client that resets the connection: tcp_error, the server connection is closed")
    func clientReset() async throws {
        let origin = try await TCPOrigin.start()
        defer { Task { await origin.shutdown() } }
        let addon = TCPRecordingAddon()
        let script = """
            import socket, struct, sys, time
            c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
            c.sendall(f"CONNECT {sys.argv[2]} HTTP/1.1\\r\\n\\r\\n".encode())
            head = b""
            while b"\\r\\n\\r\\n" not in head:
                head += c.recv(1)
            c.sendall(b"bye")
            assert c.recv(3) == b"bye"
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
            """
        try await withProxy(addons: [addon], configure: { $0.tcpHosts = ["."] }) { proxy in
            let result = try await CommandRunner.run("python3", ["-c", script, String(proxy.port), origin.address])
            #expect(result.succeeded, "\(result)")
            #expect(await addon.wait(for: .tcpError))
            #expect(addon.lastFlow?.error?.message == "Client connection error: Connection reset by peer")
            #expect(addon.hookNames == [.tcpStart, .tcpMessage, .tcpMessage, .tcpError])
        }
    }

    // MARK: - ignore_hosts and allow_hosts

    @Test("show_ignored_hosts: an ignored connection is relayed untouched but recorded as a TCP flow")
    func showIgnoredHosts() async throws {
        let origin = try await TCPOrigin.start()
        defer { Task { await origin.shutdown() } }
        let addon = TCPRecordingAddon()
        try await withProxy(addons: [addon], configure: { $0.ignoreHosts = ["."]; $0.showIgnoredHosts = true }) { proxy in
            let client = try await tunnel(proxy, to: origin.address)
            try await client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(await client.waitForText("\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"), "echoed, not parsed: \(client.receivedText)")
            await client.close()
            #expect(await addon.wait(for: .tcpEnd))
            #expect(addon.lastFlow?.messages.first.map { String(buffer: $0.content) } == "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        }
    }

    @Test("ignore_hosts: passed through byte for byte, no flow, even for bytes rawtcp would take")
    func ignorePlain() async throws {
        let origin = try await TCPOrigin.start()
        defer { Task { await origin.shutdown() } }
        let addon = TCPRecordingAddon()
        try await withProxy(addons: [addon], configure: { $0.ignoreHosts = [".*"] }) { proxy in
            let client = try await tunnel(proxy, to: origin.address)
            let bytes: [UInt8] = [0, 1, 2, 255, 0x16, 3, 1]
            try await client.send(bytes)
            #expect(await client.waitForText(String(decoding: bytes, as: UTF8.self)))
            await client.close()
            try await Task.sleep(for: .milliseconds(100))
            #expect(origin.receivedBytes == bytes)
            #expect(addon.events.isEmpty)
        }
    }
}

/// TLS inside TCP flows and ignored TLS, with Python's `ssl` as the client (CONNECT, then TLS).
@Suite("TCP flows with TLS", .timeLimit(.minutes(1)))
struct TCPFlowTLSTests {
    /// Connects through the proxy, verifies the server certificate against `cafile` for
    /// `localhost`, sends `hello tls`, prints what comes back.
    static let script = #"""
        import socket, ssl, sys
        proxy_port, target, cafile = int(sys.argv[1]), sys.argv[2], sys.argv[3]
        s = socket.create_connection(("127.0.0.1", proxy_port))
        if target != "-":  # "-": no CONNECT (reverse mode)
            s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(1)
            assert head.startswith(b"HTTP/1.1 200"), head
        context = ssl.create_default_context(cafile=cafile)
        tls = context.wrap_socket(s, server_hostname="localhost")
        tls.sendall(b"hello tls")
        got = b""
        while len(got) < 9:
            chunk = tls.recv(100)
            if not chunk:
                break
            got += chunk
        print(got.decode())
        tls.close()
        """#

    func run(_ proxy: ProxyHarness, target: String, cafile: String) async throws -> CommandResult {
        try await CommandRunner.run("python3", ["-c", Self.script, String(proxy.port), target, cafile], timeout: 20)
    }

    @Test("tcp_hosts with TLS: intercepted on both sides (the client sees our CA), messages are plaintext")
    func tlsInsideTCPFlow() async throws {
        let origin = try await TCPOrigin.start(tls: true)
        defer { Task { await origin.shutdown() } }
        let addon = TCPRecordingAddon()
        try await withProxy(addons: [addon], configure: { $0.tcpHosts = ["^127\\.0\\.0\\.1$"]; $0.sslInsecure = true }) { proxy in
            let result = try await run(proxy, target: origin.address, cafile: proxy.caCertificatePath)
            #expect(result.succeeded, "\(result)")
            #expect(result.output.contains("hello tls"), "\(result)")
            #expect(await addon.wait(for: .tcpEnd))
            let flow = try #require(addon.lastFlow)
            #expect(flow.messages.map { String(buffer: $0.content) } == ["hello tls", "hello tls"])
            #expect(flow.clientConnection.tls?.sni == "localhost")
            #expect(flow.serverConnection.tls != nil)
            #expect(flow.serverConnection.usesTLS)
            #expect(origin.receivedBytes == Array("hello tls".utf8))
            #expect(origin.tlsHandshakes == 1, "one TLS connection: the certificate's and the relay's are the same")
        }
    }

    @Test("rawtcp inside intercepted TLS: a non-HTTP protocol without ALPN becomes a TCP flow")
    func rawTCPInsideTLS() async throws {
        let origin = try await TCPOrigin.start(tls: true)
        defer { Task { await origin.shutdown() } }
        let addon = TCPRecordingAddon()
        try await withProxy(addons: [addon], configure: { $0.sslInsecure = true }) { proxy in
            let result = try await run(proxy, target: origin.address, cafile: proxy.caCertificatePath)
            #expect(result.output.contains("hello tls"), "\(result)")
            #expect(await addon.wait(for: .tcpEnd))
            #expect(addon.lastFlow?.messages.first.map { String(buffer: $0.content) } == "hello tls")
        }
    }

    @Test("ignore_hosts with TLS: the client sees the origin's own certificate, no flow, no TLS hooks")
    func ignoredTLS() async throws {
        let origin = try await TCPOrigin.start(tls: true)
        defer { Task { await origin.shutdown() } }
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let originCA = try TestPKI.shared.writeCACertificate(to: scratch.file("origin-ca.pem"))
        let recording = RecordingAddon()
        let addon = TCPRecordingAddon()
        // By the SNI (localhost, with the server's port), not the address.
        try await withProxy(addons: [addon, recording], configure: { $0.ignoreHosts = ["^localhost:\\d+$"] }) { proxy in
            let result = try await run(proxy, target: origin.address, cafile: originCA)
            #expect(result.succeeded, "\(result)")
            #expect(result.output.contains("hello tls"), "\(result)")
            try await Task.sleep(for: .milliseconds(100))
            #expect(addon.events.isEmpty)
            #expect(!recording.hookNames.contains(.tlsClientHello))
        }
    }

    @Test("ignore_hosts in reverse mode: the reverse target is matched, TLS passes through untouched")
    func ignoredInReverseMode() async throws {
        let origin = try await TCPOrigin.start(tls: true)
        defer { Task { await origin.shutdown() } }
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let originCA = try TestPKI.shared.writeCACertificate(to: scratch.file("origin-ca.pem"))
        let mode = ProxyMode.reverse(.init(scheme: "https", address: Address(host: "127.0.0.1", port: origin.port)))
        try await withProxy(configure: { $0.modes = [ProxyModeSpec(mode)]; $0.ignoreHosts = ["^127\\.0\\.0\\.1:\(origin.port)$"] }) { proxy in
            let result = try await run(proxy, target: "-", cafile: originCA)
            #expect(result.succeeded && result.output.contains("hello tls"), "not passed through: \(result)")
        }
    }

    @Test("allow_hosts: hosts not allowed are passed through, allowed ones intercepted")
    func allowHosts() async throws {
        let origin = try await TCPOrigin.start(tls: true)
        defer { Task { await origin.shutdown() } }
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let originCA = try TestPKI.shared.writeCACertificate(to: scratch.file("origin-ca.pem"))
        try await withProxy(configure: { $0.allowHosts = ["example\\.com"] }) { proxy in
            let result = try await run(proxy, target: origin.address, cafile: originCA)
            #expect(result.succeeded && result.output.contains("hello tls"), "not passed through: \(result)")
        }
        try await withProxy(configure: { $0.allowHosts = ["LOCALHOST"]; $0.sslInsecure = true }) { proxy in
            let result = try await run(proxy, target: origin.address, cafile: proxy.caCertificatePath)
            #expect(result.succeeded && result.output.contains("hello tls"), "not intercepted: \(result)")
        }
    }
}
