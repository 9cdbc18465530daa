import MitmCore
import NIOCore
import NIOHTTP1
import Testing

@Suite("h2c upgrade")
struct H2CUpgradeTests {
    static func head(_ headers: [(String, String)], method: HTTPMethod = .GET) -> HTTPRequestHead {
        HTTPRequestHead(version: .http1_1, method: method, uri: "/x", headers: HTTPHeaders(headers))
    }

    static let offer: [(String, String)] = [
        ("Host", "example.com"), ("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"), ("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA"),
    ]

    @Test func acceptsOnlyACompleteOfferWithoutABody() {
        #expect(H2CUpgrade.canAccept(Self.head(Self.offer)))
        #expect(!H2CUpgrade.canAccept(Self.head(Array(Self.offer.dropLast()))), "no HTTP2-Settings")
        #expect(!H2CUpgrade.canAccept(Self.head(Self.offer + [("Content-Length", "5")], method: .POST)), "a body")
        #expect(!H2CUpgrade.canAccept(Self.head([("Host", "example.com"), ("Connection", "Upgrade"), ("Upgrade", "websocket")])))
    }

    @Test func headersFrameIsStreamOneWithPseudoHeadersFirstAndNoConnectionFields() throws {
        let frame = try #require(H2CUpgrade.headersFrame(for: Self.head(Self.offer + [("Accept", "*/*")])))
        let length = Int(frame[0]) << 16 | Int(frame[1]) << 8 | Int(frame[2])
        #expect(frame.count == 9 + length)
        #expect(frame[3] == 0x01 && frame[4] == 0x05)
        #expect(Array(frame[5..<9]) == [0, 0, 0, 1])
        let block = String(decoding: frame[9...], as: UTF8.self)
        #expect(block.contains(":method") && block.contains(":authority") && block.contains("accept"))
        #expect(!block.contains("upgrade") && !block.contains("http2-settings") && !block.contains("connection"))
        #expect(block.range(of: ":method")!.lowerBound < block.range(of: "accept")!.lowerBound)
    }

    @Test func splicesAfterThePrefaceAndSettingsWhateverTheChunks() {
        let frame: [UInt8] = [9, 9, 9]
        let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
        let settings: [UInt8] = [0, 0, 6, 0x04, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100]
        let after: [UInt8] = [0, 0, 4, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        let input = preface + settings + after
        for chunkSize in [1, 2, 7, 24, 33, input.count] {
            var splicer = H2CUpgrade.Splicer(headersFrame: frame)
            var output: [UInt8] = []
            var index = 0
            while index < input.count {
                let end = min(input.count, index + chunkSize)
                output += splicer.receive(input[index..<end])
                index = end
            }
            #expect(output == preface + settings + frame + after, "chunks of \(chunkSize)")
            #expect(splicer.isDone)
        }
    }

    @Test func passesOnWhatIsNotAPreface() {
        var splicer = H2CUpgrade.Splicer(headersFrame: [9])
        #expect(splicer.receive(Array("GET / HTTP/1.1\r\n".utf8)) == Array("GET / HTTP/1.1\r\n".utf8))
        #expect(splicer.isDone)
    }
}
