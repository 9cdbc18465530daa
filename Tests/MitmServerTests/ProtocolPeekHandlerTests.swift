import NIOCore
import NIOEmbedded
import Testing

@testable import MitmServer

/// The peek holds the first bytes until its decision function can decide, and hands exactly those
/// bytes on when the pipeline behind it is ready.
@Suite struct ProtocolPeekHandlerTests {
    /// A peek that decides once it has seen a newline, and then removes itself (at once, or when the
    /// test says so).
    final class LineDecider {
        var decisions = 0
        var removeAtOnce = true
        var decidedContext: ChannelHandlerContext?

        func decide(_ bytes: ByteBuffer) -> ProtocolPeekHandler.Decision {
            guard bytes.readableBytesView.contains(UInt8(ascii: "\n")) else { return .needMoreData }
            return .decided { [self] context in
                decisions += 1
                decidedContext = context
                if removeAtOnce {
                    context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
                }
            }
        }
    }

    @Test func holdsBytesUntilDecidedThenReplaysExactlyThemDripFed() throws {
        let decider = LineDecider()
        let recorder = ByteRecorder()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([
            ProtocolPeekHandler(decide: decider.decide), recorder,
        ])
        let message = Array("HELLO peek\n".utf8)
        for (index, byte) in message.enumerated() {
            try channel.writeInbound(channel.allocator.buffer(bytes: [byte]))
            if index < message.count - 1 {
                #expect(recorder.reads.isEmpty, "nothing passes before the decision (byte \(index))")
                #expect(decider.decisions == 0)
            }
        }
        #expect(decider.decisions == 1)
        #expect(recorder.all == "HELLO peek\n")
        #expect(recorder.reads.count == 1, "the held bytes arrive as one read")
        #expect(!pipeline(channel, contains: ProtocolPeekHandler.self))

        // Once gone, the peek no longer sits in the way.
        try channel.writeInbound(ByteBuffer(text: "more"))
        #expect(recorder.all == "HELLO peek\nmore")
        _ = try channel.finish()
    }

    @Test func bytesArrivingBetweenDecisionAndRemovalAreReplayedToo() throws {
        let decider = LineDecider()
        decider.removeAtOnce = false
        let recorder = ByteRecorder()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([
            ProtocolPeekHandler(decide: decider.decide), recorder,
        ])
        try channel.writeInbound(ByteBuffer(text: "first\n"))
        #expect(decider.decisions == 1)
        // The pipeline is being rebuilt (say, waiting for a certificate): later bytes wait too.
        try channel.writeInbound(ByteBuffer(text: "second"))
        #expect(decider.decisions == 1, "decide is not asked again")
        #expect(recorder.reads.isEmpty)

        let context = try #require(decider.decidedContext)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        #expect(recorder.all == "first\nsecond")
        _ = try channel.finish()
    }

    @Test func removalBeforeAnyByteReplaysNothing() throws {
        let recorder = ByteRecorder()
        let peek = ProtocolPeekHandler { _ in .needMoreData }
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([peek, recorder])
        try channel.pipeline.syncOperations.removeHandler(peek).wait()
        #expect(recorder.reads.isEmpty)
        _ = try channel.finish()
    }

    @Test func closesTheConnectionWhenUndecidedBytesExceedTheLimit() throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ProtocolPeekHandler(limit: 8) { _ in .needMoreData })
        try activate(channel)
        try channel.writeInbound(ByteBuffer(text: "12345678"))
        #expect(channel.isActive, "at the limit is still fine")
        try channel.writeInbound(ByteBuffer(text: "9"))
        #expect(!channel.isActive)
        #expect(isClosed(channel))
    }
}
