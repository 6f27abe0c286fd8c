import LicenseCore
import LicenseWire
import NIOCore

/// A request on its way out, with the promise its answer completes.
struct RequestEnvelope: Sendable {
    var frame: ClientFrame
    var promise: EventLoopPromise<ServerFrame>
    var timeout: TimeAmount
}

/// Matches answers to requests by id on the channel's event loop; forwards notices.
final class ClientFrameHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = RequestEnvelope
    typealias OutboundOut = ByteBuffer

    private var parser: FrameParser
    private var pending: [UInt64: (promise: EventLoopPromise<ServerFrame>, timer: Scheduled<Void>)] = [:]
    private let notices: AsyncStream<Coditect_License_V1_Notice>.Continuation
    private let onNotice: (@Sendable (Coditect_License_V1_Notice) -> Void)?
    private var closedError: LicenseCallError?

    init(maxFrameBytes: Int, notices: AsyncStream<Coditect_License_V1_Notice>.Continuation, onNotice: (@Sendable (Coditect_License_V1_Notice) -> Void)?) {
        self.parser = FrameParser(maxFrameBytes: maxFrameBytes)
        self.notices = notices
        self.onNotice = onNotice
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let envelope = unwrapOutboundIn(data)
        if let closedError {
            envelope.promise.fail(closedError)
            promise?.fail(closedError)
            return
        }
        let id = envelope.frame.id
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let timer = context.eventLoop.scheduleTask(in: envelope.timeout) {
            if let entry = loopBound.value.pending.removeValue(forKey: id) {
                entry.promise.fail(LicenseCallError.timeout())
            }
        }
        pending[id] = (envelope.promise, timer)
        do {
            let bytes = try FrameEncoder.frame(envelope.frame, allocator: context.channel.allocator)
            context.write(wrapOutboundOut(bytes), promise: promise)
        } catch {
            pending.removeValue(forKey: id)
            timer.cancel()
            envelope.promise.fail(LicenseCallError(code: .invalidArgument, reason: "ENCODING", message: "the request could not be encoded"))
            promise?.fail(error)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        parser.append(unwrapInboundIn(data))
        while true {
            switch parser.next() {
            case .needMoreData:
                return
            case .invalid:
                failAll(LicenseCallError(code: .internal, reason: "MALFORMED_FRAME", message: "the server sent a malformed frame"))
                context.close(promise: nil)
                return
            case .frame(let body):
                guard let frame = try? ServerFrame.decode(body) else { continue }
                if frame.id == 0 {
                    if case .notice(let notice) = frame.result {
                        onNotice?(notice)
                        notices.yield(notice)
                    } else if !frame.status.isOK {
                        // A connection-level error: the server closes after it.
                        closedError = LicenseCallError(frame.status)
                    }
                } else if let entry = pending.removeValue(forKey: frame.id) {
                    entry.timer.cancel()
                    entry.promise.succeed(frame)
                }
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(closedError ?? .connectionClosed())
        notices.finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func failAll(_ error: LicenseCallError) {
        closedError = closedError ?? error
        let entries = pending
        pending.removeAll()
        for entry in entries.values {
            entry.timer.cancel()
            entry.promise.fail(error)
        }
    }
}
