/// A least-recently-used map from requests to generated certificates. Not thread-safe: lives inside
/// ``CertificateStore``'s lock.
///
/// Hits are O(1). Inserting into a full cache scans for the oldest entry, O(capacity); that happens only
/// after a signature, which costs far more than scanning a thousand entries.
struct LeafCache {
    private struct Entry {
        var leaf: LeafCertificate
        var lastUse: UInt64
    }

    private var entries: [LeafRequest: Entry] = [:]
    private var clock: UInt64 = 0

    var count: Int { self.entries.count }

    /// The certificate for `request`, marking it as just used.
    mutating func value(for request: LeafRequest) -> LeafCertificate? {
        guard self.entries[request] != nil else {
            return nil
        }
        self.clock += 1
        self.entries[request]!.lastUse = self.clock
        return self.entries[request]!.leaf
    }

    /// Stores `leaf`, evicting the least recently used entry if the cache holds `capacity` entries.
    mutating func insert(_ leaf: LeafCertificate, for request: LeafRequest, capacity: Int) {
        self.clock += 1
        if self.entries[request] == nil, self.entries.count >= capacity,
            let oldest = self.entries.min(by: { $0.value.lastUse < $1.value.lastUse })?.key
        {
            self.entries.removeValue(forKey: oldest)
        }
        self.entries[request] = Entry(leaf: leaf, lastUse: self.clock)
    }
}
