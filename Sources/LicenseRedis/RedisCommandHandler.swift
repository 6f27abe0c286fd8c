import CHiredis
import NIOCore

/// A command on its way out, with the promise its reply completes.
struct RedisRequest {
    var command: RedisCommand
    var promise: EventLoopPromise<RESPValue>
}

/// Encodes commands as RESP arrays, parses replies with hiredis's reader, and answers requests in
/// order (Redis answers a connection's commands in the order they were sent, so many commands may
/// be in flight at once: pipelining).
///
/// A command not answered within `timeout` fails every pending command and closes the
/// connection: after a missing reply the stream can no longer be matched to its requests.
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
    private var reader: UnsafeMutablePointer<redisReader>?
    private var pending = CircularBuffer<Pending>(initialCapacity: 16)
    private var timer: Scheduled<Void>?
    private var failure: RedisClientError?

    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        reader = redisReaderCreate()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        failAll(RedisClientError(.connectionClosed, "the Redis connection closed"))
        if let reader { redisReaderFree(reader) }
        reader = nil
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
        guard let reader else { return }
        let buffer = unwrapInboundIn(data)
        let fed = buffer.withUnsafeReadableBytes { bytes in
            redisReaderFeed(reader, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count)
        }
        guard fed == REDIS_OK else { return fail(context: context, .protocolError, "hiredis refused the reply bytes") }
        while true {
            var raw: UnsafeMutableRawPointer?
            guard redisReaderGetReply(reader, &raw) == REDIS_OK else {
                return fail(context: context, .protocolError, "the reply was not valid RESP")
            }
            guard let raw else { break }
            let reply = raw.assumingMemoryBound(to: redisReply.self)
            let value = Self.convert(reply)
            freeReplyObject(raw)
            guard let next = pending.popFirst() else {
                return fail(context: context, .protocolError, "a reply arrived with no command waiting for it")
            }
            next.promise.succeed(value)
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

    private static func convert(_ reply: UnsafeMutablePointer<redisReply>) -> RESPValue {
        let r = reply.pointee
        switch r.type {
        case REDIS_REPLY_STRING:
            return .bulkString(bytes(r.str, r.len))
        case REDIS_REPLY_STATUS:
            return .simpleString(String(decoding: bytes(r.str, r.len), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            return .error(String(decoding: bytes(r.str, r.len), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(r.integer))
        case REDIS_REPLY_ARRAY:
            var elements: [RESPValue] = []
            elements.reserveCapacity(Int(r.elements))
            for i in 0..<Int(r.elements) {
                if let element = r.element[i] { elements.append(convert(element)) } else { elements.append(.null) }
            }
            return .array(elements)
        default:
            return .null
        }
    }

    private static func bytes(_ pointer: UnsafeMutablePointer<CChar>?, _ count: Int) -> [UInt8] {
        guard let pointer, count > 0 else { return [] }
        return pointer.withMemoryRebound(to: UInt8.self, capacity: count) { Array(UnsafeBufferPointer(start: $0, count: count)) }
    }
}
