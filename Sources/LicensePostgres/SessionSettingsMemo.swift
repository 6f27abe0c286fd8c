import Logging
import PostgresNIO
import Synchronization

/// What each pooled connection's session was last set to: the tenant scope (`coditect.tenant`),
/// `statement_timeout` and `plan_cache_mode`, all session-wide. A batch or a read whose scope and
/// plan mode are already set, and whose timeout is already about right, skips its `set_config`
/// round trip: at 2,000 calls/s that round trip was a third of a batch's time in Postgres
/// (docs/benchmarks.md, "One round trip fewer per batch").
///
/// Batches of session writes only (the steady state, committed statement by statement) run with
/// generic plans (`force_generic_plan`): left to choose, Postgres planned the combined session
/// statement anew for about half its executions, parsing the row-level-security function again
/// each time to inline it. Everything else (reads, transactions of other writes, the
/// write-behind's `UPDATE`) keeps Postgres's own choice (`auto`): their statements are not written
/// for a generic plan, and the write-behind's took twice as long with one (docs/benchmarks.md,
/// issue 19).
///
/// Only settings made outside a transaction are remembered: a `set_config` inside one is undone
/// by its rollback, so setting a connection inside a transaction forgets it. A connection is
/// forgotten before each change and remembered only once the change has succeeded, so a failed
/// or cancelled change leaves nothing stale. A connection the pool replaces comes back under a new
/// id; forgetting is always safe, so the memo is emptied when it has grown past `capacity`.
final class SessionSettingsMemo: Sendable {
    /// One connection's session settings.
    struct Settings: Equatable, Sendable {
        var scope: String
        var timeoutMilliseconds: Int64
        /// `plan_cache_mode` is `force_generic_plan` (else `auto`).
        var genericPlans: Bool = false
    }

    private let settings = Mutex<[PostgresConnection.ID: Settings]>([:])
    private let capacity: Int

    init(capacity: Int = 1_024) {
        self.capacity = capacity
    }

    /// The timeout to set when a statement has `left` ms: a tenth less, so that the next uses,
    /// with about as long left, can share it. Ending a statement a little early is safe; ending
    /// it after its caller gave up is not.
    static func timeout(for left: Int64) -> Int64 { max(1, left - left / 10) }

    /// Whether `connection` already runs in `scope` and plan mode with a statement timeout that
    /// ends a statement no later than `left` ms from now, and no more than a fifth sooner.
    func covers(_ connection: PostgresConnection.ID, scope: String, left: Int64, genericPlans: Bool = false) -> Bool {
        guard let current = settings.withLock({ $0[connection] }) else { return false }
        return current.scope == scope && current.genericPlans == genericPlans
            && current.timeoutMilliseconds <= left && current.timeoutMilliseconds >= left - left / 5
    }

    /// Sets `connection`'s session (outside a transaction) to `scope` and the plan mode, with a
    /// statement timeout for a statement that has `left` ms, unless it is set about right
    /// already (`covers`).
    func setSession(of connection: PostgresConnection, scope: String, left: Int64, genericPlans: Bool = false, logger: Logger) async throws {
        guard !covers(connection.id, scope: scope, left: left, genericPlans: genericPlans) else { return }
        let timeout = Self.timeout(for: left)
        remember(connection.id, nil)
        let statement = SetScopeAndTimeoutStatement(scope: scope, local: false, timeoutMilliseconds: timeout, genericPlans: genericPlans)
        for try await _ in try await connection.execute(statement, logger: logger) {}
        remember(connection.id, .init(scope: scope, timeoutMilliseconds: timeout, genericPlans: genericPlans))
    }

    /// Sets `connection`'s session scope (outside a transaction) to `scope`, keeping what else is
    /// known of it (the timeout and plan mode are left as they are).
    func setScope(of connection: PostgresConnection, scope: String, logger: Logger) async throws {
        let known = current(connection.id)
        remember(connection.id, nil)
        for try await _ in try await connection.execute(SetScopeStatement(scope: scope, local: false), logger: logger) {}
        if var known {
            known.scope = scope
            remember(connection.id, known)
        }
    }

    /// Records what `connection`'s session is set to now; nil when that is not known.
    func remember(_ connection: PostgresConnection.ID, _ current: Settings?) {
        settings.withLock {
            if current != nil, $0.count >= capacity, $0[connection] == nil { $0.removeAll() }
            $0[connection] = current
        }
    }

    /// What `connection`'s session is known to be set to.
    func current(_ connection: PostgresConnection.ID) -> Settings? {
        settings.withLock { $0[connection] }
    }
}
