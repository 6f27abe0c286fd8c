import Synchronization

/// The moments one sampled call passed through the daemon's stages (seat claim, group-commit
/// queue, commit, signing, …), for finding where a call waits.
///
/// The server starts a trace for one call in `--trace-every` and binds it to the call's task
/// (`CallTrace.$current`); code on the call's path marks its stages with `CallTrace.mark(_:)`,
/// which costs one task-local read when no trace is bound. Work done for the call on another
/// task (a group-commit leader committing its batch) marks the trace it was handed.
public final class CallTrace: Sendable {
    /// The trace of the call the current task is serving, if it is sampled.
    @TaskLocal public static var current: CallTrace?

    private let start: ContinuousClock.Instant
    private let marks = Mutex<[(stage: String, at: ContinuousClock.Instant)]>([])

    public init(start: ContinuousClock.Instant = .now) {
        self.start = start
    }

    /// Marks `stage` as reached now on the current task's trace (if any).
    public static func mark(_ stage: String) {
        current?.mark(stage)
    }

    /// Marks `stage` as reached now. A stage reached again is named with its count
    /// (`redis.sent`, `redis.sent#2`).
    public func mark(_ stage: String) {
        let now = ContinuousClock.now
        marks.withLock { marks in
            let seen = marks.count { $0.stage == stage || $0.stage.hasPrefix(stage + "#") }
            marks.append((seen == 0 ? stage : "\(stage)#\(seen + 1)", now))
        }
    }

    /// Each stage with the time since the previous mark (the first: since the trace started),
    /// in the order reached, and the total, in microseconds.
    public func stages() -> (stages: [(stage: String, microseconds: Int64)], total: Int64) {
        let marks = self.marks.withLock { $0 }
        // From offsets since the start, so the stages add up to the total exactly.
        var previous: Int64 = 0
        var result: [(String, Int64)] = []
        for mark in marks.sorted(by: { $0.at < $1.at }) {
            let offset = Self.microseconds(start.duration(to: mark.at))
            result.append((mark.stage, offset - previous))
            previous = offset
        }
        return (result, previous)
    }

    /// The stages as `stage=µs` pairs in the order reached, e.g. `seat.claim=412 commit.queued=3801`.
    public var summary: String {
        stages().stages.map { "\($0.stage)=\($0.microseconds)" }.joined(separator: " ")
    }

    private static func microseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1_000_000 + duration.components.attoseconds / 1_000_000_000_000
    }
}
