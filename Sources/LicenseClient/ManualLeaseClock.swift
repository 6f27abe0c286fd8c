import LicenseCore
import Synchronization

/// A ``LeaseClock`` that only moves when told to, for tests and simulations: sleepers wake when
/// ``advance(by:)`` passes their deadline, and the wall clock can be set anywhere (even back)
/// without moving monotonic time.
public final class ManualLeaseClock: LeaseClock {
    private struct Sleeper {
        var id: UInt64
        var deadline: Duration
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var wall: Timestamp
        var monotonic: Duration = .zero
        var sleepers: [Sleeper] = []
        var cancelled: Set<UInt64> = []
        var nextID: UInt64 = 1
        var onSleep: (@Sendable () -> Void)?
    }

    private let state: Mutex<State>

    /// A clock whose wall time starts at `wall` and whose monotonic time starts at zero.
    public init(wall: Timestamp) {
        state = Mutex(State(wall: wall))
    }

    public func wallTime() -> Timestamp { state.withLock { $0.wall } }

    public func monotonicTime() -> Duration { state.withLock { $0.monotonic } }

    public func sleep(for duration: Duration) async throws {
        guard duration > .zero else { return try Task.checkCancellation() }
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let notify = state.withLock { state -> (@Sendable () -> Void)? in
                    if state.cancelled.remove(id) != nil {
                        continuation.resume(throwing: CancellationError())
                        return nil
                    }
                    state.sleepers.append(Sleeper(id: id, deadline: state.monotonic + duration, continuation: continuation))
                    return state.onSleep
                }
                notify?()
            }
        } onCancel: {
            let sleeper = state.withLock { state -> Sleeper? in
                guard let index = state.sleepers.firstIndex(where: { $0.id == id }) else {
                    state.cancelled.insert(id)
                    return nil
                }
                return state.sleepers.remove(at: index)
            }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Moves wall and monotonic time forward and wakes the sleepers that are due.
    public func advance(by duration: Duration) {
        let due = state.withLock { state -> [Sleeper] in
            state.monotonic += duration
            state.wall = state.wall.advanced(by: duration)
            let due = state.sleepers.filter { $0.deadline <= state.monotonic }
            state.sleepers.removeAll { $0.deadline <= state.monotonic }
            return due
        }
        for sleeper in due { sleeper.continuation.resume() }
    }

    /// Sets the wall clock only (as a user changing the system time would).
    public func setWall(_ wall: Timestamp) {
        state.withLock { $0.wall = wall }
    }

    /// How long until the earliest sleeper is due, or nil when nobody sleeps.
    public var nextWake: Duration? {
        state.withLock { state in state.sleepers.map { $0.deadline - state.monotonic }.min() }
    }

    /// Calls `observer` each time a task starts sleeping.
    public func observeSleeps(_ observer: @escaping @Sendable () -> Void) {
        state.withLock { $0.onSleep = observer }
    }
}
