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
actor PostgresGroupCommitter {
    typealias Work = @Sendable (PostgresConnection) async throws -> Void

    private final class Unit: @unchecked Sendable {
        // Touched only on the committer actor.
        let work: Work
        var error: (any Error)?
        var wake: CheckedContinuation<Bool, Never>?
        init(work: @escaping Work) { self.work = work }
    }

    private final class Box<T>: @unchecked Sendable {
        var value: T?
    }

    private let client: PostgresClient
    private let timeout: Duration
    private let logger: Logger
    private var queue: [Unit] = []
    private var leading = false

    init(client: PostgresClient, timeout: Duration, logger: Logger) {
        self.client = client
        self.timeout = timeout
        self.logger = logger
    }

    /// Runs `body` in the next group commit and returns once that commit is durable.
    func perform<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        let box = Box<T>()
        let unit = Unit(work: { connection in box.value = try await body(connection) })
        queue.append(unit)
        if leading {
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
        do {
            try await withDeadline(timeout) { [client, logger] in
                try await client.withConnection { connection in
                    try await Self.commit(batch, on: connection, logger: logger)
                }
            }
        } catch {
            for unit in batch where unit.error == nil { unit.error = error }
        }
        for unit in batch { unit.wake?.resume(returning: false) }
        if let next = queue.first {
            next.wake?.resume(returning: true)
            next.wake = nil
        } else {
            leading = false
        }
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
        try await connection.execute("ROLLBACK", logger: logger)
        guard batch.count > 1 else {
            // Run the single unit once more only to capture its error precisely.
            try await runAlone(batch[0], on: connection, logger: logger)
            return
        }
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

/// Runs `body`, failing with UNAVAILABLE when it takes longer than `limit`.
func withDeadline<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw PostgresTimeout()
        }
        return value
    }
}

/// A repository call did not finish within its deadline.
struct PostgresTimeout: Error {}
