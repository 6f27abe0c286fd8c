import Metrics

/// The batching half of group commit, shared by the SQLite and Postgres repositories.
///
/// Callers queue units of work. The caller that finds no batch running leads one: it hands every
/// queued unit (its own included) to `commit`, wakes the batch's callers once `commit` returns,
/// and passes leadership to the first caller that queued meanwhile, so no caller works for others
/// indefinitely. `commit` decides how the batch reaches the database (one transaction, savepoints
/// or retries) and records each failed unit's error in `GroupCommitUnit.error`; no caller
/// resumes before `commit` has returned, so no caller is answered before its commit.
public actor GroupCommitQueue<Connection> {
    private let commit: @Sendable ([GroupCommitUnit<Connection>]) async -> Void
    private var queue: [GroupCommitUnit<Connection>] = []
    private var leading = false

    public init(commit: @escaping @Sendable ([GroupCommitUnit<Connection>]) async -> Void) {
        self.commit = commit
    }

    /// Runs `body` in the next batch and returns once that batch's commit has returned.
    /// `payload` describes the write to a `commit` that can combine such writes into one
    /// statement (see `GroupCommitUnit.payload`).
    ///
    /// With a `deadline`, the unit is never started after it: a unit still queued when its
    /// deadline has passed fails with `GroupCommitTimeout` without touching the database, and
    /// `commit` bounds each batch by its earliest deadline (`GroupCommitUnit.deadline`). Since
    /// units queue in order, a caller waits for batches that end no later than its own deadline.
    public func perform<T: Sendable>(
        payload: (any Sendable)? = nil, deadline: ContinuousClock.Instant? = nil, _ body: @escaping @Sendable (Connection) async throws -> T
    ) async throws -> T {
        let box = ResultBox<T>()
        let unit = GroupCommitUnit<Connection>(payload: payload, deadline: deadline, work: { connection in box.value = try await body(connection) })
        unit.trace?.mark("commit.enqueued")
        queue.append(unit)
        if leading {
            // Suspends until our batch is done (false) or we are asked to lead (true).
            let lead = await withCheckedContinuation { unit.wake = $0 }
            if lead { await leadOneBatch() }
        } else {
            leading = true
            await leadOneBatch()
        }
        unit.trace?.mark("commit.resumed")
        if let error = unit.error { throw error }
        return box.value!
    }

    /// `licensed_group_commit_duration_seconds` (one batch's commit) and
    /// `licensed_group_commit_batch_size` (units per batch).
    private let commitDuration = Metrics.Timer(label: "licensed_group_commit_duration_seconds", preferredDisplayUnit: .seconds)
    private let batchSize = Recorder(label: "licensed_group_commit_batch_size", aggregate: true)

    /// Units waiting for the next batch (for metrics and tests).
    public var waiting: Int { queue.count }

    private func leadOneBatch() async {
        let batch = queue
        queue.removeAll(keepingCapacity: true)
        // Too late to start (less than `GroupCommitUnit.minimumBudget` left): fail at once, without a database
        // call and without waiting for the batch.
        let live = batch.filter { !failIfExpired($0) }
        if !live.isEmpty {
            let start = ContinuousClock.now
            for unit in live { unit.trace?.mark("commit.batch_started") }
            await commit(live)
            for unit in live { unit.trace?.mark("commit.batch_done") }
            commitDuration.recordSince(start)
            batchSize.record(live.count)
        }
        for unit in live { unit.wake?.resume(returning: false) }
        // The next leader is the first queued unit with time left: one whose deadline passed
        // while it waited must answer now, not after leading a batch of others.
        while let next = queue.first {
            if failIfExpired(next) {
                queue.removeFirst()
                continue
            }
            next.wake?.resume(returning: true)
            next.wake = nil
            return
        }
        leading = false
    }

    /// Fails and wakes a unit whose deadline is too close to start it; returns whether it did.
    private func failIfExpired(_ unit: GroupCommitUnit<Connection>) -> Bool {
        guard !unit.hasTimeToStart else { return false }
        unit.error = GroupCommitTimeout()
        unit.wake?.resume(returning: false)
        unit.wake = nil
        return true
    }

    private final class ResultBox<T>: @unchecked Sendable {
        var value: T?
    }
}

/// One caller's work in a group commit. `commit` runs `work` and sets `error` when it fails.
public final class GroupCommitUnit<Connection>: @unchecked Sendable {
    // Touched only by the queue's actor and by the `commit` it is awaiting.
    public let work: @Sendable (Connection) async throws -> Void
    /// What the unit writes, for a `commit` that combines like writes of a batch into one
    /// statement before running the units; `work` must then find its write done and only
    /// collect its result (and do the write itself when it runs alone).
    public let payload: (any Sendable)?
    public var error: (any Error)?
    /// The latest moment the unit's caller waits for; `commit` must not let the unit's writes
    /// commit after it (e.g. a statement timeout set to the batch's earliest deadline).
    public let deadline: ContinuousClock.Instant?
    /// The trace of the caller's call, if it is sampled: `commit` marks its stages on it.
    public let trace: CallTrace? = CallTrace.current
    fileprivate var wake: CheckedContinuation<Bool, Never>?

    /// The least time a unit must have left to be started.
    public static var minimumBudget: Duration { .milliseconds(100) }

    /// Whether the unit may still be started: it has no deadline, or `minimumBudget` left.
    public var hasTimeToStart: Bool {
        deadline.map { ContinuousClock.now.advanced(by: Self.minimumBudget) < $0 } ?? true
    }

    init(payload: (any Sendable)?, deadline: ContinuousClock.Instant?, work: @escaping @Sendable (Connection) async throws -> Void) {
        self.payload = payload
        self.deadline = deadline
        self.work = work
    }
}

extension Collection {
    /// The earliest deadline of a batch of units, or `nil` when none has one.
    public func earliestDeadline<Connection>() -> ContinuousClock.Instant? where Element == GroupCommitUnit<Connection> {
        compactMap(\.deadline).min()
    }
}

/// A group-commit unit's deadline passed before it could be started or finished.
public struct GroupCommitTimeout: Error, Hashable, Sendable {
    public init() {}
}
