import NIOCore

/// A command on its way out, with the promise its reply completes.
struct RedisRequest {
    var command: RedisCommand
    var promise: EventLoopPromise<RESPValue>
}

/// Encodes commands as RESP arrays, parses replies with `RESPDecoder`, and answers requests in
/// order (Redis answers a connection's commands in the order they were sent, so many commands may
/// be in flight at once: pipelining).
///
/// A command not answered within `timeout` fails every pending command and closes the
/// connection: after a missing reply the stream can no longer be matched to its requests. A reply
/// that is not valid RESP, or breaks the decoder's limits, does the same for this connection only.
final class RedisCommandHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = Never
    typealias OutboundIn = RedisRequest
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        var promise: EventLoopPromise<RESPValue>
        var deadline: NIODeadline
    }

    private let timeout: TimeAmount
    private let decoder: NIOSingleStepByteToMessageProcessor<RESPDecoder>
    private var pending = CircularBuffer<Pending>(initialCapacity: 16)
    private var timer: Scheduled<Void>?
    private var failure: RedisClientError?

    init(timeout: TimeAmount, limits: RESPDecoder.Limits = RESPDecoder.Limits()) {
        self.timeout = timeout
        self.decoder = NIOSingleStepByteToMessageProcessor(RESPDecoder(limits: limits))
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        failAll(RedisClientError(.connectionClosed, "the Redis connection closed"))
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        if let failure {
            request.promise.fail(failure)
            promise?.fail(failure)
            return
        }
        var buffer = context.channel.allocator.buffer(capacity: 64)
        buffer.writeString("*\(request.command.arguments.count)\r\n")
        for argument in request.command.arguments {
            buffer.writeString("$\(argument.utf8.count)\r\n")
            buffer.writeString(argument)
            buffer.writeString("\r\n")
        }
        pending.append(Pending(promise: request.promise, deadline: .now() + timeout))
        if timer == nil { scheduleTimer(context: context) }
        context.write(wrapOutboundOut(buffer), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard failure == nil else { return }
        do {
            try decoder.process(buffer: unwrapInboundIn(data)) { value in
                if case .push = value { return }  // out of band (RESP3), never a command's answer
                guard let next = pending.popFirst() else {
                    throw RedisClientError(.protocolError, "a reply arrived with no command waiting for it")
                }
                next.promise.succeed(value)
            }
        } catch let error as RedisClientError {
            return fail(context: context, error.code, error.message)
        } catch {
            return fail(context: context, .protocolError, "the Redis reply could not be read")
        }
        if pending.isEmpty {
            timer?.cancel()
            timer = nil
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(RedisClientError(.connectionClosed, "the Redis connection closed"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(context: context, .connectionClosed, "the Redis connection failed")
    }

    private func scheduleTimer(context: ChannelHandlerContext) {
        guard let first = pending.first else { return }
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: first.deadline) { [self] in
            timer = nil
            guard let first = pending.first else { return }
            if first.deadline <= .now() {
                fail(context: context, .timeout, "Redis did not answer within \(timeout.nanoseconds / 1_000_000) ms")
            } else {
                scheduleTimer(context: context)
            }
        }
    }

    private func fail(context: ChannelHandlerContext, _ code: RedisClientError.Code, _ message: String) {
        failAll(RedisClientError(code, message))
        context.close(promise: nil)
    }

    private func failAll(_ error: RedisClientError) {
        failure = failure ?? error
        timer?.cancel()
        timer = nil
        while let next = pending.popFirst() { next.promise.fail(error) }
    }
}
