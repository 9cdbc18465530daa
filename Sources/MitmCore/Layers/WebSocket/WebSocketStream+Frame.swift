import NIOCore

extension WebSocketStreamStateMachine {
    /// One WebSocket frame as the state machine sees it (RFC 6455 §5.2): the header bits that matter for
    /// validation and the payload, already unmasked. The driver translates from and to its codec's frame
    /// type (NIOWebSocket's), so the core does not depend on a codec.
    public struct Frame: Sendable, Hashable {
        /// The RFC 6455 opcodes; anything else is reserved and a protocol error.
        public enum Opcode {
            public static let continuation: UInt8 = 0x0
            public static let text: UInt8 = 0x1
            public static let binary: UInt8 = 0x2
            public static let close: UInt8 = 0x8
            public static let ping: UInt8 = 0x9
            public static let pong: UInt8 = 0xA
        }

        public var fin: Bool
        /// RSV1, RSV2 and RSV3 as the low three bits (RSV1 is 0b100). Must be zero: we negotiate no extension.
        public var reservedBits: UInt8
        public var opcode: UInt8
        /// Whether the frame arrived masked. Outgoing frames leave this `false`: the driver masks what
        /// it sends to the server, with a fresh key per frame (RFC 6455 §5.3).
        public var isMasked: Bool
        /// The payload, unmasked.
        public var payload: ByteBuffer

        public init(fin: Bool = true, reservedBits: UInt8 = 0, opcode: UInt8, isMasked: Bool = false, payload: ByteBuffer) {
            self.fin = fin
            self.reservedBits = reservedBits
            self.opcode = opcode
            self.isMasked = isMasked
            self.payload = payload
        }

        public var isControl: Bool { opcode & 0x8 != 0 }

        /// A close frame with `code` and `reason` (RFC 6455 §5.5.1).
        public static func close(code: Int, reason: String) -> Frame {
            var payload = ByteBuffer()
            payload.writeInteger(UInt16(truncatingIfNeeded: code))
            // A control frame carries at most 125 bytes: the reason is cut to fit, on a character boundary.
            var text = Substring(reason)
            while text.utf8.count > 123 { text = text.dropLast() }
            payload.writeString(String(text))
            return Frame(opcode: Opcode.close, payload: payload)
        }
    }
}
