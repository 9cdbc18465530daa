import Foundation
import MitmCore
import MitmTestSupport
import NIOCore
import Testing

/// TCP flows in the other modes that tunnel: through an upstream proxy, and behind a SOCKS5 handshake.
@Suite("TCP flows in upstream and SOCKS5 mode", .timeLimit(.minutes(1)))
struct TCPFlowModesTests {
    @Test("Upstream mode: the TCP flow's server connection goes through the upstream proxy")
    func upstream() async throws {
        let origin = try await TCPOrigin.start()
        defer { Task { await origin.shutdown() } }
        let upstreamFlows = TCPRecordingAddon()
        let ourFlows = TCPRecordingAddon()
        try await withProxy(addons: [upstreamFlows]) { upstream in
            let mode = ProxyMode.upstream(.init(scheme: .http, address: Address(host: "127.0.0.1", port: upstream.port)))
            try await withProxy(addons: [ourFlows], configure: { $0.modes = [ProxyModeSpec(mode)]; $0.tcpHosts = ["."] }) { proxy in
                let client = try await RawConnection.connect(port: proxy.port)
                try await client.send("CONNECT \(origin.address) HTTP/1.1\r\n\r\n")
                #expect(await client.waitForText("\r\n\r\n"))
                try await client.send("via upstream")
                #expect(await client.waitForText("via upstream"), "\(client.receivedText)")
                await client.close()
                #expect(await ourFlows.wait(for: .tcpEnd))
                // The upstream proxy saw the bytes too (as a rawtcp flow of its own).
                #expect(await upstreamFlows.wait(for: .tcpEnd))
                #expect(upstreamFlows.lastFlow?.messages.first.map { String(buffer: $0.content) } == "via upstream")
                #expect(ourFlows.lastFlow?.serverConnection.peername?.port == upstream.port)
            }
        }
    }

    @Test("SOCKS5 mode: a protocol that is not HTTP becomes a TCP flow (rawtcp)")
    func socks5() async throws {
        let origin = try await TCPOrigin.start()
        defer { Task { await origin.shutdown() } }
        let addon = TCPRecordingAddon()
        let script = """
            import socket, sys
            c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
            c.sendall(b"\\x05\\x01\\x00")
            assert c.recv(2) == b"\\x05\\x00"
            c.sendall(b"\\x05\\x01\\x00\\x01" + socket.inet_aton("127.0.0.1") + int(sys.argv[2]).to_bytes(2, "big"))
            reply = b""
            while len(reply) < 10:
                reply += c.recv(10 - len(reply))
            assert reply[1] == 0, reply
            c.sendall(b"SSH-2.0-socks\\r\\n")
            got = b""
            while len(got) < 15:
                got += c.recv(100)
            print(got.decode().strip())
            c.close()
            """
        try await withProxy(addons: [addon], configure: { $0.modes = [ProxyModeSpec(.socks5)] }) { proxy in
            let result = try await CommandRunner.run("python3", ["-c", script, String(proxy.port), String(origin.port)])
            #expect(result.succeeded && result.output.contains("SSH-2.0-socks"), "\(result)")
            #expect(await addon.wait(for: .tcpEnd))
            #expect(addon.lastFlow?.messages.first.map { String(buffer: $0.content) } == "SSH-2.0-socks\r\n")
            #expect(addon.lastFlow?.clientConnection.proxyMode == "socks5")
        }
    }
}
