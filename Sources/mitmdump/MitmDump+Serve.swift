import ArgumentParser
import Foundation
import Logging
import MitmAddons
import MitmCore
import MitmIO
import MitmOptions
import MitmServer

extension MitmDump {
    /// Makes the addons, then runs: the proxy until Ctrl-C, or with `server` off, reading `rfile`
    /// and replaying `client_replay` before exiting. Every addon is made before anything starts, so
    /// a bad spec stops mitmdump with its option named rather than leaving it half-configured.
    static func serve(_ options: Options) async throws {
        let level = logLevel(options.termlogVerbosity)
        LoggingSystem.bootstrap { _ in
            var handler = TermLogHandler()
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "mitmproxy")
        if !options.scripts.isEmpty {
            logger.critical("Python addon scripts (-s, scripts) are not supported by this build yet: \(options.scripts.joined(separator: ", "))")
            throw ExitCode(1)
        }
        for name in options.ignoredOptions {
            logger.warning("Option \(name) is not implemented by this build; its value is ignored.")
        }
        let addons: [any Addon]
        let readFilter: DumperOptions.Filter?
        let replayFlows: [HTTPFlow]
        let server: ProxyServer
        do {
            addons = try makeAddons(options)
            readFilter = try options.readfileFilter.map { try FlowFiles.compile($0, option: "readfile_filter") }
            do {
                replayFlows = try FlowReader.readHTTPFlows(paths: options.clientReplay)
            } catch {
                throw OptionError.invalid("client_replay", options.clientReplay.joined(separator: ", "), "\(error)")
            }
            server = try ProxyServer(options: options.proxy, addons: addons, logger: logger)
        } catch {
            logger.critical("\(error)")
            throw ExitCode(1)
        }
        let replay = options.clientReplay.isEmpty
            ? nil : ClientReplay(server: server, flows: replayFlows, concurrency: options.clientReplayConcurrency)
        if !options.server {
            // No listener: run the addons on the flows of the file, replay the requests (their
            // flows go through the same addons), then stop, unless told to keep serving.
            await server.addons.running()
            let readOK = await FlowFiles.read(options.rfile, filter: readFilter, into: server.addons, logger: logger)
            await replay?.run()
            if options.keepserving { await waitForTermination() }
            await server.shutdown(grace: 0)
            if !readOK { throw ExitCode(1) }
            return
        }
        do {
            try await server.start()
        } catch {
            logger.critical("Error starting proxy server: \(error)")
            throw ExitCode(1)
        }
        _ = await FlowFiles.read(options.rfile, filter: readFilter, into: server.addons, logger: logger)
        if let replay {
            Task { await replay.run() }
        }
        await waitForTermination()
        await server.shutdown()
    }

    /// The addons in mitmproxy's order: those that answer or change requests first, then the ones
    /// that save and print. Only those switched on are loaded: with no addons at all, hooks cost
    /// nothing (`mitmdump -q`).
    static func makeAddons(_ options: Options) throws -> [any Addon] {
        var addons = try options.builtInAddons()
        addons += try FlowFiles.saveAddons(options)
        if options.flowDetail > 0 {
            var dumper = DumperOptions()
            dumper.flowDetail = options.flowDetail
            dumper.showHost = options.showhost
            dumper.showDuration = options.dumperDuration
            dumper.contentViewLinesCutoff = options.contentViewLinesCutoff
            dumper.filter = try options.dumperFilter.map { try FlowFiles.compile($0, option: "dumper_filter") }
            addons.append(Dumper(options: dumper, sink: StandardOutputSink()))
        }
        return addons
    }

    static func logLevel(_ verbosity: String) -> Logger.Level {
        switch verbosity {
        case "error": .error
        case "warn": .warning
        case "alert": .notice
        case "debug": .debug
        default: .info
        }
    }
}
