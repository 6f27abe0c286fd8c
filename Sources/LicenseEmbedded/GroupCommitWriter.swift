import LicenseCore
import SQLiteNIO

/// Serialises every write to one SQLite connection and commits concurrent writes together.
///
/// Each caller's unit of work runs inside its own SAVEPOINT of a shared transaction, so one
/// unit's failure rolls back only that unit; the transaction's single COMMIT (one fsync) then
/// makes every successful unit durable before any of their callers is resumed (the batching and
/// leader hand-off are `GroupCommitQueue`'s).
struct GroupCommitWriter: Sendable {
    private let queue: GroupCommitQueue<SQLiteConnection>

    init(connection: SQLiteConnection) {
        queue = GroupCommitQueue { batch in await Self.commit(batch, on: connection) }
    }

    /// Runs `body` in the next group commit and returns once that commit is durable.
    func perform<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) async throws -> T) async throws -> T {
        try await queue.perform(body)
    }

    private static func commit(_ batch: [GroupCommitUnit<SQLiteConnection>], on connection: SQLiteConnection) async {
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
                    try await unit.work(connection)
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
