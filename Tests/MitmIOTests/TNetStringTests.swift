import MitmIO
import MitmCore
import MitmTestSupport
import Testing

@Test func knownEncodings() throws {
    #expect(TNetValue.string("hello world").serialized() == Array("11:hello world;".utf8))
    #expect(TNetValue.bytes(Array("hi".utf8)).serialized() == Array("2:hi,".utf8))
    #expect(TNetValue.list([.int(12345), .bool(true), .int(0)]).serialized() == Array("19:5:12345#4:true!1:0#]".utf8))
    #expect(TNetValue.null.serialized() == Array("0:~".utf8))
    #expect(TNetValue.float(1.5).serialized() == Array("3:1.5^".utf8))
    let dict: TNetDict = ["b": .int(1), "a": .null]
    #expect(TNetValue.dict(dict).serialized() == Array("15:1:b;1:1#1:a;0:~}".utf8))
    #expect(try TNetParser.parse(Array("15:1:b,1:1#1:a;0:~}".utf8)) == .dict(dict))  // bytes keys read as text
}

private func randomValue(_ rng: inout SplitMix64, depth: Int = 0) -> TNetValue {
    switch Int.random(in: 0..<(depth > 3 ? 6 : 8), using: &rng) {
    case 0: return .bytes((0..<Int.random(in: 0..<20, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })
    case 1: return .string(String((0..<Int.random(in: 0..<10, using: &rng)).map { _ in Character(Unicode.Scalar(UInt8.random(in: 32...126, using: &rng))) }) + (Bool.random(using: &rng) ? "é☃" : ""))
    case 2: return .int(Int.random(in: Int.min...Int.max, using: &rng))
    case 3: return .float([0.1, -2.5e-300, 1e16, 1_700_000_000.123456, Double.random(in: -1e9...1e9, using: &rng)].randomElement(using: &rng)!)
    case 4: return .bool(Bool.random(using: &rng))
    case 5: return .null
    case 6: return .list((0..<Int.random(in: 0..<5, using: &rng)).map { _ in randomValue(&rng, depth: depth + 1) })
    default:
        var d = TNetDict()
        for _ in 0..<Int.random(in: 0..<5, using: &rng) { d["k\(Int.random(in: 0..<100, using: &rng))"] = randomValue(&rng, depth: depth + 1) }
        return .dict(d)
    }
}

@Test func randomValuesRoundTrip() throws {
    var rng = SplitMix64(seed: 42)
    for _ in 0..<2000 {
        let value = randomValue(&rng)
        let bytes = value.serialized()
        #expect(try TNetParser.parse(bytes) == value)
        // Fed a byte at a time, the incremental parser sees the same value.
        var parser = TNetParser()
        var result: TNetValue?
        for byte in bytes {
            #expect(result == nil)
            parser.append([byte])
            if let v = try parser.next() { result = v }
        }
        #expect(result == value)
    }
}

@Test func randomBytesNeverCrash() {
    var rng = SplitMix64(seed: 7)
    let alphabet = Array("0123456789:,;#^!~]}truefalse".utf8)
    for round in 0..<5000 {
        let count = Int.random(in: 0..<40, using: &rng)
        let bytes: [UInt8] = (0..<count).map { _ in
            round % 2 == 0 ? UInt8.random(in: 0...255, using: &rng) : alphabet.randomElement(using: &rng)!
        }
        var parser = TNetParser(maximumLength: 1 << 20)
        parser.append(bytes)
        while (try? parser.next()) != nil {}
    }
    // Mutations of a valid flow file are rejected or parsed, never a crash.
    let valid = TNetValue.list([.dict(["a": .list([.int(1), .string("x")])]), .float(2.5)]).serialized()
    for _ in 0..<3000 {
        var bytes = valid
        bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
        _ = try? TNetParser.parse(bytes)
        _ = readAll(bytes)
    }
}

@Test func hugeLengthPrefixesAreRejectedWithoutAllocating() throws {
    var parser = TNetParser(maximumLength: 1024)
    parser.append(Array("99999999:".utf8))
    #expect(throws: TNetStringError.self) { try parser.next() }
    do {
        var parser = TNetParser(maximumLength: 1024)
        parser.append(Array("99999999".utf8))
        _ = try parser.next()
        Issue.record("expected an error")
    } catch {
        #expect(error.offset == 0)
        #expect(error.expected.contains("at most 1024"))
    }
    // More than 12 digits is refused even without a maximum.
    #expect(throws: TNetStringError.self) { try TNetParser.parse(Array("9999999999999999999999:".utf8)) }
    // A nested length larger than its container is an error, not an allocation.
    let error = #expect(throws: TNetStringError.self) { try TNetParser.parse(Array("14:999999999:abc,]".utf8)) }
    #expect(error?.offset == 3)
    // A file claiming a 2 GB flow fails at once with the offset.
    let (records, readError) = readAll(Array("2000000000:{".utf8))
    #expect(records.isEmpty)
    #expect(readError?.offset == 0)
}

@Test func errorsCarryOffsetAndExpectation() {
    let error = #expect(throws: TNetStringError.self) { try TNetParser.parse(Array("4:true!3:abcX".utf8)) }
    #expect(error != nil)
    let bad = #expect(throws: TNetStringError.self) { try TNetParser.parse(Array("2:ab?".utf8)) }
    #expect(bad?.offset == 4)
    #expect(bad?.expected.contains("type tag") == true)
    var deep = TNetValue.null
    for _ in 0..<100 { deep = .list([deep]) }
    #expect(throws: TNetStringError.self) { try TNetParser.parse(deep.serialized()) }
}
