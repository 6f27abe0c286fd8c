import LicenseCore
import PostgresNIO

// The statements every acquire and release runs, prepared once per connection (postgres-nio
// keeps them by name), so Postgres neither parses nor plans them again on each call (batches of
// session writes run with generic plans: `SessionSettingsMemo`). Before they were prepared,
// parsing and planning were half of Postgres's CPU time under load.

/// Sets the row-level-security scope for the rest of the transaction (`local`) or, outside
/// a transaction, for the connection's session.
struct SetScopeStatement: PostgresPreparedStatement {
    static let name = "coditect_set_scope"
    static let sql = "SELECT set_config('coditect.tenant', $1, $2)"
    static let bindingDataTypes: [PostgresDataType] = [.text, .bool]
    typealias Row = String

    var scope: String
    var local: Bool

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 2)
        bindings.append(scope)
        bindings.append(local)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> String { try row.decode(String.self) }
}

/// Sets the tenant scope (for the transaction when `local`, else the session), the
/// connection's `statement_timeout` (ms, session-wide) and its `plan_cache_mode` (like the
/// scope) for the statements that follow, in one round trip. `genericPlans`: write batches,
/// whose prepared statements are not planned again at each execution (`SessionSettingsMemo`).
struct SetScopeAndTimeoutStatement: PostgresPreparedStatement {
    static let name = "coditect_set_scope_timeout_plans"
    static let sql = """
        SELECT set_config('coditect.tenant', $1, $2), set_config('statement_timeout', $3, false),
          set_config('plan_cache_mode', $4, $2)
        """
    static let bindingDataTypes: [PostgresDataType] = [.text, .bool, .text, .text]
    typealias Row = (String, String, String)

    var scope: String
    var local: Bool
    var timeoutMilliseconds: Int64
    var genericPlans: Bool

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 4)
        bindings.append(scope)
        bindings.append(local)
        bindings.append(String(timeoutMilliseconds))
        bindings.append(genericPlans ? "force_generic_plan" : "auto")
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> (String, String, String) { try row.decode((String, String, String).self) }
}

/// Inserts a session row and its audit row in one statement.
struct InsertSessionStatement: PostgresPreparedStatement {
    static let name = "coditect_insert_session"
    static let sql = """
        WITH audit AS (
          INSERT INTO audit_log (id, at_ms, tenant_id, actor, action, target, outcome)
          VALUES ($12, $13, $14, $15, $16, $17, $18)
        )
        INSERT INTO sessions (id, tenant_id, license_id, user_id, hardware_id, idempotency_key, client_info,
          created_at_ms, lease_expires_at_ms, ended_at_ms, end_reason)
        VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, $11)
        """
    static let bindingDataTypes: [PostgresDataType] = [
        .text, .text, .text, .text, .text, .text, .text, .int8, .int8, .int8, .text,
        .text, .int8, .text, .text, .text, .text, .text,
    ]
    typealias Row = ()

    var session: LeaseSession
    var clientInfoJSON: String
    var audit: AuditEvent

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 18)
        bindings.append(session.id.rawValue)
        bindings.append(session.tenantID.rawValue)
        bindings.append(session.licenseID.rawValue)
        bindings.append(session.userID.rawValue)
        bindings.append(session.hardwareID)
        bindings.append(session.idempotencyKey)
        bindings.append(clientInfoJSON)
        bindings.append(session.createdAt.millisecondsSinceEpoch)
        bindings.append(session.leaseExpiresAt.millisecondsSinceEpoch)
        bindings.append(session.endedAt?.millisecondsSinceEpoch)
        bindings.append(session.endReason?.rawValue)
        audit.append(to: &bindings)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws {}
}

/// Ends a live session and writes its audit row, in one statement; returns the id if it was live.
struct EndSessionStatement: PostgresPreparedStatement {
    static let name = "coditect_end_session"
    static let sql = """
        WITH ended AS (
          UPDATE sessions SET ended_at_ms = $2, end_reason = $3 WHERE id = $1 AND ended_at_ms IS NULL RETURNING id
        ), audit AS (
          INSERT INTO audit_log (id, at_ms, tenant_id, actor, action, target, outcome)
          SELECT $4, $5, $6, $7, $8, $9, $10 FROM ended
        )
        SELECT id FROM ended
        """
    static let bindingDataTypes: [PostgresDataType] = [.text, .int8, .text, .text, .int8, .text, .text, .text, .text, .text]
    typealias Row = String

    var session: SessionID
    var at: Timestamp
    var reason: SessionEndReason
    var audit: AuditEvent

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 10)
        bindings.append(session.rawValue)
        bindings.append(at.millisecondsSinceEpoch)
        bindings.append(reason.rawValue)
        audit.append(to: &bindings)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> String { try row.decode(String.self) }
}

extension AuditEvent {
    /// The seven audit-row values, in `audit_log` column order.
    fileprivate func append(to bindings: inout PostgresBindings) {
        bindings.append(id)
        bindings.append(at.millisecondsSinceEpoch)
        bindings.append(tenantID?.rawValue)
        bindings.append(actor?.rawValue)
        bindings.append(action)
        bindings.append(target)
        bindings.append(outcome)
    }
}

/// A session write that a group commit may combine with others of its batch.
enum SessionWrite: Sendable {
    struct Insert: Sendable {
        var session: LeaseSession
        var clientInfoJSON: String
        var audit: AuditEvent
        var scope: String
    }

    struct End: Sendable {
        var session: SessionID
        var at: Timestamp
        var reason: SessionEndReason
        var audit: AuditEvent
        var scope: String
    }

    case insert(Insert)
    case end(End)

    /// Identifies this write (its audit event's id).
    var key: String {
        switch self {
        case .insert(let insert): insert.audit.id
        case .end(let end): end.audit.id
        }
    }

    var session: SessionID {
        switch self {
        case .insert(let insert): insert.session.id
        case .end(let end): end.session
        }
    }

    /// The tenant scope the write runs in.
    var scope: String {
        switch self {
        case .insert(let insert): insert.scope
        case .end(let end): end.scope
        }
    }

    /// The write if it may be combined: only writes whose every value is non-null (the array
    /// columns carry no nulls) and, for inserts, live sessions. The others run alone.
    static func combinable(_ write: SessionWrite) -> SessionWrite? {
        switch write {
        case .insert(let insert):
            guard insert.session.endedAt == nil, insert.session.endReason == nil, insert.audit.tenantID != nil, insert.audit.actor != nil else { return nil }
        case .end(let end):
            guard end.audit.tenantID != nil, end.audit.actor != nil else { return nil }
        }
        return write
    }
}

/// Inserts many live sessions and ends many others, with an audit row for each session inserted
/// and for each one that was live when ended, in one statement: one round trip and one commit
/// for a whole batch of acquires and releases. Returns `(true, id)` for each session inserted and
/// `(false, id)` for each one ended. No session may be both inserted and ended (the statement's
/// parts see the same snapshot, so an end would not find a row inserted beside it).
///
/// The ends find their rows by primary key (`id = ANY($17)`) and spell the live-row test
/// `(ended_at_ms IS NULL) IS TRUE`, which means the same but does not match the predicate of the
/// partial index `sessions_live_by_license`. With the plain spelling Postgres 15 joined the ids
/// to that whole index, analysed or not: every live session's entry (and the dead ones lease
/// renewals leave) read to end one or two, 4.5 ms a batch at 800 live sessions in the benchmark,
/// most of the statement's time. (docs/benchmarks.md, "the ends' query plan".)
struct SessionWritesStatement: PostgresPreparedStatement {
    static let name = "coditect_session_writes"
    static let sql = """
        WITH inserted AS (
          INSERT INTO sessions (id, tenant_id, license_id, user_id, hardware_id, idempotency_key, client_info,
            created_at_ms, lease_expires_at_ms)
          SELECT id, tenant_id, license_id, user_id, hardware_id, idempotency_key, client_info::jsonb, created_at_ms, lease_expires_at_ms
          FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::bigint[])
            AS t(id, tenant_id, license_id, user_id, hardware_id, idempotency_key, client_info, created_at_ms, lease_expires_at_ms)
          RETURNING id
        ), inserted_audit AS (
          INSERT INTO audit_log (id, at_ms, tenant_id, actor, action, target, outcome)
          SELECT * FROM unnest($10::text[], $11::bigint[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[])
        ), ended AS (
          UPDATE sessions AS s SET ended_at_ms = t.at_ms, end_reason = t.reason
          FROM unnest($17::text[], $18::bigint[], $19::text[]) AS t(id, at_ms, reason)
          WHERE s.id = ANY($17::text[]) AND s.id = t.id AND (s.ended_at_ms IS NULL) IS TRUE
          RETURNING s.id
        ), ended_audit AS (
          INSERT INTO audit_log (id, at_ms, tenant_id, actor, action, target, outcome)
          SELECT a.id, a.at_ms, a.tenant_id, a.actor, a.action, a.target, a.outcome
          FROM unnest($20::text[], $21::bigint[], $22::text[], $23::text[], $24::text[], $25::text[], $26::text[], $17::text[])
            AS a(id, at_ms, tenant_id, actor, action, target, outcome, session_id)
          JOIN ended ON ended.id = a.session_id
        )
        SELECT true, id FROM inserted UNION ALL SELECT false, id FROM ended
        """
    static let bindingDataTypes: [PostgresDataType] = [
        .textArray, .textArray, .textArray, .textArray, .textArray, .textArray, .textArray, .int8Array, .int8Array,
        .textArray, .int8Array, .textArray, .textArray, .textArray, .textArray, .textArray,
        .textArray, .int8Array, .textArray,
        .textArray, .int8Array, .textArray, .textArray, .textArray, .textArray, .textArray,
    ]
    typealias Row = (Bool, String)

    var inserts: [SessionWrite.Insert]
    var ends: [SessionWrite.End]

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 26)
        bindings.append(inserts.map(\.session.id.rawValue))
        bindings.append(inserts.map(\.session.tenantID.rawValue))
        bindings.append(inserts.map(\.session.licenseID.rawValue))
        bindings.append(inserts.map(\.session.userID.rawValue))
        bindings.append(inserts.map(\.session.hardwareID))
        bindings.append(inserts.map(\.session.idempotencyKey))
        bindings.append(inserts.map(\.clientInfoJSON))
        bindings.append(inserts.map(\.session.createdAt.millisecondsSinceEpoch))
        bindings.append(inserts.map(\.session.leaseExpiresAt.millisecondsSinceEpoch))
        AuditEvent.appendColumns(of: inserts.map(\.audit), to: &bindings)
        bindings.append(ends.map(\.session.rawValue))
        bindings.append(ends.map(\.at.millisecondsSinceEpoch))
        bindings.append(ends.map(\.reason.rawValue))
        AuditEvent.appendColumns(of: ends.map(\.audit), to: &bindings)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> (Bool, String) { try row.decode((Bool, String).self) }
}

extension AuditEvent {
    /// The seven audit-row columns as arrays (every event has a tenant and an actor).
    fileprivate static func appendColumns(of events: [AuditEvent], to bindings: inout PostgresBindings) {
        bindings.append(events.map(\.id))
        bindings.append(events.map(\.at.millisecondsSinceEpoch))
        bindings.append(events.map { $0.tenantID?.rawValue ?? "" })
        bindings.append(events.map { $0.actor?.rawValue ?? "" })
        bindings.append(events.map(\.action))
        bindings.append(events.map(\.target))
        bindings.append(events.map(\.outcome))
    }
}
