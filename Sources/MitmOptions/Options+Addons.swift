import MitmAddons
import MitmCore

extension Options {
    /// The built-in addons the options switch on, in mitmproxy's order: blocking first, then the
    /// addons that answer requests themselves (onboarding, server replay, map_local), then those
    /// that rewrite them. Saving and printing are the front end's. Fails, naming the option and the
    /// spec, if any spec is malformed or a file it names cannot be read.
    public func builtInAddons() throws(OptionError) -> [any Addon] {
        try validate()
        var addons: [any Addon] = []
        if proxy.anticache { addons.append(AntiCache()) }
        if proxy.anticomp { addons.append(AntiComp()) }
        return addons
    }

    /// Checks what single values cannot: the host patterns compile.
    public func validate() throws(OptionError) {
        do {
            _ = try NextLayerRules(options: proxy)
        } catch {
            throw .invalid(error.option, error.pattern, error.reason)
        }
    }
}
