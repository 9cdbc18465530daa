import NIOCore
import NIOEmbedded
import Testing

@testable import MitmServer

/// The peek decided from elsewhere (the server spoke first), and a FIN held with the bytes.
@Suite struct ProtocolPeekHandlerEarlyDecisionTests {
    /// Records reads and input-closed events, in order.
    final class EventRecorder: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        var events: [String] = []

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            events.append("read \(String(buffer: unwrapInboundIn(data)))")
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let event = event as? ChannelEvent, case .inputClosed = event { events.append("inputClosed") }
        }
    }

    @Test func decideNowRunsOnceAndLaterBytesWaitForRemoval() throws {
        var client: [ChannelHandlerContext] = []
        let peek = ProtocolPeekHandler { _ in .needMoreData }
        let recorder = EventRecorder()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([peek, recorder])
        try channel.writeInbound(ByteBuffer(string: "ab"))
        peek.decide(now: { client.append($0) })
        peek.decide(now: { client.append($0) })
        #expect(client.count == 1)
        try channel.writeInbound(ByteBuffer(string: "cd"))
        #expect(recorder.events.isEmpty)
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(recorder.events.isEmpty, "the FIN waits behind the held bytes")
        try channel.pipeline.syncOperations.removeHandler(peek).wait()
        #expect(recorder.events == ["read abcd", "inputClosed"])
    }

    @Test func onAddedSeesTheContext() throws {
        var added = 0
        let peek = ProtocolPeekHandler { _ in .needMoreData }
        peek.onAdded = { _ in added += 1 }
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(peek)
        #expect(added == 1)
    }
}
