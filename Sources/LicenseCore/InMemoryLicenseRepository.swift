import Synchronization

/// A repository held in memory: for tests of the domain with no database, and for tools.
/// Nothing survives the process.
public final class InMemoryLicenseRepository: LicenseRepository {
    private struct State {
        var tenants: [TenantID: Tenant] = [:]
        var licenses: [LicenseID: License] = [:]
        var users: [UserID: User] = [:]
        var apiKeys: [String: APIKeyRecord] = [:]
        var sessions: [SessionID: LeaseSession] = [:]
        var audit: [AuditEvent] = []
        var signingKeys: [StoredSigningKey] = []
    }

    private let state = Mutex(State())

    /// Creates an empty repository.
    public init() {}

    public func migrate() async throws {}

    public func createTenant(_ tenant: Tenant, audit: AuditEvent) async throws {
        try state.withLock { state in
            guard state.tenants[tenant.id] == nil else { throw Self.exists("tenant") }
            state.tenants[tenant.id] = tenant
            state.audit.append(audit)
        }
    }

    public func tenant(_ id: TenantID) async throws -> Tenant? { state.withLock { $0.tenants[id] } }

    public func tenants() async throws -> [Tenant] {
        state.withLock { $0.tenants.values.sorted { $0.id < $1.id } }
    }

    public func updateTenant(_ tenant: Tenant, audit: AuditEvent) async throws {
        try state.withLock { state in
            guard state.tenants[tenant.id] != nil else { throw LicenseError.tenantNotFound(tenant.id) }
            state.tenants[tenant.id] = tenant
            state.audit.append(audit)
        }
    }

    public func tenants(identityTenant: String) async throws -> [Tenant] {
        state.withLock { $0.tenants.values.filter { $0.identityTenant == identityTenant }.sorted { $0.id < $1.id } }
    }

    public func tenants(emailDomain: String) async throws -> [Tenant] {
        state.withLock { $0.tenants.values.filter { $0.emailDomains.contains(emailDomain) }.sorted { $0.id < $1.id } }
    }

    public func createLicense(_ license: License, audit: AuditEvent) async throws {
        try state.withLock { state in
            guard state.tenants[license.tenantID] != nil else { throw LicenseError.tenantNotFound(license.tenantID) }
            guard state.licenses[license.id] == nil else { throw Self.exists("license") }
            state.licenses[license.id] = license
            state.audit.append(audit)
        }
    }

    public func license(_ id: LicenseID) async throws -> License? { state.withLock { $0.licenses[id] } }

    public func licenses(tenant: TenantID?) async throws -> [License] {
        state.withLock { state in
            state.licenses.values.filter { tenant == nil || $0.tenantID == tenant }.sorted { $0.id < $1.id }
        }
    }

    public func updateLicense(_ license: License, audit: AuditEvent) async throws {
        try state.withLock { state in
            guard state.licenses[license.id] != nil else { throw LicenseError.licenseNotFound(license.id) }
            state.licenses[license.id] = license
            state.audit.append(audit)
        }
    }

    public func createUser(_ user: User, apiKey: APIKeyRecord?, audit: AuditEvent?) async throws {
        try state.withLock { state in
            if let tenant = user.tenantID, state.tenants[tenant] == nil { throw LicenseError.tenantNotFound(tenant) }
            guard state.users[user.id] == nil else { throw Self.exists("user") }
            if let apiKey, state.apiKeys[apiKey.hash] != nil { throw Self.exists("api key") }
            if let identity = user.identity, state.users.values.contains(where: { $0.identity == identity }) { throw Self.exists("identity") }
            state.users[user.id] = user
            if let apiKey { state.apiKeys[apiKey.hash] = apiKey }
            if let audit { state.audit.append(audit) }
        }
    }

    public func user(_ id: UserID) async throws -> User? { state.withLock { $0.users[id] } }

    public func user(apiKeyHash: String) async throws -> User? {
        state.withLock { state in
            state.apiKeys[apiKeyHash].flatMap { $0.revokedAt == nil ? state.users[$0.userID] : nil }
        }
    }

    public func userCount(role: Role) async throws -> Int {
        state.withLock { $0.users.values.count { $0.role == role } }
    }

    public func users(tenant: TenantID?) async throws -> [User] {
        state.withLock { $0.users.values.filter { tenant == nil || $0.tenantID == tenant }.sorted { $0.id < $1.id } }
    }

    public func updateUser(_ user: User, audit: AuditEvent?) async throws {
        try state.withLock { state in
            guard state.users[user.id] != nil else { throw LicenseError.userNotFound(user.id) }
            if let identity = user.identity, state.users.values.contains(where: { $0.identity == identity && $0.id != user.id }) {
                throw Self.exists("identity")
            }
            state.users[user.id] = user
            if let audit { state.audit.append(audit) }
        }
    }

    public func user(identity: ExternalIdentity) async throws -> User? {
        state.withLock { $0.users.values.first { $0.identity == identity } }
    }

    public func users(email: String) async throws -> [User] {
        state.withLock { $0.users.values.filter { $0.email == email }.sorted { $0.id < $1.id } }
    }

    public func createAPIKey(_ key: APIKeyRecord, audit: AuditEvent) async throws {
        try state.withLock { state in
            guard state.users[key.userID] != nil else { throw LicenseError.userNotFound(key.userID) }
            guard state.apiKeys[key.hash] == nil else { throw Self.exists("api key") }
            state.apiKeys[key.hash] = key
            state.audit.append(audit)
        }
    }

    public func apiKey(id: String) async throws -> APIKeyRecord? {
        state.withLock { $0.apiKeys.values.first { $0.id == id } }
    }

    public func apiKeys(user: UserID?, tenant: TenantID?) async throws -> [APIKeyRecord] {
        state.withLock { state in
            state.apiKeys.values
                .filter { (user == nil || $0.userID == user) && (tenant == nil || $0.tenantID == tenant) }
                .sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }
        }
    }

    public func revokeAPIKey(id: String, at: Timestamp, replacement: APIKeyRecord?, audit: AuditEvent) async throws -> Bool {
        try state.withLock { state in
            guard let key = state.apiKeys.values.first(where: { $0.id == id }), key.revokedAt == nil else { return false }
            if let replacement, state.apiKeys[replacement.hash] != nil { throw Self.exists("api key") }
            state.apiKeys[key.hash]?.revokedAt = at
            if let replacement { state.apiKeys[replacement.hash] = replacement }
            state.audit.append(audit)
            return true
        }
    }

    public func insertSession(_ session: LeaseSession, audit: AuditEvent) async throws {
        try state.withLock { state in
            guard state.sessions[session.id] == nil else { throw Self.exists("session") }
            state.sessions[session.id] = session
            state.audit.append(audit)
        }
    }

    public func updateLeases(_ leases: [SessionID: Timestamp]) async throws {
        state.withLock { state in
            for (session, expiresAt) in leases where state.sessions[session]?.endedAt == nil {
                state.sessions[session]?.leaseExpiresAt = expiresAt
            }
        }
    }

    public func endSession(_ id: SessionID, at: Timestamp, reason: SessionEndReason, audit: AuditEvent) async throws -> Bool {
        state.withLock { state in
            guard let session = state.sessions[id], session.endedAt == nil else { return false }
            state.sessions[id]?.endedAt = at
            state.sessions[id]?.endReason = reason
            state.audit.append(audit)
            return true
        }
    }

    public func session(_ id: SessionID) async throws -> LeaseSession? { state.withLock { $0.sessions[id] } }

    public func sessions(license: LicenseID, includeEnded: Bool) async throws -> [LeaseSession] {
        state.withLock { state in
            state.sessions.values
                .filter { $0.licenseID == license && (includeEnded || $0.endedAt == nil) }
                .sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }
        }
    }

    public func sessions(user: UserID, includeEnded: Bool) async throws -> [LeaseSession] {
        state.withLock { state in
            state.sessions.values
                .filter { $0.userID == user && (includeEnded || $0.endedAt == nil) }
                .sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }
        }
    }

    public func sessions(_ filter: SessionFilter, after cursor: SessionCursor?, limit: Int) async throws -> [LeaseSession] {
        state.withLock { state in
            Array(state.sessions.values
                .filter { filter.matches($0) && cursor?.precedes($0) != false }
                .sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }
                .prefix(limit))
        }
    }

    public func licensesWithLiveSessions() async throws -> [LicenseID] {
        state.withLock { state in Set(state.sessions.values.filter { $0.endedAt == nil }.map(\.licenseID)).sorted() }
    }

    public func ping() async throws {}

    public func appendAudit(_ event: AuditEvent) async throws { state.withLock { $0.audit.append(event) } }

    public func auditEvents(_ query: AuditQuery) async throws -> [AuditEvent] {
        state.withLock { state in
            let numbered = state.audit.enumerated().map { index, event in
                var event = event
                event.sequence = Int64(index + 1)
                return event
            }
            return Array(numbered.reversed().filter(query.matches).prefix(query.limit))
        }
    }

    public func signingKeys() async throws -> [StoredSigningKey] {
        state.withLock { $0.signingKeys.reversed() }
    }

    public func resealSigningKeys(_ keys: [StoredSigningKey], audit: AuditEvent) async throws {
        try state.withLock { state in
            var updated = state.signingKeys
            for key in keys {
                guard let index = updated.firstIndex(where: { $0.keyID == key.keyID }) else { throw LicenseError.signingKeyNotFound(key.keyID) }
                updated[index].privateKeyPEM = key.privateKeyPEM
            }
            state.signingKeys = updated
            state.audit.append(audit)
        }
    }

    public func rotateSigningKey(to key: StoredSigningKey, ifCurrent current: String?, publishRetiredUntil: Timestamp, audit: AuditEvent) async throws -> Bool {
        try state.withLock { state in
            guard !state.signingKeys.contains(where: { $0.keyID == key.keyID }) else { throw Self.exists("signing key") }
            if let current, !state.signingKeys.contains(where: { $0.keyID == current && $0.retiredAt == nil }) { return false }
            for index in state.signingKeys.indices where state.signingKeys[index].retiredAt == nil {
                state.signingKeys[index].retiredAt = key.createdAt
                state.signingKeys[index].publishUntil = publishRetiredUntil
            }
            state.signingKeys.append(key)
            state.audit.append(audit)
            return true
        }
    }

    private static func exists(_ what: String) -> LicenseError {
        LicenseError(.alreadyExists, .alreadyExists, "\(what) already exists")
    }
}
