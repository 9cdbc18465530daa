import NIOCore
import NIOEmbedded
import Testing

@testable import MitmServer

/// The slowloris and idle timeouts, driven by the embedded loop's clock.
@Suite struct RequestHeadTimerTests {
    final class TimeoutCounter {
        var count = 0
    }

    /// A connected channel with a timer in front of a byte sink.
    func makeChannel(headTimeout: Double, idleTimeout: Double) throws -> (EmbeddedChannel, RequestHeadTimer, TimeoutCounter) {
        let channel = EmbeddedChannel()
        let timer = RequestHeadTimer(headTimeout: headTimeout, idleTimeout: idleTimeout)
        let counter = TimeoutCounter()
        timer.onHeadTimeout = { counter.count += 1 }
        try channel.pipeline.syncOperations.addHandlers([timer, ByteRecorder()])
        try activate(channel)
        return (channel, timer, counter)
    }

    @Test func unfinishedHeadClosesTheConnectionAfterTheHeadTimeout() throws {
        let (channel, _, counter) = try makeChannel(headTimeout: 2, idleTimeout: 60)
        try channel.writeInbound(ByteBuffer(text: "GET / HT"))
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1500))
        #expect(channel.isActive)
        #expect(counter.count == 0)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1000))
        #expect(!channel.isActive)
        #expect(counter.count == 1, "onHeadTimeout runs (to answer 408) before the close")
    }

    @Test func headTimeoutCountsFromTheFirstByteNotFromTheConnection() throws {
        let (channel, _, counter) = try makeChannel(headTimeout: 2, idleTimeout: 60)
        channel.embeddedEventLoop.advanceTime(by: .seconds(5))
        #expect(channel.isActive, "a silent client is only subject to the idle timeout")
        try channel.writeInbound(ByteBuffer(text: "G"))
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1500))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1000))
        #expect(!channel.isActive)
        #expect(counter.count == 1)
    }

    @Test func completeHeadStopsTheHeadTimeout() throws {
        let (channel, timer, counter) = try makeChannel(headTimeout: 2, idleTimeout: 60)
        try channel.writeInbound(ByteBuffer(text: "GET / HTTP/1.1\r\n\r\n"))
        timer.headReceived()
        channel.embeddedEventLoop.advanceTime(by: .seconds(10))
        #expect(channel.isActive)
        #expect(counter.count == 0)
        _ = try channel.finish()
    }

    @Test func nextRequestGetsItsOwnHeadTimeout() throws {
        let (channel, timer, counter) = try makeChannel(headTimeout: 2, idleTimeout: 60)
        try channel.writeInbound(ByteBuffer(text: "GET / HTTP/1.1\r\n\r\n"))
        timer.headReceived()
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        timer.exchangeFinished()
        channel.embeddedEventLoop.advanceTime(by: .seconds(5))
        #expect(channel.isActive, "a kept-alive connection waiting for its next request is not a slow head")
        try channel.writeInbound(ByteBuffer(text: "GET /next"))
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(2500))
        #expect(!channel.isActive)
        #expect(counter.count == 1)
    }

    @Test func idleTimeoutClosesASilentConnection() throws {
        let (channel, _, counter) = try makeChannel(headTimeout: 60, idleTimeout: 4)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(3500))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive)
        #expect(counter.count == 0, "an idle close is not a head timeout")
    }

    @Test func activityPostponesTheIdleTimeout() throws {
        let (channel, timer, _) = try makeChannel(headTimeout: 60, idleTimeout: 4)
        channel.embeddedEventLoop.advanceTime(by: .seconds(3))
        try channel.writeInbound(ByteBuffer(text: "GET / HTTP/1.1\r\n\r\n"))
        timer.headReceived()
        channel.embeddedEventLoop.advanceTime(by: .seconds(3))
        #expect(channel.isActive, "6 s since the start, but only 3 s since the last byte")
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(!channel.isActive)
    }

    @Test func removedTimerNoLongerCloses() throws {
        let (channel, timer, counter) = try makeChannel(headTimeout: 2, idleTimeout: 4)
        try channel.writeInbound(ByteBuffer(text: "GET"))
        try channel.pipeline.syncOperations.removeHandler(timer).wait()
        channel.embeddedEventLoop.advanceTime(by: .seconds(30))
        #expect(channel.isActive)
        #expect(counter.count == 0)
        _ = try channel.finish()
    }
}
