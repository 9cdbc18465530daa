import Logging
import MitmCore
import MitmIO
import Synchronization

/// The options of server-side replay, with mitmproxy's names. How a live request is matched to a
/// recorded one is `ServerPlayback.MatchKey`.
public struct ServerPlaybackOptions: Sendable, Hashable {
    /// `server_replay_use_headers`: request headers whose values must match too.
    public var useHeaders: [String] = []
    /// `server_replay_ignore_content`: leave the request body out of the match.
    public var ignoreContent: Bool = false
    /// `server_replay_ignore_params`: query parameters left out of the match.
    public var ignoreParams: [String] = []
    /// `server_replay_ignore_payload_params`: form fields left out of the match, for
    /// `application/x-www-form-urlencoded` and `multipart/form-data` bodies (other bodies match whole).
    public var ignorePayloadParams: [String] = []
    /// `server_replay_ignore_host`: leave the host out of the match.
    public var ignoreHost: Bool = false
    /// `server_replay_ignore_port`: leave the port out of the match.
    public var ignorePort: Bool = false
    /// `server_replay_reuse`: serve a recorded response as often as it matches. Without it each
    /// recorded response is served once, and identical requests get the recorded responses in order.
    public var reuse: Bool = false
    /// `server_replay_extra`: what happens to a request that matches nothing while recorded
    /// responses remain.
    public var extra: Extra = .forward
    /// `server_replay_refresh`: move the replayed response's dates (and cookie expiry) forward by the
    /// time since it was recorded (`HTTPResponse.refresh()`).
    public var refresh: Bool = true

    public init() {}

    /// `server_replay_extra`'s values.
    public enum Extra: Sendable, Hashable, CustomStringConvertible {
        /// `forward`: send the request on to its server.
        case forward
        /// `kill`: close the client connection without an answer (`HTTPFlow.kill()`).
        case kill
        /// A status code (`204`, `404`, …): answer with it and an empty body.
        case status(Int)

        /// Parses `forward`, `kill` or a status code from 100 to 599 (mitmproxy offers 204, 400,
        /// 404 and 500; any status is taken here).
        public init(parsing text: String) throws(ServerPlaybackOptionError) {
            switch text {
            case "forward": self = .forward
            case "kill": self = .kill
            default:
                guard text.utf8.count == 3, text.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let code = Int(text),
                    (100...599).contains(code)
                else {
                    throw ServerPlaybackOptionError(value: text, expected: "'forward', 'kill' or a status code from 100 to 599 (e.g. 204, 404)")
                }
                self = .status(code)
            }
        }

        public var description: String {
            switch self {
            case .forward: "forward"
            case .kill: "kill"
            case .status(let code): String(code)
            }
        }
    }
}

/// A server replay option value that does not parse. The description names the value and what was
/// expected; the caller adds the option's name.
public struct ServerPlaybackOptionError: Error, Sendable, Hashable, CustomStringConvertible {
    public var value: String
    public var expected: String

    public var description: String { "invalid value '\(value)': expected \(expected)" }
}

/// mitmproxy's `serverplayback` addon (`-S FILE`, `server_replay`): answers live requests with
/// recorded responses, so a client can be served without the servers it once talked to.
///
/// The `request` hook looks for a recorded flow whose request matches (see `MatchKey`). A match
/// answers the flow with a copy of the recorded response (`isReplay` becomes `"response"`,
/// refreshed per `server_replay_refresh`); the server is never contacted. Without
/// `server_replay_reuse`, each recorded response is served once. A request that matches nothing,
/// while recorded responses remain, is handled per `server_replay_extra`; once all are used up,
/// requests go to their servers, as in mitmproxy.
public final class ServerPlayback: Addon, Sendable {
    public var hooks: Set<HookName>? { [.request] }
    public let name = "serverplayback"
    public let options: ServerPlaybackOptions
    /// The recorded flows by match key, each list in recording order. Protected by its mutex.
    private let flowmap: Mutex<[MatchKey: [HTTPFlow]]>

    /// Replays the responses of `flows`. Flows without a response are kept but never served, as in
    /// mitmproxy (a matching request passes over them).
    public init(flows: [HTTPFlow], options: ServerPlaybackOptions = ServerPlaybackOptions()) {
        self.options = options
        var map: [MatchKey: [HTTPFlow]] = [:]
        for flow in flows {
            map[MatchKey(flow.request, options: options), default: []].append(flow)
        }
        self.flowmap = Mutex(map)
    }

    /// Replays the responses recorded in the flow files (or HAR files) at `paths`.
    public convenience init(paths: [String], options: ServerPlaybackOptions = ServerPlaybackOptions()) throws(FlowFileError) {
        self.init(flows: try FlowReader.readHTTPFlows(paths: paths), options: options)
    }

    /// Recorded flows not yet served (mitmproxy's `replay.server.count`): mitmdump without
    /// `keepserving` exits once it reaches zero. With `server_replay_reuse` it never goes down.
    public var count: Int {
        flowmap.withLock { $0.values.reduce(0) { $0 + $1.count } }
    }

    /// The recorded flow to answer `request` with, taken out of the map unless `reuse` is set.
    /// `nil` when none matches (or none of the matches has a response).
    public func nextFlow(for request: HTTPRequest) -> HTTPFlow? {
        let key = MatchKey(request, options: options)
        return flowmap.withLock { map -> HTTPFlow? in
            guard var candidates = map[key] else { return nil }
            if options.reuse {
                return candidates.first { $0.response != nil }
            }
            defer { map[key] = candidates.isEmpty ? nil : candidates }
            while !candidates.isEmpty {
                let next = candidates.removeFirst()
                if next.response != nil { return next }
            }
            return nil
        }
    }

    public func request(_ flow: inout HTTPFlow, context: AddonContext) async throws {
        guard flow.isLive, flow.response == nil, !flow.isKilled else { return }
        guard flowmap.withLock({ !$0.isEmpty }) else { return }
        if let recorded = nextFlow(for: flow.request), var response = recorded.response {
            if options.refresh {
                response.refresh()
            }
            flow.response = response
            flow.isReplay = "response"
            return
        }
        switch options.extra {
        case .forward:
            context.logger.info("server_playback: no replayable response for \(flow.request.url), forwarding it")
        case .kill:
            context.logger.warning("server_playback: killed non-replay request \(flow.request.url)")
            flow.kill()
        case .status(let code):
            context.logger.warning("server_playback: returned \(code) non-replay request \(flow.request.url)")
            flow.response = HTTPResponse.make(code, headers: [:])
            flow.isReplay = "response"
        }
    }
}
