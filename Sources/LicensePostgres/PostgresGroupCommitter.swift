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
    typealias Unit = GroupCommitUnit<BatchConnection>
    private let queue: GroupCommitQueue<BatchConnection>

    private let timeout: Duration

    /// - Parameter timeout: How long a caller waits in all, queueing included: no write of its
    ///   commits after that (a batch runs with Postgres's `statement_timeout` set to what its
    ///   earliest caller has left), so a caller answered UNAVAILABLE leaves no row behind.
    init(client: PostgresClient, timeout: Duration, memo: SessionSettingsMemo, logger: Logger) {
        self.timeout = timeout
        queue = GroupCommitQueue { batch in
            // The combined statements hold every unit's rows, so they may run only until the
            // earliest deadline; a unit re-run alone after they failed gets its own.
            let earliest = batch.earliestDeadline() ?? ContinuousClock.now.advanced(by: timeout)
            let latest = batch.compactMap(\.deadline).max() ?? earliest
            do {
                try await withDeadline(ContinuousClock.now.duration(to: latest)) {
                    try await client.withConnection { connection in
                        PostgresMetrics.connectionsInUse.increment()
                        defer { PostgresMetrics.connectionsInUse.decrement() }
                        for unit in batch { unit.trace?.mark("commit.connection") }
                        let connection = BatchConnection(connection, memo: memo, logger: logger)
                        connection.limitStatements(to: earliest)
                        try await Self.commit(batch, on: connection, logger: logger)
                    }
                }
            } catch {
                for unit in batch where unit.error == nil { unit.error = error }
            }
        }
    }

    /// Runs `body` in the next group commit and returns once that commit is durable; fails
    /// (committing nothing of it) when that takes longer than the timeout.
    func perform<T: Sendable>(payload: SessionWrite? = nil, _ body: @escaping @Sendable (BatchConnection) async throws -> T) async throws -> T {
        try await queue.perform(payload: payload, deadline: ContinuousClock.now.advanced(by: timeout), body)
    }

    private static func commit(_ batch: [Unit], on connection: BatchConnection, logger: Logger) async throws {
        let writes = batch.compactMap { $0.payload as? SessionWrite }
        if writes.count == batch.count {
            try await commitSessionWrites(batch, writes, on: connection, logger: logger)
            return
        }
        try await connection.begin()
        var failed = false
        do {
            try await connection.combine(writes)
        } catch {
            failed = true
        }
        for unit in batch where !failed {
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
        connection.forgetCombined()
        for unit in batch { try await runAlone(unit, on: connection, logger: logger) }
    }

    /// A batch of session inserts and ends only (the steady state): each combined statement
    /// commits on its own, with no BEGIN and COMMIT round trips, since every unit's rows (the
    /// session's and its audit row) are written by one statement anyway. Units whose statement
    /// failed run alone afterwards, so a failure is only its owner's.
    private static func commitSessionWrites(_ batch: [Unit], _ writes: [SessionWrite], on connection: BatchConnection, logger: Logger) async throws {
        connection.autocommit = true
        do {
            try await connection.combine(writes)
        } catch {
            // What committed before the failure is recorded; the rest runs alone below.
        }
        for unit in batch { unit.trace?.mark("commit.statements") }
        connection.autocommit = false
        for (unit, write) in zip(batch, writes) {
            if connection.combinedOutcome(write) != nil {
                try await unit.work(connection)
            } else {
                try await runAlone(unit, on: connection, logger: logger)
            }
        }
    }

    private static func runAlone(_ unit: Unit, on connection: BatchConnection, logger: Logger) async throws {
        guard unit.hasTimeToStart else {
            unit.error = GroupCommitTimeout()
            return
        }
        if let deadline = unit.deadline { connection.limitStatements(to: deadline) }
        try await connection.begin()
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

/// A connection inside one group-commit transaction. It remembers the tenant scope set in the
/// transaction, so that a batch of one tenant's writes sets it once, not once per write.
/// Used by one batch at a time, one statement after another.
final class BatchConnection: @unchecked Sendable {
    let connection: PostgresConnection
    private let logger: Logger
    private let memo: SessionSettingsMemo
    private var scope: String?
    /// The outcome of each session write `combine` did, by the write's audit-event id (unique
    /// per write, where a session id is not: a retried write is another write): `true` when
    /// the row was inserted or ended.
    private var combined: [String: Bool] = [:]

    init(_ connection: PostgresConnection, memo: SessionSettingsMemo, logger: Logger) {
        self.connection = connection
        self.memo = memo
        self.logger = logger
    }

    /// Statements commit one by one (no transaction is open): a scope is then set for the
    /// connection's session, not for a transaction.
    var autocommit = false

    /// Starts a transaction (with no scope set yet).
    func begin() async throws {
        scope = nil
        // What the transaction sets may be rolled back.
        memo.remember(connection.id, nil)
        try await connection.execute("BEGIN", logger: logger)
    }

    /// Makes Postgres cancel any statement of this connection still running at `deadline` (less
    /// a margin for the answer's way back), so nothing commits after its caller gave up.
    /// Session-wide: every use of a pooled connection sets it first.
    ///
    /// Sent with the next scope statement (every unit's work, and `combine`, start with one), so
    /// it costs no round trip of its own.
    func limitStatements(to deadline: ContinuousClock.Instant) {
        statementDeadline = deadline
    }

    /// The deadline `limitStatements` asked for, not yet sent.
    private var statementDeadline: ContinuousClock.Instant?

    /// Time kept back from a statement's budget for its answer to reach the daemon.
    static let answerMargin = Duration.milliseconds(50)

    /// The `statement_timeout` (ms, at least 1) that ends a statement by `deadline` less the
    /// answer margin.
    static func statementTimeout(until deadline: ContinuousClock.Instant) -> Int64 {
        max(1, (ContinuousClock.now.duration(to: deadline) - answerMargin).milliseconds)
    }

    /// Forgets what `combine` wrote (its transaction was rolled back).
    func forgetCombined() { combined.removeAll() }

    /// Whether `combine` did `write` (and what came of it).
    func combinedOutcome(_ write: SessionWrite) -> Bool? { combined[write.key] }

    /// Writes the batch's session inserts and ends with one statement per tenant scope (and per
    /// 2,000 writes), instead of one round trip each. A write whose session already appears in
    /// the batch is left to its unit, which runs it alone afterwards.
    func combine(_ writes: [SessionWrite]) async throws {
        guard writes.count > 1 || (autocommit && !writes.isEmpty) else { return }
        var seen = Set<SessionID>()
        var byScope: [String: [SessionWrite]] = [:]
        for write in writes where seen.insert(write.session).inserted {
            byScope[write.scope, default: []].append(write)
        }
        for (scope, group) in byScope {
            try await self.scope(to: scope)
            for chunk in group.chunked(2_000) {
                var inserts: [SessionWrite.Insert] = [], ends: [SessionWrite.End] = []
                for write in chunk {
                    switch write {
                    case .insert(let insert): inserts.append(insert)
                    case .end(let end): ends.append(end)
                    }
                }
                var inserted = 0
                var ended = Set<String>()
                for try await (isInsert, id) in try await connection.execute(SessionWritesStatement(inserts: inserts, ends: ends), logger: logger) {
                    if isInsert { inserted += 1 } else { ended.insert(id) }
                }
                // An INSERT writes every row or fails; anything else is a bug worth refusing.
                guard inserted == inserts.count else { throw PostgresBatchMismatch() }
                for insert in inserts { combined[insert.audit.id] = true }
                for end in ends { combined[end.audit.id] = ended.contains(end.session.rawValue) }
            }
        }
    }

    /// Sets the row-level-security scope for the rest of the transaction (or, in autocommit,
    /// of the session), if it is not set already. In autocommit, a session already in `scope`
    /// with about the right timeout (`SessionSettingsMemo`) costs no round trip.
    func scope(to scope: String) async throws {
        if let deadline = statementDeadline {
            let left = Self.statementTimeout(until: deadline)
            if autocommit {
                // A batch of session writes only: generic plans (`SessionSettingsMemo`).
                try await memo.setSession(of: connection, scope: scope, left: left, genericPlans: true, logger: logger)
            } else {
                // `begin()` has forgotten the connection: a rollback undoes what is set here.
                let statement = SetScopeAndTimeoutStatement(scope: scope, local: true, timeoutMilliseconds: left, genericPlans: false)
                for try await _ in try await connection.execute(statement, logger: logger) {}
            }
            statementDeadline = nil
            self.scope = scope
            return
        }
        guard scope != self.scope else { return }
        if autocommit {
            try await memo.setScope(of: connection, scope: scope, logger: logger)
        } else {
            for try await _ in try await connection.execute(SetScopeStatement(scope: scope, local: true), logger: logger) {}
        }
        self.scope = scope
    }

    func execute(_ query: PostgresQuery, logger: Logger) async throws {
        try await connection.execute(query, logger: logger)
    }

    func query(_ query: PostgresQuery, logger: Logger) async throws -> PostgresRowSequence {
        try await connection.query(query, logger: logger)
    }
}

extension PostgresConnection {
    /// Runs a statement and drains its rows.
    func execute(_ query: PostgresQuery, logger: Logger) async throws {
        _ = try await self.query(query, logger: logger).collect()
    }
}

/// Runs `body`, failing with `PostgresTimeout` when it takes longer than `limit`. The limit is
/// timed on an event loop (`eventLoopSleep`): every batch and read has one, and nearly all end
/// long before it.
func withDeadline<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await LicenseCore.withDeadline(limit, orThrow: { PostgresTimeout() }, sleep: eventLoopSleep, body)
}

/// A repository call did not finish within its deadline.
struct PostgresTimeout: Error {}

/// A combined insert did not insert every row it was given (the batch is then run unit by unit).
struct PostgresBatchMismatch: Error {}

extension Array {
    /// The array in consecutive slices of at most `size` elements.
    func chunked(_ size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}

