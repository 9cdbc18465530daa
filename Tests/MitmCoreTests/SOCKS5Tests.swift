import NIOCore
import Testing

@testable import MitmCore
import MitmTestSupport

// MARK: - Drivers

/// Everything a server handshake did over one run, so whole runs can be compared.
struct ServerTranscript: Equatable {
    var sent: [UInt8] = []
    var credentials: [String] = []
    var targets: [SOCKS5.Target] = []
    /// Leftover handed over at `.established` plus whatever arrived after it.
    var applicationData: [UInt8]? = nil
    var error: SOCKS5.HandshakeError? = nil
    var closed = false
}

/// Feeds `chunks` to a server handshake, answering credential checks with `acceptCredentials`.
/// With `connectImmediately` the connect is answered as soon as it is asked for, otherwise only
/// after every chunk has arrived (a slow upstream), so pipelined bytes end up in the leftover.
func runServer(
    _ chunks: [[UInt8]],
    requireAuthentication: Bool = false,
    acceptCredentials: Bool = true,
    connectImmediately: Bool = false,
    connectResult: SOCKS5ServerHandshake.ConnectFailure? = nil
) -> ServerTranscript {
    var machine = SOCKS5ServerHandshake(configuration: .init(requireAuthentication: requireAuthentication))
    var transcript = ServerTranscript()
    var pendingConnect = false

    func handle(_ actions: [SOCKS5ServerHandshake.Action]) {
        var queue = actions
        while !queue.isEmpty {
            let action = queue.removeFirst()
            switch action {
            case .send(let bytes): transcript.sent += bytes
            case .verifyCredentials(let user, let password):
                transcript.credentials.append("\(user):\(password)")
                queue += machine.credentialsChecked(ok: acceptCredentials)
            case .connect(let target):
                transcript.targets.append(target)
                if connectImmediately {
                    queue += answerConnect()
                } else {
                    pendingConnect = true
                }
            case .established(let leftover): transcript.applicationData = Array(leftover.readableBytesView)
            case .fail(let error):
                transcript.error = error
                transcript.closed = true
            case .close: transcript.closed = true
            }
        }
    }
    func answerConnect() -> [SOCKS5ServerHandshake.Action] {
        if let connectResult { return machine.connectFailed(connectResult) }
        return machine.connectSucceeded()
    }

    for chunk in chunks {
        if transcript.applicationData != nil {
            transcript.applicationData! += chunk  // relayed by the caller from now on
            #expect(machine.receive(ByteBuffer(bytes: chunk)) == [])
        } else {
            handle(machine.receive(ByteBuffer(bytes: chunk)))
        }
    }
    if pendingConnect { handle(answerConnect()) }
    return transcript
}

struct ClientTranscript: Equatable {
    var sent: [UInt8] = []
    var leftover: [UInt8]? = nil
    var error: SOCKS5.HandshakeError? = nil
}

func runClient(_ machine: SOCKS5ClientHandshake, replies chunks: [[UInt8]]) -> ClientTranscript {
    var machine = machine
    var transcript = ClientTranscript()
    func handle(_ actions: [SOCKS5ClientHandshake.Action]) {
        for action in actions {
            switch action {
            case .send(let bytes): transcript.sent += bytes
            case .connected(let leftover): transcript.leftover = Array(leftover.readableBytesView)
            case .fail(let error): transcript.error = error
            }
        }
    }
    handle(machine.start())
    for chunk in chunks {
        if transcript.leftover != nil {
            transcript.leftover! += chunk
        } else {
            handle(machine.receive(ByteBuffer(bytes: chunk)))
        }
    }
    return transcript
}

/// Every way to cut `bytes` in two, plus byte-by-byte.
func splits(_ bytes: [UInt8]) -> [[[UInt8]]] {
    var result = (0...bytes.count).map { [Array(bytes[..<$0]), Array(bytes[$0...])] }
    result.append(bytes.map { [$0] })
    return result
}

// MARK: - Server

@Suite("SOCKS5 server handshake")
struct SOCKS5ServerTests {
    static let greetingNoAuth: [UInt8] = [5, 1, 0]
    static let greetingAuth: [UInt8] = [5, 2, 0, 2]
    static let auth: [UInt8] = [1, 5] + Array("alice".utf8) + [6] + Array("s3:cr3".utf8)
    static let requestDomain: [UInt8] = [5, 1, 0, 3, 11] + Array("example.com".utf8) + [0x01, 0xBB]
    static let appData: [UInt8] = Array("GET / HTTP/1.1\r\n\r\n".utf8)

    @Test("No auth, domain name: every split point gives the same result")
    func dripFeedNoAuth() {
        let stream = Self.greetingNoAuth + Self.requestDomain + Self.appData
        let expected = ServerTranscript(
            sent: [5, 0] + [5, 0, 0, 1, 0, 0, 0, 0, 0, 0],
            targets: [SOCKS5.Target(host: "example.com", port: 443, kind: .domainName)],
            applicationData: Self.appData
        )
        for chunks in splits(stream) {
            #expect(runServer(chunks) == expected, "\(chunks.map(\.count))")
            #expect(runServer(chunks, connectImmediately: true) == expected, "\(chunks.map(\.count))")
        }
    }

    @Test("Username/password: every split point gives the same result")
    func dripFeedAuth() {
        let stream = Self.greetingAuth + Self.auth + Self.requestDomain + Self.appData
        let expected = ServerTranscript(
            sent: [5, 2] + [1, 0] + [5, 0, 0, 1, 0, 0, 0, 0, 0, 0],
            credentials: ["alice:s3:cr3"],
            targets: [SOCKS5.Target(host: "example.com", port: 443, kind: .domainName)],
            applicationData: Self.appData
        )
        for chunks in splits(stream) {
            #expect(runServer(chunks, requireAuthentication: true) == expected, "\(chunks.map(\.count))")
            #expect(
                runServer(chunks, requireAuthentication: true, connectImmediately: true) == expected,
                "\(chunks.map(\.count))"
            )
        }
    }

    @Test("IPv4 and IPv6 targets")
    func addressTypes() {
        let v4 = runServer([[5, 1, 0, 5, 1, 0, 1, 93, 184, 216, 34, 0, 80]])
        #expect(v4.targets == [SOCKS5.Target(host: "93.184.216.34", port: 80, kind: .ipv4)])
        let v6Bytes: [UInt8] = [0x20, 0x01, 0x0D, 0xB8] + [UInt8](repeating: 0, count: 11) + [1]
        let v6 = runServer([[5, 1, 0, 5, 1, 0, 4] + v6Bytes + [0x1F, 0x90]])
        #expect(v6.targets == [SOCKS5.Target(host: "2001:db8::1", port: 8080, kind: .ipv6)])
        #expect(v6.targets.first?.description == "[2001:db8::1]:8080")
    }

    @Test("An HTTP request on the SOCKS port gets a readable error and no reply")
    func httpClient() {
        let transcript = runServer([Array("GET / HTTP/1.1\r\n".utf8)])
        #expect(transcript.error == .invalidVersion(0x47))
        #expect(transcript.sent == [])
        #expect(
            transcript.error?.description
                == "Invalid SOCKS version 0x47: expected 5 (is this an HTTP client talking to a SOCKS5 proxy?)"
        )
        #expect(
            runServer([[4, 1, 0, 80]]).error?.description
                == "Invalid SOCKS version 0x04: expected 5 (SOCKS4 is not supported)"
        )
        #expect(
            runServer([[0x16, 3, 1]]).error?.description
                == "Invalid SOCKS version 0x16: expected 5 (is this a TLS client talking to a SOCKS5 proxy?)"
        )
    }

    @Test("Greeting errors answer 0xFF")
    func greetingErrors() {
        let none = runServer([[5, 0]])
        #expect(none.sent == [5, 0xFF])
        #expect(none.error == .noMethodsOffered)
        let noAuthOnly = runServer([[5, 1, 0]], requireAuthentication: true)
        #expect(noAuthOnly.sent == [5, 0xFF])
        #expect(
            noAuthOnly.error?.description
                == "SOCKS5 client does not support username/password authentication (offered methods: 0x00)"
        )
        let authOnly = runServer([[5, 1, 2]])
        #expect(authOnly.sent == [5, 0xFF])
        #expect(
            authOnly.error?.description == "SOCKS5 client does not support no authentication (offered methods: 0x02)"
        )
    }

    @Test("Authentication failures answer 0x01 0x01 and close")
    func authErrors() {
        let refused = runServer(
            [Self.greetingAuth + Self.auth + Self.requestDomain],
            requireAuthentication: true,
            acceptCredentials: false
        )
        #expect(refused.sent == [5, 2, 1, 1])
        #expect(refused.targets == [])
        #expect(refused.error?.description == "SOCKS5 authentication failed for user \"alice\"")
        let badVersion = runServer([Self.greetingAuth + [5, 1, 0, 3]], requireAuthentication: true)
        #expect(badVersion.sent == [5, 2, 1, 1])
        #expect(
            badVersion.error?.description == "Invalid SOCKS5 username/password subnegotiation version 0x05: expected 1"
        )
        let empty = runServer([Self.greetingAuth + [1, 0, 0]], requireAuthentication: true)
        #expect(empty.error == .emptyCredentials)
        #expect(empty.credentials == [])
    }

    @Test("Request errors send the RFC 1928 reply code")
    func requestErrors() {
        let bind = runServer([[5, 1, 0, 5, 2, 0, 1, 1, 2, 3, 4, 0, 80]])
        #expect(bind.sent == [5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0])
        #expect(bind.error?.description == "Unsupported SOCKS5 command BIND (0x02): only CONNECT is supported")
        let udp = runServer([[5, 1, 0, 5, 3, 0, 1, 1, 2, 3, 4, 0, 80]])
        #expect(udp.sent == [5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0])
        #expect(udp.error == .unsupportedCommand(3))
        let atyp = runServer([[5, 1, 0, 5, 1, 0, 9]])
        #expect(atyp.sent == [5, 0, 5, 8, 0, 1, 0, 0, 0, 0, 0, 0])
        #expect(atyp.error?.description == "Unsupported SOCKS5 address type 0x09")
        let emptyName = runServer([[5, 1, 0, 5, 1, 0, 3, 0, 0, 80]])
        #expect(emptyName.error == .emptyDomainName)
        #expect(emptyName.sent == [5, 0, 5, 1, 0, 1, 0, 0, 0, 0, 0, 0])
    }

    @Test(
        "Connect failures map to reply codes",
        arguments: [
            (SOCKS5ServerHandshake.ConnectFailure.connectionRefused, UInt8(0x05)),
            (.hostUnreachable, 0x04), (.networkUnreachable, 0x03), (.timedOut, 0x06),
            (.notAllowed, 0x02), (.other, 0x01),
        ]
    )
    func connectFailures(failure: SOCKS5ServerHandshake.ConnectFailure, code: UInt8) {
        let transcript = runServer([Self.greetingNoAuth + Self.requestDomain], connectResult: failure)
        #expect(transcript.sent == [5, 0, 5, code, 0, 1, 0, 0, 0, 0, 0, 0])
        #expect(transcript.closed)
        #expect(transcript.applicationData == nil)
    }

    @Test("The bound address is reported when given")
    func boundAddress() {
        var machine = SOCKS5ServerHandshake()
        _ = machine.receive(ByteBuffer(bytes: Self.greetingNoAuth + Self.requestDomain))
        let actions = machine.connectSucceeded(boundAddress: SOCKS5.Target(host: "10.0.0.1", port: 4242, kind: .ipv4))
        #expect(actions == [.send([5, 0, 0, 1, 10, 0, 0, 1, 0x10, 0x92]), .established(leftover: ByteBuffer())])
        #expect(machine.isFinished)
        #expect(machine.connectSucceeded() == [])
    }

    @Test("Answers out of turn are ignored")
    func outOfTurn() {
        var machine = SOCKS5ServerHandshake()
        #expect(machine.credentialsChecked(ok: true) == [])
        #expect(machine.connectSucceeded() == [])
        #expect(machine.connectFailed(.other) == [])
    }

    /// Streams PySocks 1.7.1 sent to a scripted fake proxy (`scripts/capture_pysocks.py`,
    /// `rdns=True`), including application data written right after `connect()`.
    @Test("Streams captured from PySocks are accepted, split anywhere")
    func pysocks() {
        let cases: [(String, Bool, String, SOCKS5.Target, [UInt8])] = [
            (
                PySocksCaptures.noAuthDomain, false, "",
                SOCKS5.Target(host: "example.com", port: 443, kind: .domainName), []
            ),
            (
                PySocksCaptures.authIPv4, true, "alice:s3cr:et",
                SOCKS5.Target(host: "93.184.216.34", port: 80, kind: .ipv4), []
            ),
            (
                PySocksCaptures.noAuthIPv6Pipelined, false, "",
                SOCKS5.Target(host: "2001:db8::1", port: 8080, kind: .ipv6),
                Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
            ),
            (
                PySocksCaptures.authDomainUTF8, true, "jürgen:päss",
                SOCKS5.Target(host: "xn--bcher-kva.example", port: 8443, kind: .domainName), [0x16, 0x03, 0x01]
            ),
        ]
        for (hex, auth, credentials, target, appData) in cases {
            for chunks in splits(bytes(hex: hex)) {
                let transcript = runServer(chunks, requireAuthentication: auth)
                #expect(transcript.error == nil)
                #expect(transcript.credentials == (auth ? [credentials] : []))
                #expect(transcript.targets == [target])
                #expect(transcript.applicationData == appData)
            }
        }
    }
}

enum PySocksCaptures {
    static let noAuthDomain = "050100050100030b6578616d706c652e636f6d01bb"
    static let authIPv4 = "050200020105616c69636507733363723a6574050100015db8d8220050"
    static let noAuthIPv6Pipelined =
        "0501000501000420010db80000000000000000000000011f90474554202f20485454502f312e310d0a486f73743a20780d0a0d0a"
    static let authDomainUTF8 =
        "0502000201076ac3bc7267656e0570c3a473730501000315786e2d2d62636865722d6b76612e6578616d706c6520fb160301"
}

// MARK: - Client

@Suite("SOCKS5 client handshake")
struct SOCKS5ClientTests {
    static let success: [UInt8] = [5, 0, 0, 1, 127, 0, 0, 1, 0x30, 0x39]

    @Test("With credentials: every split point of the proxy's replies gives the same result")
    func dripFeedAuth() {
        let machine = SOCKS5ClientHandshake(host: "example.com", port: 443, username: "alice", password: "s3:cr3")
        let replies: [UInt8] = [5, 2, 1, 0] + Self.success + [0xAA, 0xBB]
        let expected = ClientTranscript(
            sent: [5, 2, 0, 2] + [1, 5] + Array("alice".utf8) + [6] + Array("s3:cr3".utf8)
                + [5, 1, 0, 3, 11] + Array("example.com".utf8) + [0x01, 0xBB],
            leftover: [0xAA, 0xBB]
        )
        for chunks in splits(replies) {
            #expect(runClient(machine, replies: chunks) == expected, "\(chunks.map(\.count))")
        }
    }

    @Test("Without credentials; a domain-name bound address is skipped correctly")
    func dripFeedNoAuth() {
        let machine = SOCKS5ClientHandshake(host: "10.1.2.3", port: 80)
        let replies: [UInt8] = [5, 0] + [5, 0, 0, 3, 4] + Array("host".utf8) + [0, 1] + [0x42]
        let expected = ClientTranscript(sent: [5, 1, 0] + [5, 1, 0, 1, 10, 1, 2, 3, 0, 80], leftover: [0x42])
        for chunks in splits(replies) {
            #expect(runClient(machine, replies: chunks) == expected)
        }
    }

    @Test("Our client's bytes equal what PySocks sends for the same target")
    func matchesPySocks() {
        let noAuth = runClient(SOCKS5ClientHandshake(host: "example.com", port: 443), replies: [[5, 0], Self.success])
        #expect(noAuth.sent == bytes(hex: PySocksCaptures.noAuthDomain))
        let auth = runClient(
            SOCKS5ClientHandshake(host: "93.184.216.34", port: 80, username: "alice", password: "s3cr:et"),
            replies: [[5, 2], [1, 0], Self.success]
        )
        #expect(auth.sent == bytes(hex: PySocksCaptures.authIPv4))
        let v6 = runClient(SOCKS5ClientHandshake(host: "[2001:DB8::1]", port: 8080), replies: [[5, 0], Self.success])
        #expect(
            v6.sent + Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8) == bytes(hex: PySocksCaptures.noAuthIPv6Pipelined)
        )
    }

    @Test("Failures name the problem")
    func failures() {
        let target = SOCKS5ClientHandshake(host: "example.com", port: 443)
        #expect(runClient(target, replies: [[5, 0xFF]]).error?.description == "SOCKS5 proxy requires authentication")
        #expect(runClient(target, replies: [[5, 2]]).error?.description == "SOCKS5 proxy requires authentication")
        let withCredentials = SOCKS5ClientHandshake(host: "example.com", port: 443, username: "alice", password: "x")
        #expect(
            runClient(withCredentials, replies: [[5, 2, 1, 1]]).error?.description
                == "SOCKS5 authentication failed for user \"alice\""
        )
        #expect(
            runClient(withCredentials, replies: [[5, 0xFF]]).error?.description
                == "SOCKS5 proxy accepts none of the offered authentication methods"
        )
        #expect(
            runClient(target, replies: [[5, 0, 5, 5]]).error?.description
                == "SOCKS5 proxy refused the connection: connection refused (reply 0x05)"
        )
        #expect(
            runClient(target, replies: [[5, 0, 5, 4, 0, 1]]).error?.description
                == "SOCKS5 proxy refused the connection: host unreachable (reply 0x04)"
        )
        #expect(runClient(target, replies: [[5, 0, 5, 0x7F]]).error == .connectRefused(.init(rawValue: 0x7F)))
        #expect(runClient(target, replies: [Array("HTTP/1.1 400".utf8)]).error == .invalidVersion(0x48))
        #expect(runClient(target, replies: [[5, 0x80]]).error == .unexpectedMethod(0x80))
    }

    @Test("Targets and credentials that cannot be encoded fail at start")
    func unencodable() {
        var long = SOCKS5ClientHandshake(host: String(repeating: "a", count: 256), port: 1)
        #expect(long.start() == [.fail(.unencodable("domain name must be 1 to 255 bytes, got 256"))])
        var emptyPassword = SOCKS5ClientHandshake(host: "a", port: 1, username: "u", password: "")
        #expect(emptyPassword.start() == [.fail(.unencodable("username and password must be 1 to 255 bytes"))])
    }

    @Test(
        "Client and server agree, back to back",
        arguments: ["example.com", "192.0.2.7", "2001:db8::42", "::ffff:1.2.3.4"]
    )
    func backToBack(host: String) {
        var client = SOCKS5ClientHandshake(host: host, port: 8443, username: "bob", password: "pw")
        var server = SOCKS5ServerHandshake(configuration: .init(requireAuthentication: true))
        var toServer: [UInt8] = []
        var toClient: [UInt8] = []
        var connectedTo: SOCKS5.Target?
        var clientDone = false
        for case .send(let bytes) in client.start() { toServer += bytes }
        for _ in 0..<10 where !clientDone {
            var serverActions = server.receive(ByteBuffer(bytes: toServer))
            toServer = []
            while !serverActions.isEmpty {
                switch serverActions.removeFirst() {
                case .send(let bytes): toClient += bytes
                case .verifyCredentials(let user, let password):
                    serverActions += server.credentialsChecked(ok: user == "bob" && password == "pw")
                case .connect(let target):
                    connectedTo = target
                    serverActions += server.connectSucceeded()
                case .established, .fail, .close: break
                }
            }
            for action in client.receive(ByteBuffer(bytes: toClient)) {
                switch action {
                case .send(let bytes): toServer += bytes
                case .connected: clientDone = true
                case .fail(let error): Issue.record("client failed: \(error)")
                }
            }
            toClient = []
        }
        #expect(clientDone)
        #expect(connectedTo == client.target)
        #expect(connectedTo?.port == 8443)
    }
}

// MARK: - Addresses and robustness

@Suite("SOCKS5: addresses and hostile input")
struct SOCKS5RobustnessTests {
    @Test(
        "IPv6 text round-trips in RFC 5952 form",
        arguments: [
            ("2001:db8::1", "2001:db8::1"), ("::", "::"), ("::1", "::1"), ("1::", "1::"),
            ("2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1"), ("1:0:0:2:0:0:0:3", "1:0:0:2::3"),
            ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"), ("1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"),
            ("::ffff:192.0.2.1", "::ffff:192.0.2.1"), ("fe80::1:2", "fe80::1:2"),
        ]
    )
    func ipv6(input: String, canonical: String) throws {
        let parsed = try #require(IPAddressText.parseIPv6(input))
        #expect(IPAddressText.formatIPv6(parsed) == canonical)
    }

    @Test(
        "Not IPv6",
        arguments: [
            "1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", ":", "example.com", "1:2:3:4:5:6:7::8", "g::1", "", "1.2.3.4",
        ]
    )
    func notIPv6(text: String) {
        #expect(IPAddressText.parseIPv6(text) == nil)
    }

    @Test("Not IPv4", arguments: ["1.2.3", "1.2.3.256", "01.2.3.4", "1.2.3.4.5", "", "a.b.c.d", "1..2.3", "::1"])
    func notIPv4(text: String) {
        #expect(IPAddressText.parseIPv4(text) == nil)
    }

    @Test("Random bytes in random chunks never trap (SplitMix64, fixed seed)")
    func fuzz() {
        var generator = SplitMix64(seed: 0x50C5_5EED)
        let prefixes: [[UInt8]] = [[], [5], [5, 1, 0], [5, 2, 0, 2], [5, 1, 0, 5, 1, 0], [5, 2, 0, 2, 1]]
        for iteration in 0..<3000 {
            let prefix = prefixes[iteration % prefixes.count]
            let length = Int(generator.next() % 300)
            var stream = prefix + (0..<length).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            if iteration % 3 == 0, !stream.isEmpty {
                // Bias towards small values, which hit the interesting branches more often.
                for index in stream.indices where generator.next() % 2 == 0 { stream[index] %= 6 }
            }
            var chunks: [[UInt8]] = []
            var rest = stream[...]
            while !rest.isEmpty {
                let size = Int(generator.next() % 20) + 1
                chunks.append(Array(rest.prefix(size)))
                rest = rest.dropFirst(size)
            }
            let accept = generator.next() % 2 == 0
            let transcript = runServer(chunks, requireAuthentication: iteration % 2 == 1, acceptCredentials: accept)
            // Whatever happened, the server sent at most greeting + auth + request replies.
            #expect(transcript.sent.count <= 2 + 2 + 10 + 18)
            _ = runClient(
                SOCKS5ClientHandshake(host: "example.com", port: 1, username: "u", password: "p"),
                replies: chunks
            )
            _ = runClient(SOCKS5ClientHandshake(host: "::1", port: 1), replies: chunks)
        }
    }
}
