import Synchronization

/// Counts free request slots of one connection; the reader waits for a slot before reading the
/// next frame, so a peer that sends without reading answers meets TCP backpressure instead of
/// growing our memory.
final class InFlightLimiter: Sendable {
    private struct State {
        var available: Int
        var waiters: [CheckedContinuation<Bool, Never>] = []
        var closed = false
    }

    private let state: Mutex<State>

    init(slots: Int) { state = Mutex(State(available: slots)) }

    /// Waits for a slot; `false` once the limiter is closed.
    func acquire() async -> Bool {
        await withCheckedContinuation { continuation in
            let resumeNow: Bool? = state.withLock { state in
                if state.closed { return false }
                if state.available > 0 {
                    state.available -= 1
                    return true
                }
                state.waiters.append(continuation)
                return nil
            }
            if let resumeNow { continuation.resume(returning: resumeNow) }
        }
    }

    /// Returns a slot, waking one waiter.
    func release() {
        let waiter: CheckedContinuation<Bool, Never>? = state.withLock { state in
            if state.waiters.isEmpty {
                state.available += 1
                return nil
            }
            return state.waiters.removeFirst()
        }
        waiter?.resume(returning: true)
    }

    /// Wakes every waiter with `false`; later acquires fail at once.
    func close() {
        let waiters = state.withLock { state in
            state.closed = true
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: false) }
    }
}
