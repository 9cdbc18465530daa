extension HTTPRequest {
    /// Points the request at `url` (mitmproxy's `request.url = …`): scheme, host, port and path
    /// (with query) are taken from it, a missing port being the scheme's default and a missing path
    /// `/`. As mitmproxy's host and port setters do, a Host header that is present and a non-empty
    /// `authority` are rewritten to the new `host[:port]`.
    ///
    /// - Returns: `false`, changing nothing, when `url` is not `scheme://host[:port][/path]` with an
    ///   http, https, ws or wss scheme (or another scheme with an explicit port).
    @discardableResult
    public mutating func setURL(_ url: String) -> Bool {
        guard let schemeEnd = url.range(of: "://") else { return false }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        guard !scheme.isEmpty, scheme.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "+" || $0 == "-" || $0 == "." }) else {
            return false
        }
        let rest = url[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        var authorityText = rest[..<authorityEnd]
        if let at = authorityText.lastIndex(of: "@") {
            authorityText = authorityText[authorityText.index(after: at)...]
        }
        guard let parsed = Authority(parsing: String(authorityText)) else { return false }
        let port: Int
        if let explicit = parsed.port {
            port = explicit
        } else if ["http", "https", "ws", "wss"].contains(scheme) {
            port = Self.defaultPort(for: scheme)
        } else {
            return false
        }
        var path = String(rest[authorityEnd...])
        if !path.hasPrefix("/") { path = "/" + path }
        self.scheme = scheme
        self.host = parsed.host
        self.port = port
        self.path = path
        if headers.contains("host") {
            headers["host"] = hostHeaderValue
        }
        if !authority.isEmpty {
            authority = hostHeaderValue
        }
        return true
    }
}
