import LicenseCore
import LicenseWire
import NIOCore

/// What the connection loop reads: complete frames, or the reason the stream ended.
public enum InboundEvent: Sendable {
    case frame(ByteBuffer)
    /// The stream cannot be continued: answer with this error (request id 0) and close.
    /// (Boxed, so that an event is the size of a buffer: every connection's reader keeps one.)
    indirect case fatal(LicenseError)
}

/// Frames the decrypted byte stream and enforces the two read deadlines:
/// - a frame deadline: once any byte of a frame (or the connection itself) has arrived, the
///   whole frame must arrive within `frameTimeout`, so a peer trickling bytes cannot hold a
///   connection open; the first frame is measured from connect, which covers a stalled TLS
///   handshake too;
/// - an idle timeout: with no frame in progress, the next one must start within `idleTimeout`.
/// After a fatal event the channel is closed `linger` later even if the answer cannot be written.
final class FrameReader: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = InboundEvent

    private var parser: FrameParser
    private let frameTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    private let linger: TimeAmount
    private var deadline: Scheduled<Void>?
    private var failed = false

    init(maxFrameBytes: Int, frameTimeout: TimeAmount, idleTimeout: TimeAmount, linger: TimeAmount = .seconds(2)) {
        self.parser = FrameParser(maxFrameBytes: maxFrameBytes)
        self.frameTimeout = frameTimeout
        self.idleTimeout = idleTimeout
        self.linger = linger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context, frameTimeout, .frameTimeout) }
    }

    func channelActive(context: ChannelHandlerContext) {
        if deadline == nil { arm(context, frameTimeout, .frameTimeout) }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        parser.append(unwrapInboundIn(data))
        var sawFrame = false
        loop: while true {
            switch parser.next() {
            case .frame(let body):
                sawFrame = true
                context.fireChannelRead(wrapInboundOut(.frame(body)))
            case .needMoreData:
                break loop
            case .invalid(let error):
                fail(context, error)
                return
            }
        }
        if parser.hasPartialFrame {
            // A frame has started: it must finish within the frame timeout of its first byte.
            if sawFrame || !isFrameDeadlineArmed { arm(context, frameTimeout, .frameTimeout) }
        } else if sawFrame {
            arm(context, idleTimeout, .idleTimeout)
        }
    }

    private var armedReason: LicenseError.Reason?
    private var isFrameDeadlineArmed: Bool { deadline != nil && armedReason == .frameTimeout }

    private func arm(_ context: ChannelHandlerContext, _ timeout: TimeAmount, _ reason: LicenseError.Reason) {
        deadline?.cancel()
        armedReason = reason
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: timeout) {
            let (handler, context) = loopBound.value
            let message = reason == .idleTimeout ? "the connection was idle too long" : "a frame did not arrive in time"
            handler.fail(context, LicenseError(.deadlineExceeded, reason, message))
            // Outside a read cycle: NIOAsyncChannel delivers buffered reads on read-complete.
            context.fireChannelReadComplete()
        }
    }

    private func fail(_ context: ChannelHandlerContext, _ error: LicenseError) {
        guard !failed else { return }
        failed = true
        deadline?.cancel()
        deadline = nil
        context.fireChannelRead(wrapInboundOut(.fatal(error)))
        // The answer gets a short while to be written; a peer that never reads cannot keep us.
        let channel = context.channel
        context.eventLoop.scheduleTask(in: linger) { channel.close(promise: nil) }
    }
}
