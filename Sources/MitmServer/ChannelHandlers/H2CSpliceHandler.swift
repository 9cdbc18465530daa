import MitmCore
import NIOCore

/// After an accepted `Upgrade: h2c`: puts the upgrade request, as a stream-1 HEADERS frame, into the
/// client's bytes right after its HTTP/2 preface (`H2CUpgrade.Splicer`), then leaves the pipeline.
final class H2CSpliceHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private var splicer: H2CUpgrade.Splicer

    init(headersFrame: [UInt8]) {
        self.splicer = H2CUpgrade.Splicer(headersFrame: headersFrame)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = splicer.receive(unwrapInboundIn(data).readableBytesView)
        if !bytes.isEmpty {
            context.fireChannelRead(wrapInboundOut(context.channel.allocator.buffer(bytes: bytes)))
        }
        if splicer.isDone {
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }
}
