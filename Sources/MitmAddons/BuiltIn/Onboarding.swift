import Foundation
import MitmCore
import NIOCore

/// mitmproxy's `onboarding` addon: requests through the proxy to `onboarding_host` (`mitm.it`) are
/// answered by the proxy itself, never sent upstream, so a device set to use the proxy can fetch
/// and install our CA certificate by visiting one address, which need not exist anywhere.
///
/// - `/`: a page explaining, per platform, how to install and trust the certificate, with links;
/// - `/cert/pem`, `/cert/p12`, `/cert/cer`: the CA certificate from the confdir (as PEM, as PKCS#12
///   without key, and as PEM named `.cer` for Windows and Android), offered as downloads;
/// - anything else: 404.
///
/// Over HTTPS (a CONNECT to the onboarding host) the server neither connects to that host nor asks
/// it for a certificate (`ProxyOptions.isOnboardingTarget`), so set the same values there as here.
public struct Onboarding: Addon {
    public var hooks: Set<HookName>? { [.request] }
    public let name = "onboarding"
    /// `onboarding`: whether the app is served at all.
    public let isEnabled: Bool
    /// `onboarding_host`.
    public let host: String
    /// `onboarding_port`: `nil` serves the host on any port.
    public let port: Int?

    public init(enabled: Bool = true, host: String = "mitm.it", port: Int? = nil) {
        self.isEnabled = enabled
        self.host = host
        self.port = port
    }

    /// The addon for the onboarding options of `options` (the ones the server reads too).
    public init(options: ProxyOptions) {
        self.init(enabled: options.onboarding, host: options.onboardingHost, port: options.onboardingPort)
    }

    /// The certificate downloads: path, file name in the confdir, content type.
    static let downloads: [(path: String, file: String, contentType: String)] = [
        // The names of `CertificateAuthority.ConfdirFiles` (MitmCertificates) for the default basename.
        ("/cert/pem", "mitmproxy-ca-cert.pem", "application/x-x509-ca-cert"),
        ("/cert/p12", "mitmproxy-ca-cert.p12", "application/x-pkcs12"),
        ("/cert/cer", "mitmproxy-ca-cert.cer", "application/x-x509-ca-cert"),
    ]

    /// Whether `flow` is for the onboarding app: live, not yet answered, and addressed to its host
    /// (by the request target, or the Host header in transparent mode) and port.
    public func shouldServe(_ flow: HTTPFlow) -> Bool {
        guard isEnabled, flow.isLive, flow.response == nil, flow.error == nil else { return false }
        let request = flow.request
        if let port, request.port != port { return false }
        let wanted = host.lowercased()
        if request.host.lowercased() == wanted { return true }
        if let field = request.headers["host"], let authority = Authority(parsing: field) {
            return authority.host.lowercased() == wanted
        }
        return false
    }

    public func request(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        guard shouldServe(flow) else { return }
        let path = String(flow.request.path.prefix { $0 != "?" && $0 != "#" })
        let confdir = NSString(string: context.options.confdir).expandingTildeInPath
        flow.response = Self.respond(to: path, confdir: confdir, host: host)
    }

    /// The app's answer to `path`, reading certificates from `confdir`.
    static func respond(to path: String, confdir: String, host: String) -> HTTPResponse {
        if path == "/" || path == "/index.html" {
            return makeResponse(200, body: Array(page(host: host).utf8), headers: ["content-type": "text/html; charset=utf-8"])
        }
        guard let download = downloads.first(where: { $0.path == path }) else {
            return makeResponse(404, body: Array("Not found: \(path)\n".utf8), headers: ["content-type": "text/plain; charset=utf-8"])
        }
        guard let data = FileManager.default.contents(atPath: confdir + "/" + download.file) else {
            return makeResponse(
                404,
                body: Array("The CA certificate (\(download.file)) is not in the proxy's confdir.\n".utf8),
                headers: ["content-type": "text/plain; charset=utf-8"]
            )
        }
        return makeResponse(
            200,
            body: Array(data),
            headers: [
                "content-type": download.contentType,
                "content-disposition": "attachment; filename=\(download.file)",
            ]
        )
    }

    private static func makeResponse(_ status: Int, body: [UInt8], headers: Headers) -> HTTPResponse {
        var headers = headers
        headers["content-length"] = String(body.count)
        headers["cache-control"] = "no-store"
        var response = HTTPResponse(statusCode: status, headers: headers, rawContent: ByteBuffer(bytes: body))
        response.timestampEnd = response.timestampStart
        return response
    }

    // MARK: - The page

    /// The onboarding page: self-contained (no scripts, fonts or images from elsewhere, since the
    /// device may not trust anything yet), readable on a phone.
    static func page(host: String) -> String {
        let host = escapeHTML(host)
        return """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>Install the proxy's CA certificate</title>
            <style>
            :root { color-scheme: light dark; --accent: #2b6cb0; --muted: #667; --card: rgba(127,127,127,.08); }
            body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; padding: 1.5rem; }
            main { max-width: 46rem; margin: 0 auto; }
            h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
            p.lead { color: var(--muted); margin-top: 0; }
            section { background: var(--card); border-radius: .6rem; padding: .9rem 1.1rem; margin: .9rem 0; }
            h2 { font-size: 1.15rem; margin: 0 0 .4rem; }
            ol { margin: .3rem 0 .2rem; padding-left: 1.3rem; }
            a.download { display: inline-block; background: var(--accent); color: #fff; text-decoration: none;
              padding: .35rem .8rem; border-radius: .4rem; margin: .2rem .4rem .2rem 0; font-weight: 600; }
            code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .92em; }
            footer { color: var(--muted); font-size: .85rem; margin-top: 1.5rem; }
            </style>
            </head>
            <body>
            <main>
            <h1>Trust this proxy's certificate</h1>
            <p class="lead">You reached this page through the proxy, so it is running and in use. To see HTTPS
            traffic, install its certificate authority (CA) on this device and mark it as trusted. Only do this
            for a proxy you run yourself: whoever holds the CA's key can read this device's HTTPS traffic.</p>

            <section id="windows">
            <h2>Windows</h2>
            <a class="download" href="/cert/p12">Download .p12</a>
            <ol>
            <li>Open the downloaded file: the Certificate Import Wizard starts.</li>
            <li>Choose <em>Current User</em> (or <em>Local Machine</em> for every user), leave the password empty.</li>
            <li>Choose <em>Place all certificates in the following store</em>, then <em>Trusted Root Certification Authorities</em>, and finish.</li>
            </ol>
            </section>

            <section id="macos">
            <h2>macOS</h2>
            <a class="download" href="/cert/pem">Download .pem</a>
            <ol>
            <li>Open the downloaded file: Keychain Access adds it to the <em>login</em> keychain.</li>
            <li>Double-click the certificate named <em>mitmproxy</em>, open <em>Trust</em>, and set <em>When using this certificate</em> to <em>Always Trust</em>.</li>
            </ol>
            <p>Or in a terminal: <code>sudo security add-trusted-cert -d -p ssl -p basic -k /Library/Keychains/System.keychain mitmproxy-ca-cert.pem</code></p>
            </section>

            <section id="linux">
            <h2>Linux</h2>
            <a class="download" href="/cert/pem">Download .pem</a>
            <ol>
            <li>Debian, Ubuntu: <code>sudo cp mitmproxy-ca-cert.pem /usr/local/share/ca-certificates/mitmproxy.crt &amp;&amp; sudo update-ca-certificates</code></li>
            <li>Fedora, RHEL, Arch: <code>sudo trust anchor --store mitmproxy-ca-cert.pem</code></li>
            <li>Programs with their own trust store (Firefox, Java, Python's <code>certifi</code>) need it added there too.</li>
            </ol>
            </section>

            <section id="ios">
            <h2>iOS and iPadOS</h2>
            <a class="download" href="/cert/pem">Download .pem</a>
            <ol>
            <li>Open this page in Safari and download the certificate; allow the configuration profile.</li>
            <li>In <em>Settings → General → VPN &amp; Device Management</em>, install the downloaded <em>mitmproxy</em> profile.</li>
            <li>In <em>Settings → General → About → Certificate Trust Settings</em>, turn on full trust for <em>mitmproxy</em>.</li>
            </ol>
            </section>

            <section id="android">
            <h2>Android</h2>
            <a class="download" href="/cert/cer">Download .cer</a>
            <ol>
            <li>Open <em>Settings → Security → Encryption &amp; credentials → Install a certificate → CA certificate</em> (names vary by vendor).</li>
            <li>Pick the downloaded <code>mitmproxy-ca-cert.cer</code> and confirm.</li>
            <li>Apps targeting Android 7 and later trust user CAs only if they opt in; browsers such as Chrome do.</li>
            </ol>
            </section>

            <section id="firefox">
            <h2>Firefox (any system)</h2>
            <a class="download" href="/cert/pem">Download .pem</a>
            <ol>
            <li>Open <em>Settings → Privacy &amp; Security → Certificates → View Certificates → Authorities</em>.</li>
            <li>Choose <em>Import…</em>, pick the downloaded file, and tick <em>Trust this CA to identify websites</em>.</li>
            </ol>
            </section>

            <section id="other">
            <h2>Other downloads</h2>
            <a class="download" href="/cert/pem">PEM</a>
            <a class="download" href="/cert/p12">PKCS#12</a>
            <a class="download" href="/cert/cer">CER</a>
            </section>

            <footer>Served by the proxy itself at <code>\(host)</code>; this request never left it.</footer>
            </main>
            </body>
            </html>

            """
    }

    static func escapeHTML(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;")
            .replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }
}
