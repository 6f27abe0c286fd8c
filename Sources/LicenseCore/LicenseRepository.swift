/// Everything durable: tenants, users, licenses, API keys, session history and the audit log.
///
/// Writes that come with an audit event commit both together or neither. Implementations: the
/// in-memory repository (tests), SQLite (embedded default) and Postgres (production). A
/// conformance suite runs against each. Creating an entity whose id exists throws
/// `LicenseError` with code `alreadyExists`.
public protocol LicenseRepository: Sendable {
    /// Brings the schema up to date. Safe to call on every start.
    func migrate() async throws

    func createTenant(_ tenant: Tenant, audit: AuditEvent) async throws
    func tenant(_ id: TenantID) async throws -> Tenant?
    func tenants() async throws -> [Tenant]

    func createLicense(_ license: License, audit: AuditEvent) async throws
    func license(_ id: LicenseID) async throws -> License?
    /// The licenses of one tenant, or of every tenant when `tenant` is `nil`, ordered by id.
    func licenses(tenant: TenantID?) async throws -> [License]

    /// Creates a user and, when given, its first API key, in one commit.
    func createUser(_ user: User, apiKey: APIKeyRecord?, audit: AuditEvent?) async throws
    func user(_ id: UserID) async throws -> User?
    /// The user owning the API key with this hash.
    func user(apiKeyHash: String) async throws -> User?
    /// How many users have `role`.
    func userCount(role: Role) async throws -> Int

    /// Records a new session and its audit event in one commit.
    func insertSession(_ session: LeaseSession, audit: AuditEvent) async throws
    /// Moves a live session's lease expiry (heartbeat). No effect on an ended session.
    func updateLease(session: SessionID, expiresAt: Timestamp) async throws
    /// Ends a session. Returns `false` (and writes nothing) when it had already ended or does not exist.
    func endSession(_ id: SessionID, at: Timestamp, reason: SessionEndReason, audit: AuditEvent) async throws -> Bool
    func session(_ id: SessionID) async throws -> LeaseSession?
    /// The sessions of a license, newest first; only those not ended unless `includeEnded`.
    func sessions(license: LicenseID, includeEnded: Bool) async throws -> [LeaseSession]

    func appendAudit(_ event: AuditEvent) async throws
    /// The newest audit events first, of one tenant or all.
    func auditEvents(tenant: TenantID?, limit: Int) async throws -> [AuditEvent]

    /// A view of the repository that can see and change only `tenant`'s rows. Backends that can
    /// enforce this in the database (Postgres, with row-level security) return such a view; the
    /// default returns the repository itself and leaves isolation to the service.
    func scoped(to tenant: TenantID) -> any LicenseRepository
}

extension LicenseRepository {
    public func scoped(to tenant: TenantID) -> any LicenseRepository { self }
}
