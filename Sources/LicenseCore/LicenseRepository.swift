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
    /// Replaces a tenant's name, status and sign-in settings. Throws `notFound` when it does not exist.
    func updateTenant(_ tenant: Tenant, audit: AuditEvent) async throws
    /// The tenants whose `identityTenant` is `identityTenant`.
    func tenants(identityTenant: String) async throws -> [Tenant]
    /// The tenants owning the e-mail domain (lowercase).
    func tenants(emailDomain: String) async throws -> [Tenant]

    func createLicense(_ license: License, audit: AuditEvent) async throws
    func license(_ id: LicenseID) async throws -> License?
    /// The licenses of one tenant, or of every tenant when `tenant` is `nil`, ordered by id.
    func licenses(tenant: TenantID?) async throws -> [License]
    /// Replaces a license's terms and status. Throws `notFound` when it does not exist.
    func updateLicense(_ license: License, audit: AuditEvent) async throws

    /// Creates a user and, when given, its first API key, in one commit.
    func createUser(_ user: User, apiKey: APIKeyRecord?, audit: AuditEvent?) async throws
    func user(_ id: UserID) async throws -> User?
    /// The user owning the API key with this hash.
    func user(apiKeyHash: String) async throws -> User?
    /// How many users have `role`.
    func userCount(role: Role) async throws -> Int
    /// The users of one tenant, or every user when `tenant` is `nil`, ordered by id.
    func users(tenant: TenantID?) async throws -> [User]
    /// Replaces a user's name, e-mail, identity and disabled flag. Throws `notFound` when it does
    /// not exist, `alreadyExists` when the identity is bound to another user.
    func updateUser(_ user: User, audit: AuditEvent?) async throws
    /// The user bound to an identity-provider account.
    func user(identity: ExternalIdentity) async throws -> User?
    /// The users with this e-mail address (lowercase), in every tenant.
    func users(email: String) async throws -> [User]

    /// Stores a new API key for an existing user.
    func createAPIKey(_ key: APIKeyRecord, audit: AuditEvent) async throws
    func apiKey(id: String) async throws -> APIKeyRecord?
    /// The keys of one user, or of every user of a tenant, or every key (both `nil`), newest first.
    func apiKeys(user: UserID?, tenant: TenantID?) async throws -> [APIKeyRecord]
    /// Revokes a key and, when given, stores its replacement, in one commit. Returns `false`
    /// (writing nothing) when the key does not exist or was already revoked.
    func revokeAPIKey(id: String, at: Timestamp, replacement: APIKeyRecord?, audit: AuditEvent) async throws -> Bool

    /// Records a new session and its audit event in one commit.
    func insertSession(_ session: LeaseSession, audit: AuditEvent) async throws
    /// Moves live sessions' lease expiries (heartbeats, written in batches), in one commit.
    /// Ended and unknown sessions are left as they are.
    func updateLeases(_ leases: [SessionID: Timestamp]) async throws
    /// Ends a session. Returns `false` (and writes nothing) when it had already ended or does not exist.
    func endSession(_ id: SessionID, at: Timestamp, reason: SessionEndReason, audit: AuditEvent) async throws -> Bool
    func session(_ id: SessionID) async throws -> LeaseSession?
    /// The sessions of a license, newest first; only those not ended unless `includeEnded`.
    func sessions(license: LicenseID, includeEnded: Bool) async throws -> [LeaseSession]
    /// The sessions of a user, newest first; only those not ended unless `includeEnded`.
    func sessions(user: UserID, includeEnded: Bool) async throws -> [LeaseSession]
    /// A page of the sessions matching `filter`, newest first (creation time, then id, both
    /// descending), strictly after `cursor`; at most `limit` of them.
    func sessions(_ filter: SessionFilter, after cursor: SessionCursor?, limit: Int) async throws -> [LeaseSession]
    /// The licenses that have at least one session not ended, ordered by id (what the session
    /// sweeper walks).
    func licensesWithLiveSessions() async throws -> [LicenseID]

    /// Succeeds when the repository answers a trivial read (readiness checks).
    func ping() async throws

    func appendAudit(_ event: AuditEvent) async throws
    /// The audit events matching the query, newest first (descending `sequence`, which the
    /// events read carry).
    func auditEvents(_ query: AuditQuery) async throws -> [AuditEvent]

    /// Every stored lease-signing key, newest first.
    func signingKeys() async throws -> [StoredSigningKey]
    /// Makes `key` the signing key: every key still signing is retired at `key.createdAt` and
    /// published until `publishRetiredUntil`; `key` is stored; one commit. With `current`, only
    /// if the key with that id is still signing (a compare-and-set: of replicas that decide
    /// together to rotate the same key, one does); returns whether it rotated.
    @discardableResult
    func rotateSigningKey(to key: StoredSigningKey, ifCurrent current: String?, publishRetiredUntil: Timestamp, audit: AuditEvent) async throws -> Bool
    /// Replaces the stored private keys of `keys` (found by id; their other fields are not
    /// changed) with theirs, in one commit with `audit`: sealing keys with a key-encryption key,
    /// or moving them to another. A key id the repository lacks is `NOT_FOUND`, and nothing changes.
    /// Backends that keep old row versions on disk overwrite them where they can (SQLite).
    func resealSigningKeys(_ keys: [StoredSigningKey], audit: AuditEvent) async throws

    /// A view of the repository that can see and change only `tenant`'s rows. Backends that can
    /// enforce this in the database (Postgres, with row-level security) return such a view; the
    /// default returns the repository itself and leaves isolation to the service.
    func scoped(to tenant: TenantID) -> any LicenseRepository
}

extension LicenseRepository {
    public func scoped(to tenant: TenantID) -> any LicenseRepository { self }

    /// Makes `key` the signing key whatever key signs now.
    public func rotateSigningKey(to key: StoredSigningKey, publishRetiredUntil: Timestamp, audit: AuditEvent) async throws {
        try await rotateSigningKey(to: key, ifCurrent: nil, publishRetiredUntil: publishRetiredUntil, audit: audit)
    }

    /// Moves one live session's lease expiry. No effect on an ended session.
    public func updateLease(session: SessionID, expiresAt: Timestamp) async throws {
        try await updateLeases([session: expiresAt])
    }
}
