import Foundation
import LicenseCore
import Logging
import NIOCore
import NIOPosix
import SQLiteNIO

/// The embedded default's repository: one SQLite file (WAL mode, `synchronous=FULL`).
///
/// Writes go through a group-commit writer on one connection; reads use a second connection,
/// which in WAL mode sees only committed data. A call answered OK has its rows on disk.
///
/// Licenses, read by every acquire and heartbeat, are kept in memory and dropped when this
/// repository changes them: the file belongs to one daemon.
public final class SQLiteLicenseRepository: LicenseRepository {
    private let writer: GroupCommitWriter
    private let writeConnection: SQLiteConnection
    private let readConnection: SQLiteConnection
    private let licenseCache = LicenseCache()
    private let path: String
    private let logger: Logger

    /// Opens (creating if needed) the database file at `path`. Call `migrate()` before use.
    ///
    /// The file holds the signing keys, so it and its `-wal` and `-shm` companions are made
    /// readable by the owner only (0600): a new file is created so, and an existing one is set so,
    /// whatever the umask or the folder's mode. (SQLite creates the companions with the main
    /// file's mode.)
    public static func open(path: String, logger: Logger = Logger(label: "coditect.license.sqlite")) async throws -> SQLiteLicenseRepository {
        try restrictToOwner(path)
        let writeConnection = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
        // secure_delete: what an update or delete removes is overwritten with zeros, so a replaced
        // private key (sealed with a key-encryption key) leaves no copy in the file.
        for pragma in ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA busy_timeout=5000", "PRAGMA foreign_keys=ON", "PRAGMA secure_delete=ON"] {
            _ = try await writeConnection.query(pragma)
        }
        let readConnection = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
        for pragma in ["PRAGMA busy_timeout=5000", "PRAGMA query_only=ON"] {
            _ = try await readConnection.query(pragma)
        }
        return SQLiteLicenseRepository(write: writeConnection, read: readConnection, path: path, logger: logger)
    }

    /// Creates `path` empty with mode 0600 if it does not exist; sets 0600 on it and on its
    /// `-wal`/`-shm` companions where they exist.
    static func restrictToOwner(_ path: String) throws {
        let fm = FileManager.default
        if !fm.fileExists(atPath: path) {
            guard fm.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]) else {
                throw LicenseError(.internal, .internalError, "cannot create the database file \(path)")
            }
        }
        for file in [path, path + "-wal", path + "-shm"] where fm.fileExists(atPath: file) {
            try fm.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file)
        }
    }

    private init(write: SQLiteConnection, read: SQLiteConnection, path: String, logger: Logger) {
        self.writeConnection = write
        self.readConnection = read
        self.path = path
        self.logger = logger
        self.writer = GroupCommitWriter(connection: write)
    }

    /// Closes both connections.
    public func close() async throws {
        try await readConnection.close()
        try await writeConnection.close()
    }

    // MARK: Migrations

    /// Versioned schema changes, applied in order, each in its own commit. Never edit a shipped
    /// migration: add a new one.
    static let migrations: [(version: Int, statements: [String])] = [
        (1, [
            """
            CREATE TABLE tenants (id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL,
              created_at_ms INTEGER NOT NULL)
            """,
            """
            CREATE TABLE licenses (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id),
              name TEXT NOT NULL, seats INTEGER NOT NULL CHECK (seats > 0), lease_ttl_ms INTEGER NOT NULL,
              heartbeat_interval_ms INTEGER NOT NULL, offline_grace_ms INTEGER NOT NULL,
              valid_from_ms INTEGER, valid_until_ms INTEGER, features TEXT NOT NULL, status TEXT NOT NULL,
              created_at_ms INTEGER NOT NULL)
            """,
            "CREATE INDEX licenses_by_tenant ON licenses(tenant_id)",
            """
            CREATE TABLE users (id TEXT PRIMARY KEY, tenant_id TEXT REFERENCES tenants(id), name TEXT NOT NULL,
              role TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0, created_at_ms INTEGER NOT NULL,
              CHECK ((role = 'operator') = (tenant_id IS NULL)))
            """,
            """
            CREATE TABLE api_keys (hash TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id),
              created_at_ms INTEGER NOT NULL, revoked_at_ms INTEGER)
            """,
            """
            CREATE TABLE sessions (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id),
              license_id TEXT NOT NULL REFERENCES licenses(id), user_id TEXT NOT NULL REFERENCES users(id),
              hardware_id TEXT NOT NULL, idempotency_key TEXT NOT NULL, client_info TEXT NOT NULL,
              created_at_ms INTEGER NOT NULL, lease_expires_at_ms INTEGER NOT NULL, ended_at_ms INTEGER,
              end_reason TEXT)
            """,
            "CREATE INDEX sessions_by_license ON sessions(license_id, ended_at_ms)",
            """
            CREATE TABLE audit_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
              at_ms INTEGER NOT NULL, tenant_id TEXT, actor TEXT, action TEXT NOT NULL, target TEXT NOT NULL,
              outcome TEXT NOT NULL)
            """,
            "CREATE INDEX audit_by_tenant ON audit_log(tenant_id, seq)",
        ]),
        (2, [
            "ALTER TABLE tenants ADD COLUMN provisioning TEXT NOT NULL DEFAULT 'admin'",
            "ALTER TABLE tenants ADD COLUMN email_domains TEXT NOT NULL DEFAULT '[]'",
            "ALTER TABLE tenants ADD COLUMN identity_tenant TEXT",
            "ALTER TABLE users ADD COLUMN email TEXT",
            "ALTER TABLE users ADD COLUMN identity_issuer TEXT",
            "ALTER TABLE users ADD COLUMN identity_subject TEXT",
            "CREATE UNIQUE INDEX users_by_identity ON users(identity_issuer, identity_subject) WHERE identity_subject IS NOT NULL",
            "CREATE INDEX users_by_email ON users(email) WHERE email IS NOT NULL",
            "ALTER TABLE api_keys ADD COLUMN id TEXT",
            "ALTER TABLE api_keys ADD COLUMN name TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE api_keys ADD COLUMN tenant_id TEXT REFERENCES tenants(id)",
            "UPDATE api_keys SET id = 'key_' || substr(hash, 1, 16), tenant_id = (SELECT tenant_id FROM users WHERE users.id = api_keys.user_id)",
            "CREATE UNIQUE INDEX api_keys_by_id ON api_keys(id)",
            "CREATE INDEX api_keys_by_user ON api_keys(user_id)",
            "CREATE INDEX sessions_by_user ON sessions(user_id, created_at_ms)",
            "CREATE INDEX audit_by_actor ON audit_log(actor, seq)",
            """
            CREATE TABLE signing_keys (kid TEXT PRIMARY KEY, algorithm TEXT NOT NULL, private_pem TEXT NOT NULL,
              created_at_ms INTEGER NOT NULL, retired_at_ms INTEGER, publish_until_ms INTEGER)
            """,
        ]),
        (3, [
            // Refused sign-ins are recorded as one row per address and interval, with their count.
            "ALTER TABLE audit_log ADD COLUMN count INTEGER NOT NULL DEFAULT 1",
        ]),
    ]

    /// The highest schema version applied.
    public func schemaVersion() async throws -> Int {
        let rows = try await readConnection.query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
        return Int(rows.first?.column("v")?.integer ?? 0)
    }

    public func migrate() async throws {
        try await writer.perform { db in
            _ = try await db.query("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at_ms INTEGER NOT NULL)")
        }
        for migration in Self.migrations {
            try await writer.perform { db in
                let applied = try await db.query("SELECT 1 FROM schema_migrations WHERE version = ?", [.integer(migration.version)])
                guard applied.isEmpty else { return }
                for statement in migration.statements { _ = try await db.query(statement) }
                _ = try await db.query("INSERT INTO schema_migrations (version, applied_at_ms) VALUES (?, ?)", [
                    .integer(migration.version), .integer(Int(SystemWallClock().now().millisecondsSinceEpoch)),
                ])
            }
        }
    }

    // MARK: Tenants

    public func createTenant(_ tenant: Tenant, audit: AuditEvent) async throws {
        try await write { db in
            _ = try await db.query("INSERT INTO tenants (id, name, status, created_at_ms) VALUES (?, ?, ?, ?)", [
                .text(tenant.id.rawValue), .text(tenant.name), .text(tenant.status.rawValue), .ms(tenant.createdAt),
            ])
            try await Self.insertAudit(audit, db)
        }
    }

    public func tenant(_ id: TenantID) async throws -> Tenant? {
        try await read("SELECT * FROM tenants WHERE id = ?", [.text(id.rawValue)]).first.map(Self.tenant)
    }

    public func tenants() async throws -> [Tenant] {
        try await read("SELECT * FROM tenants ORDER BY id").map(Self.tenant)
    }

    public func updateTenant(_ tenant: Tenant, audit: AuditEvent) async throws {
        let domains = String(decoding: try JSONEncoder().encode(tenant.emailDomains), as: UTF8.self)
        try await write { db in
            let changed = try await db.query("""
                UPDATE tenants SET name = ?, status = ?, provisioning = ?, email_domains = ?, identity_tenant = ?
                WHERE id = ? RETURNING id
                """, [
                    .text(tenant.name), .text(tenant.status.rawValue), .text(tenant.provisioning.rawValue), .text(domains),
                    tenant.identityTenant.map { .text($0) } ?? .null, .text(tenant.id.rawValue),
                ])
            guard !changed.isEmpty else { throw LicenseError.tenantNotFound(tenant.id) }
            try await Self.insertAudit(audit, db)
        }
    }

    public func tenants(identityTenant: String) async throws -> [Tenant] {
        try await read("SELECT * FROM tenants WHERE identity_tenant = ? ORDER BY id", [.text(identityTenant)]).map(Self.tenant)
    }

    public func tenants(emailDomain: String) async throws -> [Tenant] {
        try await read("""
            SELECT * FROM tenants WHERE EXISTS (SELECT 1 FROM json_each(tenants.email_domains) WHERE value = ?) ORDER BY id
            """, [.text(emailDomain)]).map(Self.tenant)
    }

    // MARK: Licenses

    public func createLicense(_ license: License, audit: AuditEvent) async throws {
        let features = String(decoding: try JSONEncoder().encode(license.features), as: UTF8.self)
        try await write { db in
            guard try await !db.query("SELECT 1 FROM tenants WHERE id = ?", [.text(license.tenantID.rawValue)]).isEmpty else {
                throw LicenseError.tenantNotFound(license.tenantID)
            }
            _ = try await db.query("""
                INSERT INTO licenses (id, tenant_id, name, seats, lease_ttl_ms, heartbeat_interval_ms, offline_grace_ms,
                  valid_from_ms, valid_until_ms, features, status, created_at_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
                """, [
                    .text(license.id.rawValue), .text(license.tenantID.rawValue), .text(license.name), .integer(license.seats),
                    .integer(Int(license.policy.leaseTTL.milliseconds)), .integer(Int(license.policy.heartbeatInterval.milliseconds)),
                    .integer(Int(license.policy.offlineGrace.milliseconds)), .optionalMS(license.validFrom), .optionalMS(license.validUntil),
                    .text(features), .text(license.status.rawValue), .ms(license.createdAt),
                ])
            try await Self.insertAudit(audit, db)
        }
    }

    public func license(_ id: LicenseID) async throws -> License? {
        let (cached, generation) = licenseCache.lookup(id)
        if let cached { return cached }
        let license = try await read("SELECT * FROM licenses WHERE id = ?", [.text(id.rawValue)]).first.map(Self.license)
        if let license { licenseCache.store(license, readAt: generation) }
        return license
    }

    public func licenses(tenant: TenantID?) async throws -> [License] {
        if let tenant {
            return try await read("SELECT * FROM licenses WHERE tenant_id = ? ORDER BY id", [.text(tenant.rawValue)]).map(Self.license)
        }
        return try await read("SELECT * FROM licenses ORDER BY id").map(Self.license)
    }

    public func updateLicense(_ license: License, audit: AuditEvent) async throws {
        let features = String(decoding: try JSONEncoder().encode(license.features), as: UTF8.self)
        defer { licenseCache.invalidate(license.id) }
        try await write { db in
            let changed = try await db.query("""
                UPDATE licenses SET name = ?, seats = ?, lease_ttl_ms = ?, heartbeat_interval_ms = ?, offline_grace_ms = ?,
                  valid_from_ms = ?, valid_until_ms = ?, features = ?, status = ? WHERE id = ? RETURNING id
                """, [
                    .text(license.name), .integer(license.seats), .integer(Int(license.policy.leaseTTL.milliseconds)),
                    .integer(Int(license.policy.heartbeatInterval.milliseconds)), .integer(Int(license.policy.offlineGrace.milliseconds)),
                    .optionalMS(license.validFrom), .optionalMS(license.validUntil), .text(features), .text(license.status.rawValue),
                    .text(license.id.rawValue),
                ])
            guard !changed.isEmpty else { throw LicenseError.licenseNotFound(license.id) }
            try await Self.insertAudit(audit, db)
        }
    }

    // MARK: Users and API keys

    public func createUser(_ user: User, apiKey: APIKeyRecord?, audit: AuditEvent?) async throws {
        try await write { db in
            if let tenant = user.tenantID,
               try await db.query("SELECT 1 FROM tenants WHERE id = ?", [.text(tenant.rawValue)]).isEmpty {
                throw LicenseError.tenantNotFound(tenant)
            }
            _ = try await db.query("""
                INSERT INTO users (id, tenant_id, name, role, disabled, created_at_ms, email, identity_issuer, identity_subject)
                VALUES (?,?,?,?,?,?,?,?,?)
                """, [
                    .text(user.id.rawValue), user.tenantID.map { .text($0.rawValue) } ?? .null, .text(user.name),
                    .text(user.role.rawValue), .integer(user.disabled ? 1 : 0), .ms(user.createdAt),
                    .optionalText(user.email), .optionalText(user.identity?.issuer), .optionalText(user.identity?.subject),
                ])
            if let apiKey { try await Self.insertAPIKey(apiKey, db) }
            if let audit { try await Self.insertAudit(audit, db) }
        }
    }

    public func user(_ id: UserID) async throws -> User? {
        try await read("SELECT * FROM users WHERE id = ?", [.text(id.rawValue)]).first.map(Self.user)
    }

    public func user(apiKeyHash: String) async throws -> User? {
        try await read("""
            SELECT users.* FROM api_keys JOIN users ON users.id = api_keys.user_id
            WHERE api_keys.hash = ? AND api_keys.revoked_at_ms IS NULL
            """, [.text(apiKeyHash)]).first.map(Self.user)
    }

    public func userCount(role: Role) async throws -> Int {
        let rows = try await read("SELECT COUNT(*) AS n FROM users WHERE role = ?", [.text(role.rawValue)])
        return Int(rows.first?.column("n")?.integer ?? 0)
    }

    public func users(tenant: TenantID?) async throws -> [User] {
        if let tenant {
            return try await read("SELECT * FROM users WHERE tenant_id = ? ORDER BY id", [.text(tenant.rawValue)]).map(Self.user)
        }
        return try await read("SELECT * FROM users ORDER BY id").map(Self.user)
    }

    public func updateUser(_ user: User, audit: AuditEvent?) async throws {
        try await write { db in
            let changed = try await db.query("""
                UPDATE users SET name = ?, disabled = ?, email = ?, identity_issuer = ?, identity_subject = ? WHERE id = ? RETURNING id
                """, [
                    .text(user.name), .integer(user.disabled ? 1 : 0), .optionalText(user.email),
                    .optionalText(user.identity?.issuer), .optionalText(user.identity?.subject), .text(user.id.rawValue),
                ])
            guard !changed.isEmpty else { throw LicenseError.userNotFound(user.id) }
            if let audit { try await Self.insertAudit(audit, db) }
        }
    }

    public func user(identity: ExternalIdentity) async throws -> User? {
        try await read("SELECT * FROM users WHERE identity_issuer = ? AND identity_subject = ?", [
            .text(identity.issuer), .text(identity.subject),
        ]).first.map(Self.user)
    }

    public func users(email: String) async throws -> [User] {
        try await read("SELECT * FROM users WHERE email = ? ORDER BY id", [.text(email)]).map(Self.user)
    }

    public func createAPIKey(_ key: APIKeyRecord, audit: AuditEvent) async throws {
        try await write { db in
            guard try await !db.query("SELECT 1 FROM users WHERE id = ?", [.text(key.userID.rawValue)]).isEmpty else {
                throw LicenseError.userNotFound(key.userID)
            }
            try await Self.insertAPIKey(key, db)
            try await Self.insertAudit(audit, db)
        }
    }

    public func apiKey(id: String) async throws -> APIKeyRecord? {
        try await read("SELECT * FROM api_keys WHERE id = ?", [.text(id)]).first.map(Self.apiKey)
    }

    public func apiKeys(user: UserID?, tenant: TenantID?) async throws -> [APIKeyRecord] {
        var conditions: [String] = []
        var binds: [SQLiteData] = []
        if let user { conditions.append("user_id = ?"); binds.append(.text(user.rawValue)) }
        if let tenant { conditions.append("tenant_id = ?"); binds.append(.text(tenant.rawValue)) }
        let filter = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
        return try await read("SELECT * FROM api_keys\(filter) ORDER BY created_at_ms DESC, id DESC", binds).map(Self.apiKey)
    }

    public func revokeAPIKey(id: String, at: Timestamp, replacement: APIKeyRecord?, audit: AuditEvent) async throws -> Bool {
        try await write { db in
            let changed = try await db.query("UPDATE api_keys SET revoked_at_ms = ? WHERE id = ? AND revoked_at_ms IS NULL RETURNING id", [
                .ms(at), .text(id),
            ])
            guard !changed.isEmpty else { return false }
            if let replacement { try await Self.insertAPIKey(replacement, db) }
            try await Self.insertAudit(audit, db)
            return true
        }
    }

    private static func insertAPIKey(_ key: APIKeyRecord, _ db: SQLiteConnection) async throws {
        _ = try await db.query("INSERT INTO api_keys (hash, id, user_id, tenant_id, name, created_at_ms, revoked_at_ms) VALUES (?,?,?,?,?,?,?)", [
            .text(key.hash), .text(key.id), .text(key.userID.rawValue), .optionalText(key.tenantID?.rawValue), .text(key.name),
            .ms(key.createdAt), .optionalMS(key.revokedAt),
        ])
    }

    // MARK: Sessions

    public func insertSession(_ session: LeaseSession, audit: AuditEvent) async throws {
        let info = String(decoding: try JSONEncoder().encode(session.clientInfo), as: UTF8.self)
        try await write { db in
            _ = try await db.query("""
                INSERT INTO sessions (id, tenant_id, license_id, user_id, hardware_id, idempotency_key, client_info,
                  created_at_ms, lease_expires_at_ms, ended_at_ms, end_reason) VALUES (?,?,?,?,?,?,?,?,?,?,?)
                """, [
                    .text(session.id.rawValue), .text(session.tenantID.rawValue), .text(session.licenseID.rawValue),
                    .text(session.userID.rawValue), .text(session.hardwareID), .text(session.idempotencyKey), .text(info),
                    .ms(session.createdAt), .ms(session.leaseExpiresAt), .optionalMS(session.endedAt),
                    session.endReason.map { .text($0.rawValue) } ?? .null,
                ])
            try await Self.insertAudit(audit, db)
        }
    }

    public func updateLeases(_ leases: [SessionID: Timestamp]) async throws {
        guard !leases.isEmpty else { return }
        try await write { db in
            for (session, expiresAt) in leases {
                _ = try await db.query("UPDATE sessions SET lease_expires_at_ms = ? WHERE id = ? AND ended_at_ms IS NULL", [
                    .ms(expiresAt), .text(session.rawValue),
                ])
            }
        }
    }

    public func endSession(_ id: SessionID, at: Timestamp, reason: SessionEndReason, audit: AuditEvent) async throws -> Bool {
        try await write { db in
            let changed = try await db.query(
                "UPDATE sessions SET ended_at_ms = ?, end_reason = ? WHERE id = ? AND ended_at_ms IS NULL RETURNING id",
                [.ms(at), .text(reason.rawValue), .text(id.rawValue)]
            )
            guard !changed.isEmpty else { return false }
            try await Self.insertAudit(audit, db)
            return true
        }
    }

    public func session(_ id: SessionID) async throws -> LeaseSession? {
        try await read("SELECT * FROM sessions WHERE id = ?", [.text(id.rawValue)]).first.map(Self.session)
    }

    public func sessions(license: LicenseID, includeEnded: Bool) async throws -> [LeaseSession] {
        let filter = includeEnded ? "" : " AND ended_at_ms IS NULL"
        return try await read(
            "SELECT * FROM sessions WHERE license_id = ?\(filter) ORDER BY created_at_ms DESC, id DESC",
            [.text(license.rawValue)]
        ).map(Self.session)
    }

    public func sessions(user: UserID, includeEnded: Bool) async throws -> [LeaseSession] {
        let filter = includeEnded ? "" : " AND ended_at_ms IS NULL"
        return try await read(
            "SELECT * FROM sessions WHERE user_id = ?\(filter) ORDER BY created_at_ms DESC, id DESC",
            [.text(user.rawValue)]
        ).map(Self.session)
    }

    public func sessions(_ filter: SessionFilter, after cursor: SessionCursor?, limit: Int) async throws -> [LeaseSession] {
        var conditions: [String] = []
        var binds: [SQLiteData] = []
        if let tenant = filter.tenantID { conditions.append("tenant_id = ?"); binds.append(.text(tenant.rawValue)) }
        if let license = filter.licenseID { conditions.append("license_id = ?"); binds.append(.text(license.rawValue)) }
        if let user = filter.userID { conditions.append("user_id = ?"); binds.append(.text(user.rawValue)) }
        if let now = filter.liveAt { conditions.append("ended_at_ms IS NULL AND lease_expires_at_ms > ?"); binds.append(.ms(now)) }
        if let cursor {
            conditions.append("(created_at_ms < ? OR (created_at_ms = ? AND id < ?))")
            binds += [.ms(cursor.createdAt), .ms(cursor.createdAt), .text(cursor.id.rawValue)]
        }
        let filter = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
        return try await read("SELECT * FROM sessions\(filter) ORDER BY created_at_ms DESC, id DESC LIMIT ?", binds + [.integer(limit)]).map(Self.session)
    }

    public func licensesWithLiveSessions() async throws -> [LicenseID] {
        try await read("SELECT DISTINCT license_id FROM sessions WHERE ended_at_ms IS NULL ORDER BY license_id", []).map { row in
            LicenseID(row.string("license_id"))
        }
    }

    // MARK: Audit

    public func ping() async throws {
        _ = try await read("SELECT 1")
    }

    public func appendAudit(_ event: AuditEvent) async throws {
        try await write { db in try await Self.insertAudit(event, db) }
    }

    public func auditEvents(_ query: AuditQuery) async throws -> [AuditEvent] {
        var conditions: [String] = []
        var binds: [SQLiteData] = []
        if let tenant = query.tenantID { conditions.append("tenant_id = ?"); binds.append(.text(tenant.rawValue)) }
        if let actor = query.actor { conditions.append("actor = ?"); binds.append(.text(actor.rawValue)) }
        if let action = query.action {
            if action.hasSuffix(".") {
                conditions.append("substr(action, 1, ?) = ?")
                binds += [.integer(action.utf8.count), .text(action)]
            } else {
                conditions.append("action = ?")
                binds.append(.text(action))
            }
        }
        if let since = query.since { conditions.append("at_ms >= ?"); binds.append(.ms(since)) }
        if let until = query.until { conditions.append("at_ms < ?"); binds.append(.ms(until)) }
        if let before = query.before { conditions.append("seq < ?"); binds.append(.integer(Int(before))) }
        let filter = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
        return try await read("SELECT * FROM audit_log\(filter) ORDER BY seq DESC LIMIT ?", binds + [.integer(query.limit)]).map(Self.audit)
    }

    // MARK: Signing keys

    public func signingKeys() async throws -> [StoredSigningKey] {
        try await read("SELECT * FROM signing_keys ORDER BY created_at_ms DESC, kid").map { row in
            StoredSigningKey(
                keyID: row.string("kid"), algorithm: row.string("algorithm"), privateKeyPEM: row.string("private_pem"),
                createdAt: row.ms("created_at_ms"), retiredAt: row.optionalMS("retired_at_ms"), publishUntil: row.optionalMS("publish_until_ms")
            )
        }
    }

    public func resealSigningKeys(_ keys: [StoredSigningKey], audit: AuditEvent) async throws {
        try await write { db in
            for key in keys {
                let updated = try await db.query("UPDATE signing_keys SET private_pem = ? WHERE kid = ? RETURNING kid", [.text(key.privateKeyPEM), .text(key.keyID)])
                guard !updated.isEmpty else { throw LicenseError.signingKeyNotFound(key.keyID) }
            }
            try await Self.insertAudit(audit, db)
        }
        // The replaced keys' bytes: secure_delete (on for the writer) zeroed them in the database's
        // pages; the write-ahead log may still hold the pages as they were until a checkpoint
        // copies the new ones back and empties it.
        let connection = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
        do {
            _ = try await connection.query("PRAGMA busy_timeout=5000")
            _ = try await connection.query("PRAGMA wal_checkpoint(TRUNCATE)")
            try await connection.close()
        } catch {
            try? await connection.close()
            throw error
        }
    }

    public func rotateSigningKey(to key: StoredSigningKey, ifCurrent current: String?, publishRetiredUntil: Timestamp, audit: AuditEvent) async throws -> Bool {
        try await write { db in
            if let current {
                // One writer at a time: what this reads is what the update below changes.
                let signing = try await db.query("SELECT 1 FROM signing_keys WHERE kid = ? AND retired_at_ms IS NULL", [.text(current)])
                guard !signing.isEmpty else { return false }
            }
            _ = try await db.query("UPDATE signing_keys SET retired_at_ms = ?, publish_until_ms = ? WHERE retired_at_ms IS NULL", [
                .ms(key.createdAt), .ms(publishRetiredUntil),
            ])
            _ = try await db.query("INSERT INTO signing_keys (kid, algorithm, private_pem, created_at_ms) VALUES (?,?,?,?)", [
                .text(key.keyID), .text(key.algorithm), .text(key.privateKeyPEM), .ms(key.createdAt),
            ])
            try await Self.insertAudit(audit, db)
            return true
        }
    }

    private static func insertAudit(_ event: AuditEvent, _ db: SQLiteConnection) async throws {
        _ = try await db.query("INSERT INTO audit_log (id, at_ms, tenant_id, actor, action, target, outcome, count) VALUES (?,?,?,?,?,?,?,?)", [
            .text(event.id), .ms(event.at), event.tenantID.map { .text($0.rawValue) } ?? .null,
            event.actor.map { .text($0.rawValue) } ?? .null, .text(event.action), .text(event.target), .text(event.outcome),
            .integer(event.count),
        ])
    }

    // MARK: Plumbing

    private func write<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) async throws -> T) async throws -> T {
        do {
            return try await writer.perform(body)
        } catch let error as SQLiteError where error.reason == .constraintPrimaryKeyFailed || error.reason == .constraintUniqueFailed {
            throw LicenseError(.alreadyExists, .alreadyExists, "an entity with that id already exists")
        }
    }

    private func read(_ sql: String, _ binds: [SQLiteData] = []) async throws -> [SQLiteRow] {
        try await readConnection.query(sql, binds)
    }

    private static func tenant(_ row: SQLiteRow) -> Tenant {
        let domains = (try? JSONDecoder().decode([String].self, from: Data(row.string("email_domains").utf8))) ?? []
        return Tenant(
            id: TenantID(row.string("id")), name: row.string("name"), status: EntityStatus(rawValue: row.string("status")),
            createdAt: row.ms("created_at_ms"), provisioning: UserProvisioning(rawValue: row.string("provisioning")) ?? .admin,
            emailDomains: domains, identityTenant: row.column("identity_tenant")?.string
        )
    }

    private static func apiKey(_ row: SQLiteRow) -> APIKeyRecord {
        var key = APIKeyRecord(
            hash: row.string("hash"), userID: UserID(row.string("user_id")), tenantID: row.column("tenant_id")?.string.map(TenantID.init),
            name: row.string("name"), createdAt: row.ms("created_at_ms"), revokedAt: row.optionalMS("revoked_at_ms")
        )
        key.id = row.string("id")
        return key
    }

    private static func license(_ row: SQLiteRow) -> License {
        let features = (try? JSONDecoder().decode([String].self, from: Data(row.string("features").utf8))) ?? []
        return License(
            id: LicenseID(row.string("id")), tenantID: TenantID(row.string("tenant_id")), name: row.string("name"),
            seats: Int(row.column("seats")?.integer ?? 0),
            policy: LeasePolicy(
                leaseTTL: .milliseconds(row.ms("lease_ttl_ms").millisecondsSinceEpoch),
                heartbeatInterval: .milliseconds(row.ms("heartbeat_interval_ms").millisecondsSinceEpoch),
                offlineGrace: .milliseconds(row.ms("offline_grace_ms").millisecondsSinceEpoch)
            ),
            validFrom: row.optionalMS("valid_from_ms"), validUntil: row.optionalMS("valid_until_ms"), features: features,
            status: EntityStatus(rawValue: row.string("status")), createdAt: row.ms("created_at_ms")
        )
    }

    private static func user(_ row: SQLiteRow) -> User {
        User(
            id: UserID(row.string("id")), tenantID: row.column("tenant_id")?.string.map(TenantID.init), name: row.string("name"),
            role: Role(rawValue: row.string("role")) ?? .tenantUser, disabled: row.column("disabled")?.integer == 1,
            createdAt: row.ms("created_at_ms"), email: row.column("email")?.string,
            identity: row.column("identity_subject")?.string.map { ExternalIdentity(issuer: row.string("identity_issuer"), subject: $0) }
        )
    }

    private static func session(_ row: SQLiteRow) -> LeaseSession {
        let info = (try? JSONDecoder().decode([String: String].self, from: Data(row.string("client_info").utf8))) ?? [:]
        return LeaseSession(
            id: SessionID(row.string("id")), tenantID: TenantID(row.string("tenant_id")), licenseID: LicenseID(row.string("license_id")),
            userID: UserID(row.string("user_id")), hardwareID: row.string("hardware_id"), idempotencyKey: row.string("idempotency_key"),
            clientInfo: info, createdAt: row.ms("created_at_ms"), leaseExpiresAt: row.ms("lease_expires_at_ms"),
            endedAt: row.optionalMS("ended_at_ms"), endReason: row.column("end_reason")?.string.map(SessionEndReason.init(rawValue:))
        )
    }

    private static func audit(_ row: SQLiteRow) -> AuditEvent {
        AuditEvent(
            id: row.string("id"), at: row.ms("at_ms"), tenantID: row.column("tenant_id")?.string.map(TenantID.init),
            actor: row.column("actor")?.string.map(UserID.init), action: row.string("action"), target: row.string("target"),
            outcome: row.string("outcome"), count: row.column("count")?.integer ?? 1, sequence: row.column("seq")?.integer.map(Int64.init)
        )
    }
}

extension SQLiteData {
    fileprivate static func ms(_ timestamp: Timestamp) -> SQLiteData { .integer(Int(timestamp.millisecondsSinceEpoch)) }
    fileprivate static func optionalMS(_ timestamp: Timestamp?) -> SQLiteData { timestamp.map(ms) ?? .null }
    fileprivate static func optionalText(_ text: String?) -> SQLiteData { text.map { .text($0) } ?? .null }
}

extension SQLiteRow {
    fileprivate func string(_ name: String) -> String { column(name)?.string ?? "" }
    fileprivate func ms(_ name: String) -> Timestamp { Timestamp(millisecondsSinceEpoch: Int64(column(name)?.integer ?? 0)) }
    fileprivate func optionalMS(_ name: String) -> Timestamp? {
        guard let value = column(name), !value.isNull, let integer = value.integer else { return nil }
        return Timestamp(millisecondsSinceEpoch: Int64(integer))
    }
}
