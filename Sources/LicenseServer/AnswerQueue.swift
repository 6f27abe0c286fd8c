import LicenseWire
import Synchronization

/// The frames waiting for one connection's writer: answers, and notices from other connections.
///
/// Unlike an `AsyncStream`, the writer takes everything queued at once, so answers that complete
/// together leave in one write: one TLS record and one system call instead of one each (under
/// load, per-answer writes and flushes were a tenth of the daemon's CPU time). Like an
/// `AsyncStream`, frames queued before `finish()` are still delivered, and later ones are dropped.
final class AnswerQueue: Sendable {
    private struct State {
        var frames: [ServerFrame] = []
        var finished = false
        var writer: CheckedContinuation<[ServerFrame]?, Never>?
    }

    private let state = Mutex(State())

    /// Queues a frame for the writer (dropped once finished).
    func yield(_ frame: ServerFrame) {
        let wake: (CheckedContinuation<[ServerFrame]?, Never>, [ServerFrame])? = state.withLock { state in
            guard !state.finished else { return nil }
            if let writer = state.writer {
                state.writer = nil
                return (writer, [frame])
            }
            state.frames.append(frame)
            return nil
        }
        if let (writer, frames) = wake { writer.resume(returning: frames) }
    }

    /// No more frames: the writer gets what is queued, then `nil`.
    func finish() {
        let writer: CheckedContinuation<[ServerFrame]?, Never>? = state.withLock { state in
            state.finished = true
            guard state.frames.isEmpty else { return nil }
            defer { state.writer = nil }
            return state.writer
        }
        writer?.resume(returning: nil)
    }

    /// Everything queued, in order, waiting while nothing is; `nil` once finished and drained.
    /// Only one task (the connection's writer) may call this.
    func next() async -> [ServerFrame]? {
        await withCheckedContinuation { continuation in
            let ready: [ServerFrame]?? = state.withLock { state in
                if !state.frames.isEmpty {
                    defer { state.frames.removeAll(keepingCapacity: true) }
                    return .some(state.frames)
                }
                if state.finished { return .some(nil) }
                state.writer = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}
