import SQLiteNIO

/// Serialises every write to one SQLite connection and commits concurrent writes together.
///
/// Each caller's unit of work runs inside its own SAVEPOINT of a shared transaction, so one
/// unit's failure rolls back only that unit; the transaction's single COMMIT (one fsync) then
/// makes every successful unit durable before any of their callers is resumed. The caller that
/// finds no commit in progress leads one batch and hands leadership to the next waiting caller,
/// so no caller works for others indefinitely.
actor GroupCommitWriter {
    private final class Unit: @unchecked Sendable {
        // Touched only on the writer actor.
        let run: @Sendable (SQLiteConnection) async throws -> Void
        var error: (any Error)?
        var wake: CheckedContinuation<Bool, Never>?
        init(run: @escaping @Sendable (SQLiteConnection) async throws -> Void) { self.run = run }
    }

    private final class Box<T>: @unchecked Sendable {
        var value: T?
    }

    private let connection: SQLiteConnection
    private var queue: [Unit] = []
    private var leading = false

    init(connection: SQLiteConnection) {
        self.connection = connection
    }

    /// Runs `body` in the next group commit and returns once that commit is durable.
    func perform<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) async throws -> T) async throws -> T {
        let box = Box<T>()
        let unit = Unit(run: { connection in box.value = try await body(connection) })
        queue.append(unit)
        if leading {
            // Suspends until our batch committed (false) or we are asked to lead (true).
            let lead = await withCheckedContinuation { unit.wake = $0 }
            if lead { await leadOneBatch() }
        } else {
            leading = true
            await leadOneBatch()
        }
        if let error = unit.error { throw error }
        return box.value!
    }

    /// Commits everything queued (which includes the leader's own unit), wakes the batch, and
    /// passes leadership on to the first caller that queued meanwhile.
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

    private func commit(_ batch: [Unit]) async {
        do {
            _ = try await connection.query("BEGIN IMMEDIATE")
        } catch {
            for unit in batch { unit.error = error }
            return
        }
        for unit in batch {
            do {
                _ = try await connection.query("SAVEPOINT unit")
                do {
                    try await unit.run(connection)
                    _ = try await connection.query("RELEASE unit")
                } catch {
                    unit.error = error
                    _ = try await connection.query("ROLLBACK TO unit")
                    _ = try await connection.query("RELEASE unit")
                }
            } catch {
                unit.error = unit.error ?? error
            }
        }
        do {
            _ = try await connection.query("COMMIT")
        } catch {
            _ = try? await connection.query("ROLLBACK")
            for unit in batch { unit.error = error }
        }
    }
}
