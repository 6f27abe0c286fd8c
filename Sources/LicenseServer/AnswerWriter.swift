import LicenseCore
import LicenseWire
import NIOCore
import Synchronization

/// Writes one connection's answers in completion order, each from the task that computed it.
///
/// There is no writer task per connection: an answer is encoded by its call's task and handed to
/// the channel, whose event loop encrypts and writes it. That saves a task (and its stack) per
/// connection and a task switch per answer.
///
/// - Every answer owed to a request frame (refusals of undecodable and id-0 frames too) holds its
///   reader slot until it is written, so a peer that does not read stops being read: at most
///   `maxInFlightPerConnection` answers wait. Notices hold no slot.
/// - A write that cannot proceed for the stall timeout closes the connection.
/// - After `finish()` nothing more is sent; the connection closes once the writes already handed
///   to the channel are done, and `closed()` returns.
final class AnswerWriter: Sendable {
    private struct State {
        var finished = false
        var closed = false
        /// Answers handed to the channel and not yet written (or failed).
        var writing = 0
        var onClose: CheckedContinuation<Void, Never>?
    }

    private let channel: any Channel
    private let machine: LockedStateMachine
    private let limiter: InFlightLimiter
    private let stallTimeout: TimeAmount
    private let state = Mutex(State())

    init(channel: any Channel, machine: LockedStateMachine, limiter: InFlightLimiter, stallTimeout: TimeAmount) {
        self.channel = channel
        self.machine = machine
        self.limiter = limiter
        self.stallTimeout = stallTimeout
    }

    /// Sends `frame` unless the writer has finished (then it is dropped).
    func send(_ frame: ServerFrame) {
        let accepted = state.withLock { state in
            guard !state.finished else { return false }
            state.writing += 1
            return true
        }
        guard accepted else { return }
        let isNotice = if case .notice = frame.result { true } else { false }
        let id = frame.id
        guard let bytes = Self.encode(frame, within: machine.withLock(\.answerLimit), allocator: channel.allocator) else {
            written(id: id, isNotice: isNotice)
            return
        }
        // Only a peer that stopped reading makes a write wait; arm the timer then.
        let channel = self.channel
        let stall = channel.isWritable ? nil : channel.eventLoop.scheduleTask(in: stallTimeout) { channel.close(promise: nil) }
        channel.writeAndFlush(bytes).whenComplete { _ in
            stall?.cancel()
            self.written(id: id, isNotice: isNotice)
        }
    }

    /// The frame for `frame`; an answer larger than `limit` (what the client accepts) is
    /// replaced by an `ANSWER_TOO_LARGE` refusal with its id, never sent oversized.
    static func encode(_ frame: ServerFrame, within limit: Int, allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard let bytes = try? FrameEncoder.frame(frame, allocator: allocator) else { return nil }
        guard bytes.readableBytes - 4 > limit else { return bytes }
        let refusal = LicenseError(.resourceExhausted, .answerTooLarge, "the answer does not fit in a frame of \(limit) bytes; ask for less (a page) or announce a larger max_frame_bytes in Hello")
        return try? FrameEncoder.frame(ServerFrame.failure(id: frame.id, refusal), allocator: allocator)
    }

    /// Sends nothing more; the connection closes once what was sent is written.
    func finish() {
        let closeNow = state.withLock { state -> Bool in
            guard !state.finished else { return false }
            state.finished = true
            return state.writing == 0
        }
        if closeNow { close() }
    }

    /// Returns once the writer has finished and closed the connection.
    func closed() async {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> Bool in
                if state.closed { return true }
                state.onClose = continuation
                return false
            }
            if done { continuation.resume() }
        }
    }

    private func written(id: UInt64, isNotice: Bool) {
        if !isNotice {
            limiter.release()
            if id != 0, machine.withLock({ $0.answerWritten() }) == .close { finish() }
        }
        let closeNow = state.withLock { state -> Bool in
            state.writing -= 1
            return state.finished && state.writing == 0 && !state.closed
        }
        if closeNow { close() }
    }

    private func close() {
        let (first, waiter) = state.withLock { state -> (Bool, CheckedContinuation<Void, Never>?) in
            guard !state.closed else { return (false, nil) }
            state.closed = true
            defer { state.onClose = nil }
            return (true, state.onClose)
        }
        guard first else { return }
        limiter.close()
        channel.close(promise: nil)
        waiter?.resume()
    }
}
