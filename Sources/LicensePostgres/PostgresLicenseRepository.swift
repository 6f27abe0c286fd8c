import Atomics
import Foundation
import LicenseCore
import Logging
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// The production repository: Postgres through postgres-nio's connection pool.
///
/// - Writes go through a group committer: concurrent calls share one transaction and one WAL
///   flush, and none is answered before its rows are committed.
/// - Tenant isolation is enforced by the service and again by row-level security: every
///   statement runs with `coditect.tenant` set to the caller's tenant (`scoped(to:)`), or to
///   `*` for the daemon's own work (authentication, seat rebuild, operators).
/// - Licenses are cached and the cache is invalidated across replicas by LISTEN/NOTIFY.
/// - Every call is bounded by the operation timeout and fails as UNAVAILABLE after it.
///
/// Run it as a `Service` (it runs the connection pool and the LISTEN subscription).
public final class PostgresLicenseRepository: LicenseRepository, Service {
    private final class Core: Sendable {
        let client: PostgresClient
        /// Independent group-commit lanes: each batches the writes routed to it on its own
        /// connection, so one lane's round trips do not hold up the others.
        let committers: [PostgresGroupCommitter]
        /// What each pooled connection's session settings are, shared by reads and writes.
        let memo = SessionSettingsMemo()
        let nextLane = ManagedAtomic<Int>(0)
        let cache = LicenseCache(maxAge: .seconds(30), trusted: false)
        /// Concurrent cache misses of one license share a read.
        let licenseReads = SingleFlight<LicenseRead, License?>()
        let settings: PostgresSettings
        let logger: Logger
        let breaker = Mutex(BackendBreaker())
        let probeRequests: AsyncStream<Void>
        let probeRequester: AsyncStream<Void>.Continuation

        init(settings: PostgresSettings, logger: Logger) {
            self.settings = settings
            self.logger = logger
            (probeRequests, probeRequester) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
            self.client = PostgresClient(configuration: settings.clientConfiguration(), backgroundLogger: logger)
            PostgresMetrics.poolSize.record(settings.maximumConnections)
            PostgresMetrics.createErrorSeries()
            self.committers = (0..<max(1, settings.writers)).map { [client, memo] _ in
                PostgresGroupCommitter(client: client, timeout: settings.operationTimeout, memo: memo, logger: logger)
            }
        }

        /// Something suggests Postgres is down: the breaker asks for a probe unless one runs.
        func suspectDown() {
            if breaker.withLock({ $0.callFailed() }) { probeRequester.yield() }
        }

        var committer: PostgresGroupCommitter {
            committers[nextLane.loadThenWrappingIncrement(ordering: .relaxed) % committers.count]
        }
    }

    private let core: Core
    /// `*` (every tenant) or one tenant's id.
    private let scope: String

    /// Creates the repository. Nothing connects until `run()` is running.
    public convenience init(settings: PostgresSettings, logger: Logger = Logger(label: "coditect.license.postgres")) {
        self.init(core: Core(settings: settings, logger: logger), scope: "*")
    }

    private init(core: Core, scope: String) {
        self.core = core
        self.scope = scope
    }

    /// A view that can see and change only `tenant`'s rows: the database refuses the rest.
    public func scoped(to tenant: TenantID) -> any LicenseRepository {
        PostgresLicenseRepository(core: core, scope: tenant.rawValue)
    }

    /// Whether the license cache is in use (the LISTEN subscription is up).
    public var licenseCacheIsLive: Bool { core.cache.isTrusted }

    // MARK: Service

    /// Runs the connection pool and the license-change subscription until cancelled or until
    /// graceful shutdown.
    public func run() async throws {
        await cancelWhenGracefulShutdown { [core] in
            await withDiscardingTaskGroup { group in
                group.addTask { await core.client.run() }
                group.addTask { await Self.followLicenseChanges(core) }
                group.addTask { await Self.runProbes(core) }
            }
        }
    }

    /// Runs `body` while the pool and the subscription run, then stops them: for callers that
    /// use the repository outside a `ServiceGroup` (start-up, `licensed migrate`, tests).
    public func withRunning<T: Sendable>(_ body: @Sendable (PostgresLicenseRepository) async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                try await self.run()
                return nil
            }
            defer { group.cancelAll() }
            return try await body(self)
        }
    }

    private static func followLicenseChanges(_ core: Core) async {
        var failures = 0
        while !Task.isCancelled {
            do {
                try await core.client.withConnection { connection in
                    try await connection.listen(on: PostgresMigrations.licenseChannel) { notifications in
                        core.cache.setTrusted(true)
                        failures = 0
                        for try await notification in notifications {
                            core.cache.invalidate(LicenseID(notification.payload))
                        }
                    }
                }
            } catch {
                core.logger.debug("license-change subscription failed", metadata: ["error": "\(type(of: error))"])
            }
            core.cache.setTrusted(false)
            // The subscription's connection dropping is the first sign of a Postgres going
            // down: probe now, before calls wait out their deadlines on it.
            if !Task.isCancelled { core.suspectDown() }
            guard !Task.isCancelled else { return }
            failures += 1
            try? await Task.sleep(for: .milliseconds(min(5_000, 100 << min(failures, 6))))
        }
    }

    // MARK: Breaker

    /// Runs the connection attempts the breaker asks for, one at a time.
    private static func runProbes(_ core: Core) async {
        for await _ in core.probeRequests {
            var connected = false
            do {
                let configuration = try core.settings.probeConfiguration()
                // The connection is closed inside the deadline's body: a connection made just as
                // the deadline (or shutdown) won would otherwise be dropped open, which leaks it
                // (and trips postgres-nio's assertion in debug builds).
                try await withDeadline(core.settings.connectTimeout) {
                    let connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: core.logger)
                    try? await connection.close()
                }
                connected = true
            } catch {
                core.logger.debug("postgres probe failed", metadata: ["error": "\(type(of: error))"])
            }
            let failuresBefore = core.breaker.withLock { breaker in
                let before = breaker.failures
                breaker.probeFinished(connected: connected, at: .now, jitter: .random(in: 0...1))
                return before
            }
            if !connected && failuresBefore == 0 {
                core.logger.warning("postgres refuses connections; calls fail at once until a probe connects")
            } else if connected && failuresBefore > 0 {
                core.logger.info("postgres accepts connections again")
            }
        }
    }

    /// Lets a call through or refuses it at once (the breaker is open).
    private func admit() throws {
        let admission = core.breaker.withLock { $0.admit(at: .now) }
        switch admission {
        case .pass:
            return
        case .refuseAndProbe:
            core.probeRequester.yield()
            throw LicenseError(.unavailable, .backendUnavailable, "the repository is unavailable", retryAfter: .milliseconds(100))
        case .refuse(let retryAfter):
            throw LicenseError(.unavailable, .backendUnavailable, "the repository is unavailable", retryAfter: max(retryAfter, .milliseconds(50)))
        }
    }

    /// Counts a failed call and tells the breaker when the failure may mean Postgres is down: no
    /// connection, a closed one, a server shutting down, or no answer in time. (A refused
    /// statement is not.)
    ///
    /// Nor is a call whose caller gave up on it: a readiness probe past its deadline, or a task
    /// cancelled at shutdown. Its lease request or statement was cut short here, by the
    /// cancellation, so it says nothing about Postgres; counted as `cancelled`, it leaves the
    /// breaker alone. (A probe that waited behind a burst of calls for a pooled connection once
    /// made the breaker refuse every call until its own probe connected; docs/benchmarks.md,
    /// "A readiness probe that tripped the breaker".)
    private func noteFailure(_ error: any Error, of operation: String) {
        guard !Task.isCancelled else {
            PostgresMetrics.failed(operation, kind: "cancelled")
            return
        }
        PostgresMetrics.failed(operation, kind: PostgresMetrics.kind(of: error))
        if let error = error as? PSQLError, error.connectionLost == false { return }
        if error is LicenseError { return }
        core.suspectDown()
    }

    // MARK: Migrations

    /// The highest schema version applied (0 for an empty database).
    public func schemaVersion() async throws -> Int {
        try await schemaState().version
    }

    /// The schema's version and the oldest schema version whose builds can run on it (see
    /// `PostgresMigrations.Migration.readableFrom`; migrations recorded before the marker existed
    /// count as readable from their own version). Both are 0 for an empty database.
    public func schemaState() async throws -> (version: Int, readableFrom: Int) {
        try await read { connection in
            let exists = try await connection.query("SELECT to_regclass('schema_migrations') IS NOT NULL", logger: self.core.logger)
                .collect().first?.decode(Bool.self) ?? false
            guard exists else { return (0, 0) }
            let marker = try await connection.query("""
                SELECT EXISTS (SELECT 1 FROM information_schema.columns
                               WHERE table_name = 'schema_migrations' AND column_name = 'readable_from'
                                 AND table_schema = current_schema())
                """, logger: self.core.logger).collect().first?.decode(Bool.self) ?? false
            let readable = marker ? "COALESCE(readable_from, version)" : "version"
            let rows = try await connection.query(PostgresQuery(unsafeSQL: """
                SELECT COALESCE(MAX(version), 0)::bigint, COALESCE(MAX(\(readable)), 0)::bigint FROM schema_migrations
                """), logger: self.core.logger).collect()
            guard let row = rows.first else { return (0, 0) }
            let (version, readableFrom) = try row.decode((Int64, Int64).self)
            return (Int(version), Int(readableFrom))
        }
    }

    /// The schema version this build needs.
    public static var requiredSchemaVersion: Int { PostgresMigrations.all.last?.version ?? 0 }

    public func migrate() async throws {
        let logger = core.logger
        try await mapErrors("migrate") {
            try await withDeadline(.seconds(120)) { [core] in
                try await core.client.withConnection { connection in
                    core.memo.remember(connection.id, nil)
                    try await connection.execute("SELECT set_config('statement_timeout', '120000', false)", logger: logger)
                    for migration in PostgresMigrations.all {
                        try await connection.execute("BEGIN", logger: logger)
                        do {
                            try await connection.execute("SELECT pg_advisory_xact_lock(\(PostgresMigrations.lockKey))", logger: logger)
                            try await connection.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at_ms bigint NOT NULL)", logger: logger)
                            // The compatibility marker (readable_from) came after the first migrations.
                            try await connection.execute("ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS readable_from integer", logger: logger)
                            let applied = try await connection.query("SELECT 1 FROM schema_migrations WHERE version = \(migration.version)", logger: logger).collect()
                            if applied.isEmpty {
                                for statement in migration.statements {
                                    try await connection.execute(PostgresQuery(unsafeSQL: statement), logger: logger)
                                }
                                let now = SystemWallClock().now().millisecondsSinceEpoch
                                try await connection.execute("INSERT INTO schema_migrations (version, applied_at_ms, readable_from) VALUES (\(migration.version), \(now), \(migration.readableFrom))", logger: logger)
                                logger.info("applied migration", metadata: ["version": "\(migration.version)"])
                            }
                            try await connection.execute("COMMIT", logger: logger)
                        } catch {
                            try? await connection.execute("ROLLBACK", logger: logger)
                            throw error
                        }
                    }
                }
            }
        }
    }

    /// Whether the connected role bypasses row-level security (a superuser or BYPASSRLS role),
    /// which would leave tenant isolation to the service alone.
    public func roleBypassesRowLevelSecurity() async throws -> Bool {
        try await read { connection in
            try await connection.query("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user", logger: self.core.logger)
                .collect().first?.decode(Bool.self) ?? false
        }
    }

    // MARK: Tenants

    public func createTenant(_ tenant: Tenant, audit: AuditEvent) async throws {
        try await write { connection, logger in
            try await connection.execute("""
                INSERT INTO tenants (id, name, status, created_at_ms)
                VALUES (\(tenant.id.rawValue), \(tenant.name), \(tenant.status.rawValue), \(tenant.createdAt.millisecondsSinceEpoch))
                """, logger: logger)
            try await Self.insertAudit(audit, connection, logger)
        }
    }

    public func tenant(_ id: TenantID) async throws -> Tenant? {
        try await read { connection in
            try await connection.query("SELECT \(unescaped: Self.tenantColumns) FROM tenants WHERE id = \(id.rawValue)", logger: self.core.logger)
                .collect().first.map(Self.tenant)
        }
    }

    public func tenants() async throws -> [Tenant] {
        try await read { connection in
            try await connection.query("SELECT \(unescaped: Self.tenantColumns) FROM tenants ORDER BY id", logger: self.core.logger)
                .collect().map(Self.tenant)
        }
    }

    public func updateTenant(_ tenant: Tenant, audit: AuditEvent) async throws {
        try await write { connection, logger in
            let changed = try await connection.query("""
                UPDATE tenants SET name = \(tenant.name), status = \(tenant.status.rawValue), provisioning = \(tenant.provisioning.rawValue),
                  email_domains = \(tenant.emailDomains), identity_tenant = \(tenant.identityTenant)
                WHERE id = \(tenant.id.rawValue) RETURNING id
                """, logger: logger).collect()
            guard !changed.isEmpty else { throw LicenseError.tenantNotFound(tenant.id) }
            try await Self.insertAudit(audit, connection, logger)
        }
    }

    public func tenants(identityTenant: String) async throws -> [Tenant] {
        try await read { connection in
            try await connection.query("SELECT \(unescaped: Self.tenantColumns) FROM tenants WHERE identity_tenant = \(identityTenant) ORDER BY id", logger: self.core.logger)
                .collect().map(Self.tenant)
        }
    }

    public func tenants(emailDomain: String) async throws -> [Tenant] {
        try await read { connection in
            try await connection.query("SELECT \(unescaped: Self.tenantColumns) FROM tenants WHERE \(emailDomain) = ANY(email_domains) ORDER BY id", logger: self.core.logger)
                .collect().map(Self.tenant)
        }
    }

    // MARK: Licenses

    public func createLicense(_ license: License, audit: AuditEvent) async throws {
        try await write { connection, logger in
            try await Self.requireTenant(license.tenantID, connection, logger)
            try await connection.execute("""
                INSERT INTO licenses (id, tenant_id, name, seats, lease_ttl_ms, heartbeat_interval_ms, offline_grace_ms,
                  valid_from_ms, valid_until_ms, features, status, created_at_ms)
                VALUES (\(license.id.rawValue), \(license.tenantID.rawValue), \(license.name), \(Int64(license.seats)),
                  \(license.policy.leaseTTL.milliseconds), \(license.policy.heartbeatInterval.milliseconds),
                  \(license.policy.offlineGrace.milliseconds), \(license.validFrom?.millisecondsSinceEpoch),
                  \(license.validUntil?.millisecondsSinceEpoch), \(license.features), \(license.status.rawValue),
                  \(license.createdAt.millisecondsSinceEpoch))
                """, logger: logger)
            try await Self.insertAudit(audit, connection, logger)
        }
    }

    public func license(_ id: LicenseID) async throws -> License? {
        let (cached, generation) = core.cache.lookup(id)
        if let cached { return visible(cached.tenantID.rawValue) ? cached : nil }
        do {
            // Calls that miss together (after a restart, or when the entry aged out) share one
            // read; the generation and scope in the key keep an older or narrower read from
            // answering a caller it would not have answered.
            return try await core.licenseReads.run(LicenseRead(id: id, generation: generation, scope: scope)) {
                let license = try await read { connection in
                    try await connection.query("SELECT \(unescaped: Self.licenseColumns) FROM licenses WHERE id = \(id.rawValue)", logger: self.core.logger)
                        .collect().first.map(Self.license)
                }
                if let license { core.cache.store(license, readAt: generation) }
                return license
            }
        } catch let error as LicenseError where error.code == .unavailable {
            // Postgres is down: the last terms read keep heartbeats going (nobody can change
            // a license meanwhile). A license changed since it was read is not served.
            guard let known = core.cache.lastKnown(id) else { throw error }
            return visible(known.tenantID.rawValue) ? known : nil
        }
    }

    /// What makes two license reads interchangeable: the same license, cache generation and scope.
    struct LicenseRead: Hashable, Sendable {
        let id: LicenseID
        let generation: UInt64
        let scope: String
    }

    public func licenses(tenant: TenantID?) async throws -> [License] {
        try await read { connection in
            let rows = if let tenant {
                try await connection.query("SELECT \(unescaped: Self.licenseColumns) FROM licenses WHERE tenant_id = \(tenant.rawValue) ORDER BY id", logger: self.core.logger).collect()
            } else {
                try await connection.query("SELECT \(unescaped: Self.licenseColumns) FROM licenses ORDER BY id", logger: self.core.logger).collect()
            }
            return try rows.map(Self.license)
        }
    }

    public func updateLicense(_ license: License, audit: AuditEvent) async throws {
        try await write { connection, logger in
            let changed = try await connection.query("""
                UPDATE licenses SET name = \(license.name), seats = \(Int64(license.seats)),
                  lease_ttl_ms = \(license.policy.leaseTTL.milliseconds), heartbeat_interval_ms = \(license.policy.heartbeatInterval.milliseconds),
                  offline_grace_ms = \(license.policy.offlineGrace.milliseconds), valid_from_ms = \(license.validFrom?.millisecondsSinceEpoch),
                  valid_until_ms = \(license.validUntil?.millisecondsSinceEpoch), features = \(license.features), status = \(license.status.rawValue)
                WHERE id = \(license.id.rawValue) RETURNING id
                """, logger: logger).collect()
            guard !changed.isEmpty else { throw LicenseError.licenseNotFound(license.id) }
            try await Self.insertAudit(audit, connection, logger)
        }
        // This daemon reads its own change at once; other replicas drop their copies on the NOTIFY.
        core.cache.invalidate(license.id)
    }

    // MARK: Users and API keys

    public func createUser(_ user: User, apiKey: APIKeyRecord?, audit: AuditEvent?) async throws {
        try await write { connection, logger in
            if let tenant = user.tenantID { try await Self.requireTenant(tenant, connection, logger) }
            try await connection.execute("""
                INSERT INTO users (id, tenant_id, name, role, disabled, created_at_ms, email, identity_issuer, identity_subject)
                VALUES (\(user.id.rawValue), \(user.tenantID?.rawValue), \(user.name), \(user.role.rawValue), \(user.disabled),
                  \(user.createdAt.millisecondsSinceEpoch), \(user.email), \(user.identity?.issuer), \(user.identity?.subject))
                """, logger: logger)
            if let apiKey { try await Self.insertAPIKey(apiKey, connection, logger) }
            if let audit { try await Self.insertAudit(audit, connection, logger) }
        }
    }

    public func user(_ id: UserID) async throws -> User? {
        try await read { connection in
            try await connection.query("SELECT \(unescaped: Self.userColumns) FROM users WHERE id = \(id.rawValue)", logger: self.core.logger)
                .collect().first.map(Self.user)
        }
    }

    public func user(apiKeyHash: String) async throws -> User? {
        try await read { connection in
            try await connection.query("""
                SELECT \(unescaped: Self.userColumns) FROM api_keys JOIN users ON users.id = api_keys.user_id
                WHERE api_keys.hash = \(apiKeyHash) AND api_keys.revoked_at_ms IS NULL
                """, logger: self.core.logger).collect().first.map(Self.user)
        }
    }

    public func userCount(role: Role) async throws -> Int {
        try await read { connection in
            Int(try await connection.query("SELECT COUNT(*)::bigint FROM users WHERE role = \(role.rawValue)", logger: self.core.logger)
                .collect().first?.decode(Int64.self) ?? 0)
        }
    }

    public func users(tenant: TenantID?) async throws -> [User] {
        try await read { connection in
            let rows = if let tenant {
                try await connection.query("SELECT \(unescaped: Self.userColumns) FROM users WHERE tenant_id = \(tenant.rawValue) ORDER BY id", logger: self.core.logger).collect()
            } else {
                try await connection.query("SELECT \(unescaped: Self.userColumns) FROM users ORDER BY id", logger: self.core.logger).collect()
            }
            return try rows.map(Self.user)
        }
    }

    public func updateUser(_ user: User, audit: AuditEvent?) async throws {
        try await write { connection, logger in
            let changed = try await connection.query("""
                UPDATE users SET name = \(user.name), disabled = \(user.disabled), email = \(user.email),
                  identity_issuer = \(user.identity?.issuer), identity_subject = \(user.identity?.subject)
                WHERE id = \(user.id.rawValue) RETURNING id
                """, logger: logger).collect()
            guard !changed.isEmpty else { throw LicenseError.userNotFound(user.id) }
            if let audit { try await Self.insertAudit(audit, connection, logger) }
        }
    }

    public func user(identity: ExternalIdentity) async throws -> User? {
        try await read { connection in
            try await connection.query("""
                SELECT \(unescaped: Self.userColumns) FROM users
                WHERE identity_issuer = \(identity.issuer) AND identity_subject = \(identity.subject)
                """, logger: self.core.logger).collect().first.map(Self.user)
        }
    }

    public func users(email: String) async throws -> [User] {
        try await read { connection in
            try await connection.query("SELECT \(unescaped: Self.userColumns) FROM users WHERE email = \(email) ORDER BY id", logger: self.core.logger)
                .collect().map(Self.user)
        }
    }

    public func createAPIKey(_ key: APIKeyRecord, audit: AuditEvent) async throws {
        try await write { connection, logger in
            guard try await !connection.query("SELECT 1 FROM users WHERE id = \(key.userID.rawValue)", logger: logger).collect().isEmpty else {
                throw LicenseError.userNotFound(key.userID)
            }
            try await Self.insertAPIKey(key, connection, logger)
            try await Self.insertAudit(audit, connection, logger)
        }
    }

    public func apiKey(id: String) async throws -> APIKeyRecord? {
        try await read { connection in
            try await connection.query("SELECT \(unescaped: Self.apiKeyColumns) FROM api_keys WHERE id = \(id)", logger: self.core.logger)
                .collect().first.map(Self.apiKey)
        }
    }

    public func apiKeys(user: UserID?, tenant: TenantID?) async throws -> [APIKeyRecord] {
        try await read { connection in
            try await connection.query("""
                SELECT \(unescaped: Self.apiKeyColumns) FROM api_keys
                WHERE (\(user?.rawValue)::text IS NULL OR user_id = \(user?.rawValue))
                  AND (\(tenant?.rawValue)::text IS NULL OR tenant_id = \(tenant?.rawValue))
                ORDER BY created_at_ms DESC, id DESC
                """, logger: self.core.logger).collect().map(Self.apiKey)
        }
    }

    public func revokeAPIKey(id: String, at: Timestamp, replacement: APIKeyRecord?, audit: AuditEvent) async throws -> Bool {
        try await write { connection, logger in
            let changed = try await connection.query("""
                UPDATE api_keys SET revoked_at_ms = \(at.millisecondsSinceEpoch) WHERE id = \(id) AND revoked_at_ms IS NULL RETURNING id
                """, logger: logger).collect()
            guard !changed.isEmpty else { return false }
            if let replacement { try await Self.insertAPIKey(replacement, connection, logger) }
            try await Self.insertAudit(audit, connection, logger)
            return true
        }
    }

    private static func insertAPIKey(_ key: APIKeyRecord, _ connection: BatchConnection, _ logger: Logger) async throws {
        try await connection.execute("""
            INSERT INTO api_keys (hash, id, user_id, tenant_id, name, created_at_ms, revoked_at_ms)
            VALUES (\(key.hash), \(key.id), \(key.userID.rawValue), \(key.tenantID?.rawValue), \(key.name),
              \(key.createdAt.millisecondsSinceEpoch), \(key.revokedAt?.millisecondsSinceEpoch))
            """, logger: logger)
    }

    // MARK: Sessions

    public func insertSession(_ session: LeaseSession, audit: AuditEvent) async throws {
        let info = String(decoding: try JSONEncoder().encode(session.clientInfo), as: UTF8.self)
        let write = SessionWrite.combinable(.insert(.init(session: session, clientInfoJSON: info, audit: audit, scope: scope)))
        // Combined with the batch's other inserts when it can be; else one prepared statement
        // (one round trip in the batch) for the session row and its audit row.
        try await self.write(payload: write) { connection, logger in
            if let write, connection.combinedOutcome(write) != nil { return }
            _ = try await connection.connection.execute(InsertSessionStatement(session: session, clientInfoJSON: info, audit: audit), logger: logger)
        }
    }

    /// One autocommit statement on a pool connection (the `read` path), not a group commit: a
    /// batch of thousands of rows must not hold their locks while a commit batch runs. Rows
    /// another transaction has locked (a session being ended) are skipped, not waited for.
    public func updateLeases(_ leases: [SessionID: Timestamp]) async throws {
        guard !leases.isEmpty else { return }
        let pairs = leases.sorted { $0.key.rawValue < $1.key.rawValue }
        let ids = pairs.map(\.key.rawValue)
        let expiries = pairs.map(\.value.millisecondsSinceEpoch)
        try await read { connection in
            try await connection.execute("""
                UPDATE sessions AS s SET lease_expires_at_ms = v.expires
                FROM unnest(\(ids)::text[], \(expiries)::bigint[]) AS v(id, expires)
                WHERE s.id = v.id AND s.id IN (
                  SELECT id FROM sessions WHERE id = ANY(\(ids)::text[]) AND ended_at_ms IS NULL FOR UPDATE SKIP LOCKED
                )
                """, logger: self.core.logger)
        }
    }

    public func endSession(_ id: SessionID, at: Timestamp, reason: SessionEndReason, audit: AuditEvent) async throws -> Bool {
        let write = SessionWrite.combinable(.end(.init(session: id, at: at, reason: reason, audit: audit, scope: scope)))
        // Combined with the batch's other ends when it can be; else one prepared statement.
        // Either way the audit row is written only if the session was live.
        return try await self.write(payload: write) { connection, logger in
            if let write, let ended = connection.combinedOutcome(write) { return ended }
            var ended = false
            for try await _ in try await connection.connection.execute(EndSessionStatement(session: id, at: at, reason: reason, audit: audit), logger: logger) {
                ended = true
            }
            return ended
        }
    }

    public func session(_ id: SessionID) async throws -> LeaseSession? {
        try await read { connection in
            try await connection.query("SELECT \(unescaped: Self.sessionColumns) FROM sessions WHERE id = \(id.rawValue)", logger: self.core.logger)
                .collect().first.map(Self.session)
        }
    }

    public func sessions(license: LicenseID, includeEnded: Bool) async throws -> [LeaseSession] {
        try await read { connection in
            let rows = if includeEnded {
                try await connection.query("""
                    SELECT \(unescaped: Self.sessionColumns) FROM sessions WHERE license_id = \(license.rawValue)
                    ORDER BY created_at_ms DESC, id DESC
                    """, logger: self.core.logger).collect()
            } else {
                try await connection.query("""
                    SELECT \(unescaped: Self.sessionColumns) FROM sessions WHERE license_id = \(license.rawValue) AND ended_at_ms IS NULL
                    ORDER BY created_at_ms DESC, id DESC
                    """, logger: self.core.logger).collect()
            }
            return try rows.map(Self.session)
        }
    }

    public func sessions(_ filter: SessionFilter, after cursor: SessionCursor?, limit: Int) async throws -> [LeaseSession] {
        let live = filter.liveAt?.millisecondsSinceEpoch
        let cursorAt = cursor?.createdAt.millisecondsSinceEpoch
        return try await read { connection in
            try await connection.query("""
                SELECT \(unescaped: Self.sessionColumns) FROM sessions
                WHERE (\(filter.tenantID?.rawValue)::text IS NULL OR tenant_id = \(filter.tenantID?.rawValue))
                  AND (\(filter.licenseID?.rawValue)::text IS NULL OR license_id = \(filter.licenseID?.rawValue))
                  AND (\(filter.userID?.rawValue)::text IS NULL OR user_id = \(filter.userID?.rawValue))
                  AND (\(live)::bigint IS NULL OR (ended_at_ms IS NULL AND lease_expires_at_ms > \(live)))
                  AND (\(cursorAt)::bigint IS NULL OR (created_at_ms, id) < (\(cursorAt), \(cursor?.id.rawValue)::text))
                ORDER BY created_at_ms DESC, id DESC LIMIT \(Int64(limit))
                """, logger: self.core.logger).collect().map(Self.session)
        }
    }

    public func licensesWithLiveSessions() async throws -> [LicenseID] {
        try await read { connection in
            try await connection.query(
                "SELECT DISTINCT license_id FROM sessions WHERE ended_at_ms IS NULL ORDER BY license_id", logger: self.core.logger
            ).collect().map { LicenseID(try $0.decode(String.self)) }
        }
    }

    public func sessions(user: UserID, includeEnded: Bool) async throws -> [LeaseSession] {
        try await read { connection in
            try await connection.query("""
                SELECT \(unescaped: Self.sessionColumns) FROM sessions
                WHERE user_id = \(user.rawValue) AND (\(includeEnded) OR ended_at_ms IS NULL)
                ORDER BY created_at_ms DESC, id DESC
                """, logger: self.core.logger).collect().map(Self.session)
        }
    }

    // MARK: Audit

    public func ping() async throws {
        try await read { connection in _ = try await connection.query("SELECT 1", logger: self.core.logger).collect() }
    }

    public func appendAudit(_ event: AuditEvent) async throws {
        try await write { connection, logger in try await Self.insertAudit(event, connection, logger) }
    }

    public func auditEvents(_ query: AuditQuery) async throws -> [AuditEvent] {
        let exact = query.action.flatMap { $0.hasSuffix(".") ? nil : $0 }
        let prefix = query.action.flatMap { $0.hasSuffix(".") ? $0 : nil }
        return try await read { connection in
            try await connection.query("""
                SELECT \(unescaped: Self.auditColumns) FROM audit_log
                WHERE (\(query.tenantID?.rawValue)::text IS NULL OR tenant_id = \(query.tenantID?.rawValue))
                  AND (\(query.actor?.rawValue)::text IS NULL OR actor = \(query.actor?.rawValue))
                  AND (\(exact)::text IS NULL OR action = \(exact))
                  AND (\(prefix)::text IS NULL OR starts_with(action, \(prefix)))
                  AND (\(query.since?.millisecondsSinceEpoch)::bigint IS NULL OR at_ms >= \(query.since?.millisecondsSinceEpoch))
                  AND (\(query.until?.millisecondsSinceEpoch)::bigint IS NULL OR at_ms < \(query.until?.millisecondsSinceEpoch))
                  AND (\(query.before)::bigint IS NULL OR seq < \(query.before))
                ORDER BY seq DESC LIMIT \(Int64(query.limit))
                """, logger: self.core.logger).collect().map(Self.audit)
        }
    }

    // MARK: Signing keys

    public func signingKeys() async throws -> [StoredSigningKey] {
        try await read { connection in
            try await connection.query("""
                SELECT kid, algorithm, private_pem, created_at_ms, retired_at_ms, publish_until_ms FROM signing_keys
                ORDER BY created_at_ms DESC, kid
                """, logger: self.core.logger).collect().map { row in
                let (kid, algorithm, pem, created, retired, until) = try row.decode((String, String, String, Int64, Int64?, Int64?).self)
                return StoredSigningKey(
                    keyID: kid, algorithm: algorithm, privateKeyPEM: pem, createdAt: Timestamp(millisecondsSinceEpoch: created),
                    retiredAt: retired.map(Timestamp.init(millisecondsSinceEpoch:)), publishUntil: until.map(Timestamp.init(millisecondsSinceEpoch:))
                )
            }
        }
    }

    public func resealSigningKeys(_ keys: [StoredSigningKey], audit: AuditEvent) async throws {
        try await write { connection, logger in
            for key in keys {
                let updated = try await connection.query(
                    "UPDATE signing_keys SET private_pem = \(key.privateKeyPEM) WHERE kid = \(key.keyID) RETURNING kid", logger: logger
                ).collect()
                guard !updated.isEmpty else { throw LicenseError.signingKeyNotFound(key.keyID) }
            }
            try await Self.insertAudit(audit, connection, logger)
        }
    }

    public func rotateSigningKey(to key: StoredSigningKey, ifCurrent current: String?, publishRetiredUntil: Timestamp, audit: AuditEvent) async throws -> Bool {
        try await write { connection, logger in
            if let current {
                // Retiring the expected key first takes its row lock: a replica rotating the same
                // key at the same time waits, then finds it retired and changes nothing.
                let retired = try await connection.query("""
                    UPDATE signing_keys SET retired_at_ms = \(key.createdAt.millisecondsSinceEpoch),
                      publish_until_ms = \(publishRetiredUntil.millisecondsSinceEpoch) WHERE kid = \(current) AND retired_at_ms IS NULL
                    RETURNING kid
                    """, logger: logger).collect()
                guard !retired.isEmpty else { return false }
            }
            try await connection.execute("""
                UPDATE signing_keys SET retired_at_ms = \(key.createdAt.millisecondsSinceEpoch),
                  publish_until_ms = \(publishRetiredUntil.millisecondsSinceEpoch) WHERE retired_at_ms IS NULL
                """, logger: logger)
            try await connection.execute("""
                INSERT INTO signing_keys (kid, algorithm, private_pem, created_at_ms)
                VALUES (\(key.keyID), \(key.algorithm), \(key.privateKeyPEM), \(key.createdAt.millisecondsSinceEpoch))
                """, logger: logger)
            try await Self.insertAudit(audit, connection, logger)
            return true
        }
    }

    private static func insertAudit(_ event: AuditEvent, _ connection: BatchConnection, _ logger: Logger) async throws {
        try await connection.execute("""
            INSERT INTO audit_log (id, at_ms, tenant_id, actor, action, target, outcome, count)
            VALUES (\(event.id), \(event.at.millisecondsSinceEpoch), \(event.tenantID?.rawValue), \(event.actor?.rawValue),
              \(event.action), \(event.target), \(event.outcome), \(Int32(clamping: event.count)))
            """, logger: logger)
    }

    private static func requireTenant(_ tenant: TenantID, _ connection: BatchConnection, _ logger: Logger) async throws {
        // Under row-level security another tenant's row is invisible, so it is "not found" too.
        guard try await !connection.query("SELECT 1 FROM tenants WHERE id = \(tenant.rawValue)", logger: logger).collect().isEmpty else {
            throw LicenseError.tenantNotFound(tenant)
        }
    }

    // MARK: Plumbing

    private func visible(_ tenant: String) -> Bool { scope == "*" || scope == tenant }

    private func read<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        let scope = self.scope
        let core = self.core
        return try await mapErrors("read") {
            let timeout = core.settings.operationTimeout
            let deadline = ContinuousClock.now.advanced(by: timeout)
            return try await withDeadline(timeout) {
                try await core.client.withConnection { connection in
                    PostgresMetrics.connectionsInUse.increment()
                    defer { PostgresMetrics.connectionsInUse.decrement() }
                    // Every use of a pooled connection sets its statement timeout first (a write
                    // batch sets what its callers have left), unless it is set about right already.
                    try await core.memo.setSession(of: connection, scope: scope, left: BatchConnection.statementTimeout(until: deadline), logger: core.logger)
                    return try await body(connection)
                }
            }
        }
    }

    /// Runs `body` in the next group commit, in this repository's tenant scope. A `payload`
    /// lets the commit combine the write with like ones (`body` then finds it done).
    private func write<T: Sendable>(payload: SessionWrite? = nil, _ body: @escaping @Sendable (BatchConnection, Logger) async throws -> T) async throws -> T {
        let scope = self.scope
        let logger = core.logger
        return try await mapErrors("write") {
            try await core.committer.perform(payload: payload) { connection in
                try await connection.scope(to: scope)
                return try await body(connection, logger)
            }
        }
    }

    /// Runs `body` (a `read`, `write` or `migrate` operation, as its metrics name it) if the
    /// repository is not marked down, and turns its failures into `LicenseError`s.
    private func mapErrors<T>(_ operation: String, _ body: () async throws -> T) async throws -> T {
        do {
            try admit()
        } catch {
            PostgresMetrics.failed(operation, kind: "unavailable")
            throw error
        }
        let start = ContinuousClock.now
        defer { PostgresMetrics.durations[operation]?.recordSince(start) }
        do {
            return try await body()
        } catch let error as LicenseError {
            throw error
        } catch let error as PSQLError {
            switch error.serverInfo?[.sqlState] {
            case "23505":
                throw LicenseError(.alreadyExists, .alreadyExists, "an entity with that id already exists")
            case "42501":
                // A row-level security refusal: the row belongs to another tenant.
                throw LicenseError(.notFound, .tenantUnknown, "not found")
            default:
                noteFailure(error, of: operation)
                core.logger.debug("postgres call failed", metadata: ["sqlstate": "\(error.serverInfo?[.sqlState] ?? "-")", "code": "\(error.code)"])
                throw LicenseError.backendUnavailable("the repository")
            }
        } catch {
            noteFailure(error, of: operation)
            core.logger.debug("postgres call failed", metadata: ["error": "\(type(of: error))"])
            throw LicenseError.backendUnavailable("the repository")
        }
    }

    // MARK: Rows

    static let tenantColumns = "id, name, status, created_at_ms, provisioning, email_domains, identity_tenant"
    static let apiKeyColumns = "hash, id, user_id, tenant_id, name, created_at_ms, revoked_at_ms"
    static let licenseColumns = """
        id, tenant_id, name, seats, lease_ttl_ms, heartbeat_interval_ms, offline_grace_ms, valid_from_ms, valid_until_ms, \
        features, status, created_at_ms
        """
    static let userColumns = """
        users.id, users.tenant_id, users.name, users.role, users.disabled, users.created_at_ms, users.email, \
        users.identity_issuer, users.identity_subject
        """
    static let sessionColumns = """
        id, tenant_id, license_id, user_id, hardware_id, idempotency_key, client_info::text, created_at_ms, \
        lease_expires_at_ms, ended_at_ms, end_reason
        """
    static let auditColumns = "id, at_ms, tenant_id, actor, action, target, outcome, count, seq"

    private static func tenant(_ row: PostgresRow) throws -> Tenant {
        let (id, name, status, created, provisioning, domains, identityTenant) = try row.decode((String, String, String, Int64, String, [String], String?).self)
        return Tenant(
            id: TenantID(id), name: name, status: EntityStatus(rawValue: status), createdAt: Timestamp(millisecondsSinceEpoch: created),
            provisioning: UserProvisioning(rawValue: provisioning) ?? .admin, emailDomains: domains, identityTenant: identityTenant
        )
    }

    private static func apiKey(_ row: PostgresRow) throws -> APIKeyRecord {
        let (hash, id, user, tenant, name, created, revoked) = try row.decode((String, String, String, String?, String, Int64, Int64?).self)
        var key = APIKeyRecord(
            hash: hash, userID: UserID(user), tenantID: tenant.map(TenantID.init), name: name,
            createdAt: Timestamp(millisecondsSinceEpoch: created), revokedAt: revoked.map(Timestamp.init(millisecondsSinceEpoch:))
        )
        key.id = id
        return key
    }

    private static func license(_ row: PostgresRow) throws -> License {
        let (id, tenant, name, seats, ttl, heartbeat, grace, from, until, features, status, created) =
            try row.decode((String, String, String, Int64, Int64, Int64, Int64, Int64?, Int64?, [String], String, Int64).self)
        return License(
            id: LicenseID(id), tenantID: TenantID(tenant), name: name, seats: Int(seats),
            policy: LeasePolicy(leaseTTL: .milliseconds(ttl), heartbeatInterval: .milliseconds(heartbeat), offlineGrace: .milliseconds(grace)),
            validFrom: from.map(Timestamp.init(millisecondsSinceEpoch:)), validUntil: until.map(Timestamp.init(millisecondsSinceEpoch:)),
            features: features, status: EntityStatus(rawValue: status), createdAt: Timestamp(millisecondsSinceEpoch: created)
        )
    }

    private static func user(_ row: PostgresRow) throws -> User {
        let (id, tenant, name, role, disabled, created, email, issuer, subject) =
            try row.decode((String, String?, String, String, Bool, Int64, String?, String?, String?).self)
        return User(id: UserID(id), tenantID: tenant.map(TenantID.init), name: name, role: Role(rawValue: role) ?? .tenantUser,
                    disabled: disabled, createdAt: Timestamp(millisecondsSinceEpoch: created), email: email,
                    identity: subject.map { ExternalIdentity(issuer: issuer ?? "", subject: $0) })
    }

    private static func session(_ row: PostgresRow) throws -> LeaseSession {
        let (id, tenant, license, user, hardware, key, info, created, expires, ended, reason) =
            try row.decode((String, String, String, String, String, String, String, Int64, Int64, Int64?, String?).self)
        let clientInfo = (try? JSONDecoder().decode([String: String].self, from: Data(info.utf8))) ?? [:]
        return LeaseSession(
            id: SessionID(id), tenantID: TenantID(tenant), licenseID: LicenseID(license), userID: UserID(user),
            hardwareID: hardware, idempotencyKey: key, clientInfo: clientInfo,
            createdAt: Timestamp(millisecondsSinceEpoch: created), leaseExpiresAt: Timestamp(millisecondsSinceEpoch: expires),
            endedAt: ended.map(Timestamp.init(millisecondsSinceEpoch:)), endReason: reason.map(SessionEndReason.init(rawValue:))
        )
    }

    private static func audit(_ row: PostgresRow) throws -> AuditEvent {
        let (id, at, tenant, actor, action, target, outcome, count, sequence) = try row.decode((String, Int64, String?, String?, String, String, String, Int32, Int64).self)
        return AuditEvent(id: id, at: Timestamp(millisecondsSinceEpoch: at), tenantID: tenant.map(TenantID.init),
                          actor: actor.map(UserID.init), action: action, target: target, outcome: outcome, count: Int(count), sequence: sequence)
    }
}
