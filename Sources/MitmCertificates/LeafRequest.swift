import SwiftASN1
import X509

/// What an interception certificate must say: the inputs of mitmproxy's `CertStore.get_cert`.
///
/// mitmproxy's `tlsconfig` addon collects the names (upstream certificate CN and SANs when
/// `upstream_cert` is on, then the client's SNI or our local address, then the server address), drops
/// repeats, and uses the first one as the common name. ``LeafRequest/host(_:)`` covers the common case of
/// one name.
///
/// Two requests that differ in any field are different cache keys, even if they yield the same certificate.
public struct LeafRequest: Hashable, Sendable {
    /// Subject CN. Left out of the certificate when empty or 64 characters or longer (the X.520 upper
    /// bound, `ub-common-name`), as mitmproxy's `dummy_cert` does; the SAN extension is then critical
    /// (RFC 5280 §4.2.1.6).
    public var commonName: String?
    /// Host names for `dNSName` SANs, IDNA-encoded if not ASCII. A name that parses as an IPv4 or IPv6
    /// address becomes an `iPAddress` SAN instead, as mitmproxy's `_ip_or_dns_name` does, so an SNI-less
    /// connection to `10.0.0.1` gets a certificate clients accept for that address.
    public var dnsNames: [String]
    /// IPv4 or IPv6 addresses in textual form for `iPAddress` SANs.
    public var ipAddresses: [String]
    /// Subject O, usually copied from the upstream certificate.
    public var organization: String?

    public init(
        commonName: String? = nil,
        dnsNames: [String] = [],
        ipAddresses: [String] = [],
        organization: String? = nil
    ) {
        self.commonName = commonName
        self.dnsNames = dnsNames
        self.ipAddresses = ipAddresses
        self.organization = organization
    }

    /// A certificate for one host name or IP address, used as both CN and SAN, the way mitmproxy asks for
    /// one when it only knows the SNI (or the server address).
    public static func host(_ host: String, organization: String? = nil) -> LeafRequest {
        LeafRequest(commonName: host, dnsNames: [host], organization: organization)
    }

    /// The CN that goes into the certificate, if any.
    var effectiveCommonName: String? {
        guard let commonName, !commonName.isEmpty, commonName.unicodeScalars.count < 64 else {
            return nil
        }
        return commonName
    }

    /// The SANs in request order (DNS names, then IP addresses), each once.
    func subjectAlternativeNames() throws -> [GeneralName] {
        var names: [GeneralName] = []
        var seen: Set<GeneralName> = []
        func add(_ name: GeneralName) {
            if seen.insert(name).inserted {
                names.append(name)
            }
        }
        for dnsName in self.dnsNames {
            if let address = HostNames.ipAddressBytes(dnsName) {
                add(.ipAddress(ASN1OctetString(contentBytes: address[...])))
            } else {
                add(.dnsName(try HostNames.asciiDNSName(dnsName)))
            }
        }
        for ipAddress in self.ipAddresses {
            guard let address = HostNames.ipAddressBytes(ipAddress) else {
                throw CertificateStoreError.invalidName(ipAddress, reason: "not an IPv4 or IPv6 address")
            }
            add(.ipAddress(ASN1OctetString(contentBytes: address[...])))
        }
        return names
    }

    /// Names to try against user-supplied certificates, most specific first, as mitmproxy's `get_cert`
    /// builds its `potential_keys`: the CN's and then each SAN's asterisk forms. The catch-all `*` is
    /// tried by the caller last.
    var customCertificateKeys: [String] {
        var keys: [String] = []
        if let commonName, !commonName.isEmpty {
            keys += HostNames.asteriskForms(commonName)
        }
        for dnsName in self.dnsNames {
            if let address = HostNames.ipAddressBytes(dnsName) {
                keys.append(HostNames.ipAddressText(address))
            } else {
                keys += HostNames.asteriskForms((try? HostNames.asciiDNSName(dnsName)) ?? dnsName)
            }
        }
        for ipAddress in self.ipAddresses {
            keys.append(HostNames.ipAddressBytes(ipAddress).map(HostNames.ipAddressText) ?? ipAddress)
        }
        return keys
    }
}
