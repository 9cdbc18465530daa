import Synchronization
import X509

/// Hands out interception certificates: user-supplied ones first, then generated ones from a bounded cache.
///
/// The analogue of mitmproxy's `CertStore`, safe to share between event loops and tasks:
///
/// - ``cachedLeaf(for:)`` is a lock-protected lookup that never signs, for hot paths that can't suspend.
/// - ``leaf(for:)`` signs on a miss. Concurrent first requests for the same ``LeafRequest`` sign once:
///   the first caller signs, the others wait for its result (in-flight de-duplication).
/// - ``leafNow(for:)`` is the synchronous variant. It can't wait for another caller's signing, so if one is
///   under way it signs its own copy; the first certificate to reach the cache stays there.
///
/// Before generating, requests are matched against user certificates (``addCustomCertificate(spec:)``) by
/// the CN's and SANs' names and wildcard forms, then `*`, as mitmproxy's `get_cert` does.
///
/// The cache keeps the ``capacity`` most recently used certificates (mitmproxy keeps the last 100
/// generated). Certificates are valid for a year, longer than any proxy run, so entries never expire by age.
public final class CertificateStore: Sendable {
    /// The default cache bound: enough for a browsing session's hosts, about 1.5 KB of DER each.
    public static let defaultCapacity = 1000

    /// The CA that signs generated certificates.
    public let authority: CertificateAuthority
    /// How many generated certificates the cache keeps.
    public let capacity: Int

    private let state: Mutex<State>
    /// Signs a generated certificate: the CA's ``CertificateAuthority/signLeaf(for:now:)``, or a stand-in
    /// in tests that need signings to overlap.
    private let signer: @Sendable (LeafRequest) throws -> LeafCertificate

    /// - Parameters:
    ///   - authority: the CA that signs, and whose key generated certificates use.
    ///   - capacity: how many generated certificates to keep (at least 1).
    public convenience init(authority: CertificateAuthority, capacity: Int = CertificateStore.defaultCapacity) {
        self.init(authority: authority, capacity: capacity, signer: { try authority.signLeaf(for: $0) })
    }

    init(
        authority: CertificateAuthority,
        capacity: Int,
        signer: @escaping @Sendable (LeafRequest) throws -> LeafCertificate
    ) {
        self.authority = authority
        self.capacity = max(1, capacity)
        self.signer = signer
        self.state = Mutex(State())
    }

    /// Loads or creates the CA in `confdir` (see ``CertificateAuthority/loadOrCreate(confdir:basename:keySize:)``)
    /// and makes a store for it.
    public convenience init(
        confdir: String,
        basename: String = "mitmproxy",
        keySize: Int = 2048,
        capacity: Int = CertificateStore.defaultCapacity
    ) throws {
        let authority = try CertificateAuthority.loadOrCreate(confdir: confdir, basename: basename, keySize: keySize)
        self.init(authority: authority, capacity: capacity)
    }

    // MARK: - Generated certificates

    /// The certificate for `request` if one is ready, without signing: a matching user certificate, or a
    /// cached generated one (which then counts as recently used).
    public func cachedLeaf(for request: LeafRequest) -> LeafCertificate? {
        self.state.withLock { state in
            state.customCertificate(for: request) ?? state.cache.value(for: request)
        }
    }

    /// The certificate for `request`, signing it on a cache miss.
    ///
    /// Concurrent calls with an equal request sign once; the callers that find a signing under way
    /// suspend until it finishes and share its result (or its error). Signing itself is one RSA or ECDSA
    /// signature and runs on the caller's task.
    public func leaf(for request: LeafRequest) async throws -> LeafCertificate {
        let decision = self.state.withLock { state -> Lookup in
            state.lookup(request, registerAsSigner: true)
        }
        switch decision {
        case .found(let leaf):
            return leaf
        case .wait(let waiterID):
            return try await self.waitForSigning(of: request, waiterID: waiterID)
        case .sign:
            return try self.signAndPublish(request, registered: true)
        }
    }

    /// The certificate for `request`, signing it synchronously on a cache miss. Prefer ``leaf(for:)`` where
    /// a suspension is possible: only that one joins another caller's signing instead of duplicating it.
    public func leafNow(for request: LeafRequest) throws -> LeafCertificate {
        let decision = self.state.withLock { state -> Lookup in
            state.lookup(request, registerAsSigner: false)
        }
        switch decision {
        case .found(let leaf):
            return leaf
        case .wait, .sign:
            return try self.signAndPublish(request, registered: false)
        }
    }

    /// How many certificates this store has signed so far (cache misses that reached the CA).
    public var signedLeafCount: Int {
        self.state.withLock { $0.signedCount }
    }

    /// How many ``leaf(for:)`` calls joined a signing already under way instead of signing.
    var joinedSigningCount: Int {
        self.state.withLock { $0.joinedCount }
    }

    /// Whether a ``leaf(for:)`` caller is signing `request` right now.
    func isSigning(_ request: LeafRequest) -> Bool {
        self.state.withLock { $0.inFlight[request] != nil }
    }

    /// How many generated certificates are cached.
    public var cachedLeafCount: Int {
        self.state.withLock { $0.cache.count }
    }

    /// Signs, then publishes the result to the cache and to anyone waiting.
    private func signAndPublish(_ request: LeafRequest, registered: Bool) throws -> LeafCertificate {
        let result: Result<LeafCertificate, any Error>
        do {
            result = .success(try self.signer(request))
        } catch {
            result = .failure(error)
        }
        let (leaf, waiters) = self.state.withLock { state in
            state.finishSigning(request, result: result, registered: registered, capacity: self.capacity)
        }
        for waiter in waiters {
            waiter.resume(with: leaf)
        }
        return try leaf.get()
    }

    private func waitForSigning(of request: LeafRequest, waiterID: Int) async throws -> LeafCertificate {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<LeafCertificate, any Error>) in
            let leftover = self.state.withLock { state -> Result<LeafCertificate, any Error>? in
                state.attachWaiter(continuation, to: request, waiterID: waiterID)
            }
            if let leftover {
                continuation.resume(with: leftover)
            }
        }
    }

    // MARK: - User certificates

    /// Adds a user certificate from a mitmproxy `--certs` specification: `[domain=]path`.
    ///
    /// Without `domain=` the certificate serves every host (`*`). The split is at the first `=`, as in
    /// mitmproxy. The PEM file must hold the certificate first, then optionally its chain; the private key
    /// may be anywhere in the file, and may be omitted if the certificate uses the CA's key.
    /// Like mitmproxy, the certificate is also registered under its own CN and SAN names.
    public func addCustomCertificate(spec: String) throws {
        let parts = spec.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        let domain: String
        let path: String
        if parts.count == 2 {
            domain = String(parts[0])
            path = String(parts[1])
        } else {
            domain = "*"
            path = spec
        }
        guard !domain.isEmpty else {
            throw CertificateStoreError.invalidSpec(spec, reason: "empty domain before \"=\"")
        }
        guard !path.isEmpty else {
            throw CertificateStoreError.invalidSpec(spec, reason: "no certificate file named")
        }
        try self.addCustomCertificate(domain: domain, pemFile: path)
    }

    /// Adds a user certificate for `domain` (an exact name, a `*.example.com` wildcard, or `*` for all
    /// hosts) from the PEM file at `path`. See ``addCustomCertificate(spec:)``.
    public func addCustomCertificate(domain: String, pemFile path: String) throws {
        let entry = try CustomCertificates.load(pemFile: path, authority: self.authority)
        self.state.withLock { state in
            state.custom.add(entry.leaf, names: entry.names + [domain])
        }
    }

    /// The user certificate for `host`, if any: the exact name first, then its wildcard forms
    /// (`*.example.com`, `*.com`), then `*`. Names compare case-insensitively.
    public func customCertificate(forHost host: String) -> LeafCertificate? {
        self.state.withLock { state in
            state.custom.match(keys: LeafRequest.host(host).customCertificateKeys)
        }
    }
}

// MARK: - State

extension CertificateStore {
    fileprivate enum Lookup {
        case found(LeafCertificate)
        /// Another caller is signing; wait under this waiter id.
        case wait(Int)
        /// The caller must sign.
        case sign
    }

    /// Everything behind the lock.
    fileprivate struct State {
        var cache = LeafCache()
        var custom = CustomCertificates()
        /// Requests being signed by a ``leaf(for:)`` caller, with the callers waiting for them.
        var inFlight: [LeafRequest: InFlight] = [:]
        var signedCount = 0
        var joinedCount = 0
        var nextWaiterID = 0
        /// Results kept for waiters that had not attached when signing finished, by waiter id.
        var finished: [Int: Result<LeafCertificate, any Error>] = [:]

        struct InFlight {
            var waiters: [CheckedContinuation<LeafCertificate, any Error>] = []
            /// Waiters that asked to wait but haven't attached their continuation yet.
            var pendingWaiterIDs: Set<Int> = []
        }

        func customCertificate(for request: LeafRequest) -> LeafCertificate? {
            self.custom.isEmpty ? nil : self.custom.match(keys: request.customCertificateKeys)
        }

        mutating func lookup(_ request: LeafRequest, registerAsSigner: Bool) -> Lookup {
            if let leaf = self.customCertificate(for: request) ?? self.cache.value(for: request) {
                return .found(leaf)
            }
            if self.inFlight[request] != nil {
                guard registerAsSigner else {
                    return .sign
                }
                let id = self.nextWaiterID
                self.nextWaiterID += 1
                self.joinedCount += 1
                self.inFlight[request]!.pendingWaiterIDs.insert(id)
                return .wait(id)
            }
            if registerAsSigner {
                self.inFlight[request] = InFlight()
            }
            return .sign
        }

        /// Attaches a waiter's continuation. Returns the result instead if signing finished in between
        /// (the signer then left it in ``finished``).
        mutating func attachWaiter(
            _ continuation: CheckedContinuation<LeafCertificate, any Error>,
            to request: LeafRequest,
            waiterID: Int
        ) -> Result<LeafCertificate, any Error>? {
            if self.inFlight[request]?.pendingWaiterIDs.remove(waiterID) != nil {
                self.inFlight[request]!.waiters.append(continuation)
                return nil
            }
            guard let result = self.finished.removeValue(forKey: waiterID) else {
                preconditionFailure("waiter \(waiterID) for \(request) is neither waiting nor served")
            }
            return result
        }

        mutating func finishSigning(
            _ request: LeafRequest,
            result: Result<LeafCertificate, any Error>,
            registered: Bool,
            capacity: Int
        ) -> (Result<LeafCertificate, any Error>, [CheckedContinuation<LeafCertificate, any Error>]) {
            var published = result
            if case .success(let leaf) = result {
                self.signedCount += 1
                if let existing = self.cache.value(for: request) {
                    // A synchronous caller raced us; keep the first certificate so every caller sees one.
                    published = .success(existing)
                } else {
                    self.cache.insert(leaf, for: request, capacity: capacity)
                }
            }
            guard registered, let flight = self.inFlight.removeValue(forKey: request) else {
                return (published, [])
            }
            for id in flight.pendingWaiterIDs {
                self.finished[id] = published
            }
            return (published, flight.waiters)
        }
    }
}
