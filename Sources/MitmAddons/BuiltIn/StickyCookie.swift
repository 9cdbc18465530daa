import Foundation
import MitmCore
import Synchronization

/// mitmproxy's `stickycookie` addon (`-t FILTER`): cookies that servers set on flows matching the
/// filter are remembered, and sent again on later matching requests, so a session survives clients
/// that drop cookies (a script, a second browser, a replay).
///
/// The jar is keyed by the cookie's domain (its `Domain` attribute, else the request's host), the
/// request's port, the cookie's path (its `Path`, else `/`) and its name, and holds the latest value.
/// A `Set-Cookie` for a domain the request's host does not belong to is ignored; one that has expired
/// (`Expires` in the past, `Max-Age` zero or less) removes the cookie. A matching request receives
/// every cookie whose domain it belongs to (the host itself, or a subdomain of a `Domain`), on the
/// same port, with a path its path starts with; the flow gets `metadata["stickycookie"] = "true"`.
///
/// Where mitmproxy replaces the request's whole `Cookie` header, we keep the cookies the client sent
/// under other names and override the same-named ones (the server's latest value wins); and a
/// `Domain` attribute matches subdomains as RFC 6265 §5.1.3 says, with or without its leading dot.
public struct StickyCookie: Addon {
    public var hooks: Set<HookName>? { [.request, .response] }
    public let name = "stickycookie"
    public let filter: FlowFilter
    private let jar = Jar()

    /// The addon for the `stickycookie` option's filter expression.
    public init(filter expression: String) throws(FlowFilterError) {
        self.filter = try FlowFilter(expression)
    }

    /// Where a remembered cookie applies.
    public struct Origin: Sendable, Hashable {
        public var domain: String
        public var port: Int
        public var path: String
    }

    /// The jar: per origin, the cookies' names and values, in the order they were first set.
    /// Shared by every connection's hooks, so behind a lock.
    private final class Jar: Sendable {
        let cookies = Mutex<[Origin: [(name: String, value: String)]]>([:])
    }

    /// The remembered cookies, for inspection.
    public var cookies: [Origin: [(name: String, value: String)]] { jar.cookies.withLock { $0 } }

    public func response(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        guard let response = flow.response, filter.matches(flow) else { return }
        let host = flow.request.host
        for header in response.headers.values(for: "set-cookie") {
            guard let cookie = SetCookie(parsing: header) else { continue }
            let domain = cookie.attribute("domain").map(Self.normalizedDomain) ?? host.lowercased()
            guard Self.domainMatches(host: host, domain: domain) else { continue }
            let origin = Origin(domain: domain, port: flow.request.port, path: cookie.attribute("path") ?? "/")
            jar.cookies.withLock { jar in
                var entries = jar[origin] ?? []
                if cookie.isExpired(now: Date()) {
                    entries.removeAll { $0.name == cookie.name }
                } else if let index = entries.firstIndex(where: { $0.name == cookie.name }) {
                    entries[index].value = cookie.value
                } else {
                    entries.append((cookie.name, cookie.value))
                }
                jar[origin] = entries.isEmpty ? nil : entries
            }
        }
    }

    public func request(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        guard filter.matches(flow) else { return }
        let request = flow.request
        let applicable: [(name: String, value: String)] = jar.cookies.withLock { jar in
            jar.filter { origin, _ in
                Self.domainMatches(host: request.host, domain: origin.domain) && origin.port == request.port
                    && request.path.hasPrefix(origin.path)
            }
            .sorted { $0.key.path.count > $1.key.path.count }  // longer paths first (RFC 6265 §5.4)
            .flatMap { $0.value }
        }
        guard !applicable.isEmpty else { return }
        var names = Set<String>()
        var merged: [(name: String, value: String)] = []
        for cookie in applicable where names.insert(cookie.name).inserted {
            merged.append(cookie)
        }
        for value in request.headers.values(for: "cookie") {
            for pair in Self.parseCookieHeader(value) where !names.contains(pair.name) {
                merged.append(pair)
            }
        }
        flow.metadata["stickycookie"] = "true"
        flow.request.headers["cookie"] = merged.map { "\($0.name)=\($0.value)" }.joined(separator: "; ")
    }

    // MARK: - Domains and headers

    /// A `Domain` attribute as it is compared: lower case, without a leading dot.
    static func normalizedDomain(_ domain: String) -> String {
        var domain = domain.lowercased()
        while domain.hasPrefix(".") { domain.removeFirst() }
        return domain
    }

    /// Whether `host` belongs to `domain` (RFC 6265 §5.1.3): equal, or a subdomain of it when the
    /// host is a name rather than an IP address.
    static func domainMatches(host: String, domain: String) -> Bool {
        let host = host.lowercased()
        let domain = normalizedDomain(domain)
        if host == domain { return true }
        guard !domain.isEmpty, IPAddressClass(host) == nil else { return false }
        return host.hasSuffix("." + domain)
    }

    /// The `name=value` pairs of a `Cookie` header.
    static func parseCookieHeader(_ value: String) -> [(name: String, value: String)] {
        value.split(separator: ";").compactMap { part in
            let trimmed = part.trimmingCharacters(in: .whitespaces)
            guard !trimmed.isEmpty else { return nil }
            guard let equals = trimmed.firstIndex(of: "=") else { return (trimmed, "") }
            return (String(trimmed[..<equals]), String(trimmed[trimmed.index(after: equals)...]))
        }
    }
}

/// One `Set-Cookie` header (RFC 6265 §5.2): the cookie and its attributes, names case-insensitive.
struct SetCookie: Sendable, Hashable {
    var name: String
    var value: String
    /// Attribute names in lower case, values as sent (the last of repeated attributes wins).
    var attributes: [String: String]

    init?(parsing header: String) {
        var parts = header.split(separator: ";", omittingEmptySubsequences: false).makeIterator()
        guard let first = parts.next(), let equals = first.firstIndex(of: "=") else { return nil }
        name = first[..<equals].trimmingCharacters(in: .whitespaces)
        value = first[first.index(after: equals)...].trimmingCharacters(in: .whitespaces)
        guard !name.isEmpty else { return nil }
        attributes = [:]
        while let part = parts.next() {
            let trimmed = part.trimmingCharacters(in: .whitespaces)
            guard !trimmed.isEmpty else { continue }
            if let equals = trimmed.firstIndex(of: "=") {
                let key = trimmed[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
                attributes[key] = trimmed[trimmed.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            } else {
                attributes[trimmed.lowercased()] = ""
            }
        }
    }

    func attribute(_ name: String) -> String? {
        attributes[name].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Whether the server asked for the cookie to be removed: `Max-Age` zero or negative, or an
    /// `Expires` date in the past. An unparsable value expires nothing, as in mitmproxy.
    func isExpired(now: Date) -> Bool {
        if let maxAge = attribute("max-age"), let seconds = Int(maxAge), seconds <= 0 {
            return true
        }
        if let expires = attribute("expires"), let date = Self.parseDate(expires) {
            return date < now
        }
        return false
    }

    /// The date formats servers send in `Expires` (RFC 1123, and the older hyphenated RFC 850 style).
    static func parseDate(_ text: String) -> Date? {
        let formats = [
            "EEE, dd MMM yyyy HH:mm:ss zzz",
            "EEE, dd-MMM-yyyy HH:mm:ss zzz",
            "EEE, dd-MMM-yy HH:mm:ss zzz",
            "EEEE, dd-MMM-yy HH:mm:ss zzz",
        ]
        // Made per call (rarely needed): a DateFormatter is not safe to share between threads.
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        for format in formats {
            formatter.dateFormat = format
            if let date = formatter.date(from: text) { return date }
        }
        return nil
    }
}
