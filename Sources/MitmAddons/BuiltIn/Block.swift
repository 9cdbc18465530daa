import Foundation
import Logging
import MitmCore

/// mitmproxy's `block` addon (`block_global`, `block_private`): refuses client connections by the
/// client's address, so a proxy listening on every interface is not an open proxy for the internet.
///
/// A client on a loopback address is always served. With `block_private`, a client on a private
/// address (RFC 1918, unique local `fc00::/7`, link-local, and the other special-purpose ranges
/// Python's `ipaddress` calls private) is refused; with `block_global` (the default), a client on a
/// globally routable address is. Refusing sets `client.error` in `client_connected`, and the server
/// closes the connection without reading from it.
public struct Block: Addon {
    public var hooks: Set<HookName>? { [.clientConnected] }
    public let name = "block"
    /// `block_global`: refuse clients on globally routable addresses.
    public let blockGlobal: Bool
    /// `block_private`: refuse clients on private addresses.
    public let blockPrivate: Bool

    public init(blockGlobal: Bool = true, blockPrivate: Bool = false) {
        self.blockGlobal = blockGlobal
        self.blockPrivate = blockPrivate
    }

    public func clientConnected(_ client: inout ClientConnection, context: AddonContext) async throws {
        let host = client.peername.host
        guard let address = IPAddressClass(host) else { return }
        if address.isLoopback { return }
        if blockPrivate && address.isPrivate {
            context.logger.warning("Client connection from \(host) killed by block_private option.")
            client.error = "Connection killed by block_private."
        }
        if blockGlobal && address.isGlobal {
            context.logger.warning("Client connection from \(host) killed by block_global option.")
            client.error = "Connection killed by block_global."
        }
    }
}

/// What kind of address a client has, by the ranges of Python's `ipaddress` module (`is_loopback`,
/// `is_private`, `is_global`), which mitmproxy's block addon relies on. An IPv4-mapped IPv6
/// address (`::ffff:a.b.c.d`) is judged as the IPv4 address it carries; a zone (`%eth0`) is ignored.
public struct IPAddressClass: Sendable, Hashable {
    /// 4 bytes for IPv4, 16 for IPv6.
    public let bytes: [UInt8]

    /// Parses an IPv4 or IPv6 literal; `nil` for anything else (a Unix socket path, `?`).
    public init?(_ text: String) {
        let literal = String(text.split(separator: "%", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, literal, &v4) == 1 {
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
        } else if inet_pton(AF_INET6, literal, &v6) == 1 {
            let all = withUnsafeBytes(of: &v6) { Array($0) }
            let mappedPrefix: [UInt8] = Array(repeating: 0, count: 10) + [0xFF, 0xFF]
            bytes = Array(all.prefix(12)) == mappedPrefix ? Array(all.suffix(4)) : all
        } else {
            return nil
        }
    }

    public var isIPv4: Bool { bytes.count == 4 }

    public var isLoopback: Bool {
        isIPv4 ? bytes[0] == 127 : bytes == Array(repeating: 0, count: 15) + [1]
    }

    /// Python's `is_private`: RFC 1918, loopback, link-local, unique local and the documentation,
    /// benchmarking and other reserved ranges of the IANA special-purpose registries.
    public var isPrivate: Bool {
        let ranges = isIPv4 ? Self.privateIPv4 : Self.privateIPv6
        return ranges.contains { self.contains(network: $0.network, prefixLength: $0.prefixLength) }
    }

    /// Python's `is_global`: not private, and for IPv4 not in the shared address space
    /// (`100.64.0.0/10`, carrier-grade NAT) either.
    public var isGlobal: Bool {
        if isIPv4 && contains(network: [100, 64, 0, 0], prefixLength: 10) { return false }
        return !isPrivate
    }

    private func contains(network: [UInt8], prefixLength: Int) -> Bool {
        guard network.count == bytes.count else { return false }
        var remaining = prefixLength
        for index in bytes.indices where remaining > 0 {
            let bits = min(8, remaining)
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
            if bytes[index] & mask != network[index] & mask { return false }
            remaining -= bits
        }
        return true
    }

    private typealias Network = (network: [UInt8], prefixLength: Int)

    private static let privateIPv4: [Network] = [
        ([0, 0, 0, 0], 8),
        ([10, 0, 0, 0], 8),
        ([127, 0, 0, 0], 8),
        ([169, 254, 0, 0], 16),
        ([172, 16, 0, 0], 12),
        ([192, 0, 0, 0], 29),
        ([192, 0, 0, 170], 31),
        ([192, 0, 2, 0], 24),
        ([192, 168, 0, 0], 16),
        ([198, 18, 0, 0], 15),
        ([198, 51, 100, 0], 24),
        ([203, 0, 113, 0], 24),
        ([240, 0, 0, 0], 4),
        ([255, 255, 255, 255], 32),
    ]

    private static func v6(_ groups: [UInt16]) -> [UInt8] {
        let padded = groups + Array(repeating: 0, count: 8 - groups.count)
        return padded.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
    }

    private static let privateIPv6: [Network] = [
        (v6([0, 0, 0, 0, 0, 0, 0, 1]), 128),  // loopback
        (v6([]), 128),  // unspecified
        (v6([0, 0, 0, 0, 0, 0xFFFF]), 96),  // IPv4-mapped
        (v6([0x100]), 64),  // discard-only
        (v6([0x2001]), 23),  // IETF protocol assignments
        (v6([0x2001, 0x2]), 48),  // benchmarking
        (v6([0x2001, 0xDB8]), 32),  // documentation
        (v6([0x2001, 0x10]), 28),  // ORCHID
        (v6([0xFC00]), 7),  // unique local
        (v6([0xFE80]), 10),  // link-local
    ]
}
