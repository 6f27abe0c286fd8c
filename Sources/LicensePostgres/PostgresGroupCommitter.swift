import LicenseCore
import Logging
import PostgresNIO

/// Commits concurrent writes together: one transaction, one WAL flush, for every write that
/// arrived while the previous commit was running.
///
/// The batch runs optimistically with no savepoints (one round trip per statement). If any unit
/// fails, the batch is rolled back and each unit is run again in its own transaction, so one
/// caller's failure (a duplicate id, a refused row) never fails another's. No caller is answered
/// before the transaction holding its rows has committed. The first caller to find no commit in
/// progress leads one batch, then hands leadership to the next waiting caller.
struct PostgresGroupCommitter: Sendable {
    typealias Unit = GroupCommitUnit<PostgresConnection>
    private let queue: GroupCommitQueue<PostgresConnection>

    init(client: PostgresClient, timeout: Duration, logger: Logger) {
        queue = GroupCommitQueue { batch in
            do {
                try await withDeadline(timeout) {
                    try await client.withConnection { connection in
                        try await Self.commit(batch, on: connection, logger: logger)
                    }
                }
            } catch {
                for unit in batch where unit.error == nil { unit.error = error }
            }
        }
    }

    /// Runs `body` in the next group commit and returns once that commit is durable.
    func perform<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try await queue.perform(body)
    }

    private static func commit(_ batch: [Unit], on connection: PostgresConnection, logger: Logger) async throws {
        try await connection.execute("BEGIN", logger: logger)
        var failed = false
        for unit in batch {
            do { try await unit.work(connection) } catch {
                failed = true
                break
            }
        }
        if !failed {
            try await connection.execute("COMMIT", logger: logger)
            return
        }
        // Someone's unit failed: undo the batch and give every unit a transaction of its own, so
        // the failure is only its owner's.
        try await connection.execute("ROLLBACK", logger: logger)
        for unit in batch { try await runAlone(unit, on: connection, logger: logger) }
    }

    private static func runAlone(_ unit: Unit, on connection: PostgresConnection, logger: Logger) async throws {
        try await connection.execute("BEGIN", logger: logger)
        do {
            try await unit.work(connection)
        } catch {
            unit.error = error
            try await connection.execute("ROLLBACK", logger: logger)
            return
        }
        try await connection.execute("COMMIT", logger: logger)
    }
}

extension PostgresConnection {
    /// Runs a statement and drains its rows.
    func execute(_ query: PostgresQuery, logger: Logger) async throws {
        _ = try await self.query(query, logger: logger).collect()
    }
}

/// Runs `body`, failing with `PostgresTimeout` when it takes longer than `limit`.
func withDeadline<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await LicenseCore.withDeadline(limit, orThrow: { PostgresTimeout() }, body)
}

/// A repository call did not finish within its deadline.
struct PostgresTimeout: Error {}
