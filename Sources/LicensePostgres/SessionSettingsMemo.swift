import Logging
import PostgresNIO
import Synchronization

/// What each pooled connection's session was last set to: the tenant scope (`coditect.tenant`)
/// and `statement_timeout`, both session-wide. A batch or a read whose scope is already set, and
/// whose timeout is already about right, skips its `set_config` round trip: at 2,000 calls/s that
/// round trip was a third of a batch's time in Postgres (docs/benchmarks.md, "One round trip
/// fewer per batch").
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

    /// Whether `connection` already runs in `scope` with a statement timeout that ends a statement
    /// no later than `left` ms from now, and no more than a fifth sooner.
    func covers(_ connection: PostgresConnection.ID, scope: String, left: Int64) -> Bool {
        guard let current = settings.withLock({ $0[connection] }) else { return false }
        return current.scope == scope && current.timeoutMilliseconds <= left && current.timeoutMilliseconds >= left - left / 5
    }

    /// Sets `connection`'s session (outside a transaction) to `scope`, with a statement timeout
    /// for a statement that has `left` ms, unless it is set about right already (`covers`).
    func setSession(of connection: PostgresConnection, scope: String, left: Int64, logger: Logger) async throws {
        guard !covers(connection.id, scope: scope, left: left) else { return }
        let timeout = Self.timeout(for: left)
        remember(connection.id, nil)
        for try await _ in try await connection.execute(SetScopeAndTimeoutStatement(scope: scope, local: false, timeoutMilliseconds: timeout), logger: logger) {}
        remember(connection.id, .init(scope: scope, timeoutMilliseconds: timeout))
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
