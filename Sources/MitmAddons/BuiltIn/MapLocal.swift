import Foundation
import MitmCore
import NIOCore

/// mitmproxy's `map_local` addon (`--map-local`): answers matching requests from local files,
/// without contacting the server, with specs `[|filter]|url-regex|file-or-directory`
/// (see ``ModifySpec``; the closed form `|filter|regex|path|` needs the filter), e.g. `|example.com/static|~/static`.
///
/// In `request` (live flows without a response or error), for each spec whose filter matches and
/// whose regex occurs in the request's ``HTTPRequest/prettyURL``, in order:
///
/// - If the path is a file, that file is served, whatever the URL.
/// - If it is a directory, the URL picks the file. The part of the URL that maps into the directory
///   is the regex's first group when it has groups, else what follows the first match, without the
///   query and without leading and trailing `/`. It is percent-decoded, and the candidates are tried
///   in this order: `dir/part`, `dir/part/index.html`, then, if the part has characters other than
///   letters, digits and `-_.=(),/`, the same two with each such character replaced by `_`. An empty
///   part means `dir/index.html`. A part that is absolute or has a `..` component gives no candidate
///   at all, so nothing outside the directory is ever read (the request then goes on to the server
///   unless another spec answers it, as in mitmproxy).
/// - The first candidate that is a regular file answers 200 with its bytes, a `Content-Type` from its
///   extension (``contentType(forPath:)``), and `Server: mitmproxy`; the first spec that serves a
///   file wins.
///
/// When specs matched but none of their candidates exists, the answer is 404 with a short text
/// body, and the candidates are logged as a warning. The local path must exist when the spec is
/// parsed (`~` is expanded, symbolic links are resolved); the files are read on each request.
public struct MapLocal: Addon {
    public var hooks: Set<HookName>? { [.request] }
    public let name = "maplocal"

    /// One parsed rule.
    public struct Rule: Sendable, Hashable {
        public let spec: ModifySpec
        /// The file or directory, absolute, `~` expanded and symbolic links resolved.
        public let localPath: String
        let regex: SpecRegex

        public init(_ spec: ModifySpec) throws(ModifySpecError) {
            self.spec = spec
            self.regex = try SpecRegex(spec.subject, spec: spec.spec)
            let expanded = (spec.replacement as NSString).expandingTildeInPath
            guard !spec.replacement.isEmpty, let resolved = realpath(expanded, nil) else {
                throw ModifySpecError(spec: spec.spec, reason: .missingPath(path: expanded))
            }
            defer { free(resolved) }
            self.localPath = String(cString: resolved)
        }

        /// The files that may answer `url`, best first (see ``MapLocal``); `url` must match the regex.
        public func candidates(for url: String) -> [String] {
            guard let match = regex.firstMatch(in: url) else { return [] }
            let ns = url as NSString
            var suffix: String
            if regex.groupCount > 0 {
                let group = match.range(at: 1)
                suffix = group.location == NSNotFound ? "" : ns.substring(with: group)
            } else {
                suffix = ns.substring(from: match.range.location + match.range.length)
                if let query = suffix.firstIndex(of: "?") { suffix = String(suffix[..<query]) }
                suffix = String(suffix.drop(while: { $0 == "/" }))
                while suffix.hasSuffix("/") { suffix.removeLast() }
            }
            guard !suffix.isEmpty else { return [Self.join(localPath, ["index.html"])] }
            let decoded = MapLocal.lenientPercentDecode(suffix)
            var relative = [decoded, decoded + "/index.html"]
            let escaped = String(
                String.UnicodeScalarView(decoded.unicodeScalars.map { MapLocal.isPlainPathCharacter($0) ? $0 : "_" })
            )
            if escaped != decoded {
                relative += [escaped, escaped + "/index.html"]
            }
            var paths: [String] = []
            for candidate in relative {
                guard let parts = Self.safeParts(candidate) else { return [] }
                paths.append(Self.join(localPath, parts))
            }
            return paths
        }

        /// The components of a relative path, or `nil` when it is absolute or climbs with `..`.
        static func safeParts(_ path: String) -> [String]? {
            guard !path.hasPrefix("/") else { return nil }
            let parts = path.split(separator: "/").map(String.init).filter { $0 != "." }
            guard !parts.contains("..") else { return nil }
            return parts
        }

        static func join(_ root: String, _ parts: [String]) -> String {
            parts.isEmpty ? root : (root.hasSuffix("/") ? root : root + "/") + parts.joined(separator: "/")
        }
    }

    public let rules: [Rule]

    /// Parses the `map_local` option values.
    ///
    /// - Throws: ``ModifySpecError`` for the first spec that does not parse, or whose path does not exist.
    public init(specs: [String]) throws(ModifySpecError) {
        self.rules = try specs.map { spec throws(ModifySpecError) in try Rule(try ModifySpec(parsing: spec, replacementIsFile: false)) }
    }

    public init(rules: [Rule]) {
        self.rules = rules
    }

    public func request(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        guard flow.isLive, flow.response == nil, flow.error == nil else { return }
        let url = flow.request.prettyURL
        var tried: [String] = []
        for rule in rules where rule.spec.matches(flow) && rule.regex.firstMatch(in: url) != nil {
            let candidates = Self.isRegularFile(rule.localPath) ? [rule.localPath] : rule.candidates(for: url)
            tried += candidates
            guard let file = candidates.first(where: Self.isRegularFile) else { continue }
            let bytes: [UInt8]
            do throws(ModifySpec.FileError) {
                bytes = try ModifySpec.readFile(file)
            } catch {
                context.logger.warning("map_local: cannot read \(file): \(error.detail)")
                continue
            }
            flow.response = Self.fileResponse(bytes, contentType: Self.contentType(forPath: file))
            return
        }
        if !tried.isEmpty {
            context.logger.warning("map_local: none of the local file candidates exist: \(tried.joined(separator: ", "))")
            flow.response = HTTPResponse.make(404, body: "Not found: no local file for \(url)\n")
        }
    }

    static func fileResponse(_ bytes: [UInt8], contentType: String) -> HTTPResponse {
        let headers: Headers = [
            "server": "mitmproxy",
            "content-type": contentType,
            "content-length": String(bytes.count),
        ]
        var response = HTTPResponse(statusCode: 200, headers: headers, rawContent: ByteBuffer(bytes: bytes))
        response.timestampEnd = response.timestampStart
        return response
    }

    static func isRegularFile(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }

    /// Letters, digits and `-_.=(),/` are kept in the fallback candidate; anything else becomes `_`.
    static func isPlainPathCharacter(_ c: Unicode.Scalar) -> Bool {
        c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c) || "-_.=(),/".unicodeScalars.contains(c))
    }

    /// Percent-decoding that, like Python's `unquote`, keeps malformed `%` sequences as they are
    /// and turns bytes that are not UTF-8 into U+FFFD.
    static func lenientPercentDecode(_ text: String) -> String {
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        var i = 0
        func hex(_ b: UInt8) -> UInt8? {
            switch b {
            case 48...57: return b - 48
            case 65...70: return b - 55
            case 97...102: return b - 87
            default: return nil
            }
        }
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "%"), i + 2 < bytes.count, let hi = hex(bytes[i + 1]), let lo = hex(bytes[i + 2]) {
                out.append(hi << 4 | lo)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The media type for a file name's extension (case-insensitive), `application/octet-stream`
    /// for unknown ones. Where Python's `mimetypes` (which mitmproxy uses) knows the extension, the
    /// type is the same; mitmproxy sends no Content-Type for unknown ones.
    public static func contentType(forPath path: String) -> String {
        let ext = (path as NSString).pathExtension.lowercased()
        return contentTypes[ext] ?? "application/octet-stream"
    }

    static let contentTypes: [String: String] = [
        "html": "text/html", "htm": "text/html", "css": "text/css", "js": "text/javascript",
        "mjs": "text/javascript", "json": "application/json", "map": "application/json",
        "txt": "text/plain", "csv": "text/csv", "xml": "text/xml", "md": "text/markdown",
        "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif",
        "svg": "image/svg+xml", "webp": "image/webp", "avif": "image/avif", "ico": "image/vnd.microsoft.icon",
        "bmp": "image/bmp", "pdf": "application/pdf", "wasm": "application/wasm", "zip": "application/zip",
        "gz": "application/gzip", "woff": "font/woff", "woff2": "font/woff2", "ttf": "font/ttf", "otf": "font/otf",
        "mp4": "video/mp4", "webm": "video/webm", "mp3": "audio/mpeg", "wav": "audio/x-wav", "ogg": "audio/ogg",
    ]
}
