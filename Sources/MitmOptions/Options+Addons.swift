import MitmAddons
import MitmCore

extension Options {
    /// The built-in addons the options switch on, in mitmproxy's order: blocking first, then the
    /// addons that answer requests themselves (onboarding, server replay, map_local, after
    /// map_remote has had its say), then those that rewrite them, then sticky state. Saving and
    /// printing are the front end's, and go after these. Fails, naming the option and the spec, if
    /// a spec is malformed or a file it names cannot be read: nothing starts half-configured.
    public func builtInAddons() throws(OptionError) -> [any Addon] {
        try validate()
        var addons: [any Addon] = []
        if blockGlobal || blockPrivate { addons.append(Block(blockGlobal: blockGlobal, blockPrivate: blockPrivate)) }
        if !blockList.isEmpty { addons.append(try build("block_list", blockList) { try BlockList(specs: $0) }) }
        if proxy.anticache { addons.append(AntiCache()) }
        if proxy.anticomp { addons.append(AntiComp()) }
        if proxy.onboarding { addons.append(Onboarding(options: proxy)) }
        if !serverReplay.isEmpty {
            do {
                addons.append(try ServerPlayback(paths: serverReplay, options: serverPlaybackOptions()))
            } catch {
                throw .invalid("server_replay", serverReplay.joined(separator: ", "), "\(error)")
            }
        }
        if !mapRemote.isEmpty { addons.append(try build("map_remote", mapRemote) { try MapRemote(specs: $0) }) }
        if !mapLocal.isEmpty { addons.append(try build("map_local", mapLocal) { try MapLocal(specs: $0) }) }
        if !modifyBody.isEmpty { addons.append(try build("modify_body", modifyBody) { try ModifyBody(specs: $0) }) }
        if !modifyHeaders.isEmpty { addons.append(try build("modify_headers", modifyHeaders) { try ModifyHeaders(specs: $0) }) }
        if let stickyauth { addons.append(try build("stickyauth", [stickyauth]) { try StickyAuth(filter: $0[0]) }) }
        if let stickycookie { addons.append(try build("stickycookie", [stickycookie]) { try StickyCookie(filter: $0[0]) }) }
        return addons
    }

    /// The server_replay_* options.
    public func serverPlaybackOptions() throws(OptionError) -> ServerPlaybackOptions {
        var playback = ServerPlaybackOptions()
        playback.useHeaders = serverReplayUseHeaders
        playback.ignoreContent = serverReplayIgnoreContent
        playback.ignoreParams = serverReplayIgnoreParams
        playback.ignorePayloadParams = serverReplayIgnorePayloadParams
        playback.ignoreHost = serverReplayIgnoreHost
        playback.ignorePort = serverReplayIgnorePort
        playback.reuse = serverReplayReuse
        playback.refresh = serverReplayRefresh
        do {
            playback.extra = try ServerPlaybackOptions.Extra(parsing: serverReplayExtra)
        } catch {
            throw .invalid("server_replay_extra", serverReplayExtra, "expected " + error.expected)
        }
        return playback
    }

    /// Checks what single values cannot: the host patterns compile.
    public func validate() throws(OptionError) {
        do {
            _ = try NextLayerRules(options: proxy)
        } catch {
            throw .invalid(error.option, error.pattern, error.reason)
        }
    }

    /// One addon from all of an option's specs, checking each on its own first so that an error
    /// names the spec at fault.
    private func build<A: Addon>(_ option: String, _ specs: [String], _ make: ([String]) throws -> A) throws(OptionError) -> A {
        for spec in specs {
            do { _ = try make([spec]) } catch { throw .invalid(option, spec, "\(error)") }
        }
        do {
            return try make(specs)
        } catch {
            throw .invalid(option, specs.joined(separator: ", "), "\(error)")
        }
    }
}
