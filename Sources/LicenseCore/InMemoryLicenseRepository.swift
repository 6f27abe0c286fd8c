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

    public func createLicense(_ license: License, audit: AuditEvent) async throws {
        try state.withLock { state in
            guard state.tenants[license.tenantID] != nil else { throw LicenseError.tenantNotFound() }
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

    public func createUser(_ user: User, apiKey: APIKeyRecord?, audit: AuditEvent?) async throws {
        try state.withLock { state in
            if let tenant = user.tenantID, state.tenants[tenant] == nil { throw LicenseError.tenantNotFound() }
            guard state.users[user.id] == nil else { throw Self.exists("user") }
            if let apiKey, state.apiKeys[apiKey.hash] != nil { throw Self.exists("api key") }
            state.users[user.id] = user
            if let apiKey { state.apiKeys[apiKey.hash] = apiKey }
            if let audit { state.audit.append(audit) }
        }
    }

    public func user(_ id: UserID) async throws -> User? { state.withLock { $0.users[id] } }

    public func user(apiKeyHash: String) async throws -> User? {
        state.withLock { state in state.apiKeys[apiKeyHash].flatMap { state.users[$0.userID] } }
    }

    public func userCount(role: Role) async throws -> Int {
        state.withLock { $0.users.values.count { $0.role == role } }
    }

    public func insertSession(_ session: LeaseSession, audit: AuditEvent) async throws {
        try state.withLock { state in
            guard state.sessions[session.id] == nil else { throw Self.exists("session") }
            state.sessions[session.id] = session
            state.audit.append(audit)
        }
    }

    public func updateLease(session: SessionID, expiresAt: Timestamp) async throws {
        state.withLock { state in
            guard state.sessions[session]?.endedAt == nil else { return }
            state.sessions[session]?.leaseExpiresAt = expiresAt
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

    public func appendAudit(_ event: AuditEvent) async throws { state.withLock { $0.audit.append(event) } }

    public func auditEvents(tenant: TenantID?, limit: Int) async throws -> [AuditEvent] {
        state.withLock { state in
            Array(state.audit.reversed().filter { tenant == nil || $0.tenantID == tenant }.prefix(limit))
        }
    }

    private static func exists(_ what: String) -> LicenseError {
        LicenseError(.alreadyExists, .alreadyExists, "\(what) already exists")
    }
}
