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
    public func perform<T: Sendable>(payload: (any Sendable)? = nil, _ body: @escaping @Sendable (Connection) async throws -> T) async throws -> T {
        let box = ResultBox<T>()
        let unit = GroupCommitUnit<Connection>(payload: payload, work: { connection in box.value = try await body(connection) })
        queue.append(unit)
        if leading {
            // Suspends until our batch is done (false) or we are asked to lead (true).
            let lead = await withCheckedContinuation { unit.wake = $0 }
            if lead { await leadOneBatch() }
        } else {
            leading = true
            await leadOneBatch()
        }
        if let error = unit.error { throw error }
        return box.value!
    }

    private func leadOneBatch() async {
        let batch = queue
        queue.removeAll(keepingCapacity: true)
        await commit(batch)
        for unit in batch { unit.wake?.resume(returning: false) }
        if let next = queue.first {
            next.wake?.resume(returning: true)
            next.wake = nil
        } else {
            leading = false
        }
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
    fileprivate var wake: CheckedContinuation<Bool, Never>?

    init(payload: (any Sendable)?, work: @escaping @Sendable (Connection) async throws -> Void) {
        self.payload = payload
        self.work = work
    }
}
