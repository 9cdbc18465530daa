import NIOHTTP1

/// HTTP header fields as mitmproxy models them: an ordered, multi-valued list whose names keep their
/// original case and order byte for byte, with case-insensitive lookup.
///
/// The storage is NIO's `HTTPHeaders`, which already has exactly these properties, so moving a head
/// between the wire codecs and the flow model copies nothing.
public struct Headers: Sendable, Hashable {
    public var storage: HTTPHeaders

    public init(_ storage: HTTPHeaders = HTTPHeaders()) {
        self.storage = storage
    }

    public init(_ fields: [(String, String)]) {
        self.storage = HTTPHeaders(fields)
    }

    /// All fields, in wire order.
    public var fields: [(name: String, value: String)] {
        self.storage.map { ($0.name, $0.value) }
    }

    public var count: Int { self.storage.count }
    public var isEmpty: Bool { self.storage.isEmpty }

    /// The first value of `name` (case-insensitive), as mitmproxy's `headers[name]`... except that
    /// mitmproxy joins repeated fields with ", "; so do we.
    public subscript(name: String) -> String? {
        get {
            let values = self.storage[name]
            switch values.count {
            case 0: return nil
            case 1: return values[0]
            default: return values.joined(separator: ", ")
            }
        }
        set {
            guard let newValue else {
                self.storage.remove(name: name)
                return
            }
            guard self.storage.contains(name: name) else {
                self.storage.add(name: name, value: newValue)
                return
            }
            // Like mitmproxy: the first field keeps its place and its name's case; repeats go.
            var replaced = HTTPHeaders()
            var seen = false
            for field in self.storage {
                if field.name.caseInsensitiveEquals(name) {
                    if !seen {
                        replaced.add(name: field.name, value: newValue)
                        seen = true
                    }
                } else {
                    replaced.add(name: field.name, value: field.value)
                }
            }
            self.storage = replaced
        }
    }

    /// Every value of `name`, one per field line (mitmproxy's `get_all`).
    public func values(for name: String) -> [String] {
        self.storage[name]
    }

    public func contains(_ name: String) -> Bool {
        self.storage.contains(name: name)
    }

    public mutating func add(_ name: String, _ value: String) {
        self.storage.add(name: name, value: value)
    }

    public mutating func remove(_ name: String) {
        self.storage.remove(name: name)
    }

    public static func == (lhs: Headers, rhs: Headers) -> Bool {
        lhs.storage.elementsEqual(rhs.storage) { $0.name == $1.name && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        for field in self.storage {
            hasher.combine(field.name)
            hasher.combine(field.value)
        }
    }
}

extension Headers: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (String, String)...) {
        self.storage = HTTPHeaders(elements)
    }
}

extension Headers: Sequence {
    public func makeIterator() -> some IteratorProtocol<(name: String, value: String)> {
        self.storage.makeIterator()
    }
}

extension String {
    fileprivate func caseInsensitiveEquals(_ other: String) -> Bool {
        self.utf8.count == other.utf8.count && self.lowercased() == other.lowercased()
    }
}
