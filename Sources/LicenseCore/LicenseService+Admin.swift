/// A new license as an administrator asks for it; `nil` times take the server's defaults.
public struct CreateLicenseCommand: Hashable, Sendable {
    public var id: String
    public var tenantID: String
    public var name: String
    public var seats: Int
    public var leaseTTL: Duration?
    public var heartbeatInterval: Duration?
    public var offlineGrace: Duration?
    public var validFrom: Timestamp?
    public var validUntil: Timestamp?
    public var features: [String]

    public init(id: String = "", tenantID: String, name: String, seats: Int, leaseTTL: Duration? = nil, heartbeatInterval: Duration? = nil, offlineGrace: Duration? = nil, validFrom: Timestamp? = nil, validUntil: Timestamp? = nil, features: [String] = []) {
        self.id = id
        self.tenantID = tenantID
        self.name = name
        self.seats = seats
        self.leaseTTL = leaseTTL
        self.heartbeatInterval = heartbeatInterval
        self.offlineGrace = offlineGrace
        self.validFrom = validFrom
        self.validUntil = validUntil
        self.features = features
    }
}

/// A license with its live seat count.
public struct LicenseUsage: Hashable, Sendable {
    public var license: License
    public var seatsUsed: Int
}

/// A created user with the API key that is shown only now.
public struct CreatedUser: Hashable, Sendable {
    public var user: User
    public var apiKey: String
}

extension LicenseService {
    /// Creates a tenant (platform operators only).
    public func createTenant(id: String, name: String, by principal: Principal) async throws -> Tenant {
        try requireOperator(principal)
        try Validation.text(name, field: "name", max: Validation.maxNameLength)
        let tenantID = id.isEmpty ? IdentifierGenerator.make(prefix: "tnt", byteCount: 8) : id
        try Validation.id(tenantID, field: "id")
        let tenant = Tenant(id: TenantID(tenantID), name: name, createdAt: clock.now())
        let audit = AuditEvent(at: tenant.createdAt, tenantID: tenant.id, actor: principal.userID, action: "tenant.create", target: tenantID)
        try await backend("the repository") { try await repository.createTenant(tenant, audit: audit) }
        return tenant
    }

    /// Every tenant for operators; the caller's own for tenant administrators.
    public func listTenants(by principal: Principal) async throws -> [Tenant] {
        let repository = repository(for: principal)
        try requireAdministrator(principal)
        if principal.role == .platformOperator {
            return try await backend("the repository") { try await repository.tenants() }
        }
        guard let own = principal.tenantID,
              let tenant = try await backend("the repository", { try await repository.tenant(own) })
        else { return [] }
        return [tenant]
    }

    /// Creates a license for a tenant (platform operators only).
    public func createLicense(_ command: CreateLicenseCommand, by principal: Principal) async throws -> License {
        let repository = repository(for: principal)
        try requireOperator(principal)
        try Validation.id(command.tenantID, field: "tenant_id")
        try Validation.text(command.name, field: "name", max: Validation.maxNameLength)
        guard (1...Validation.maxSeats).contains(command.seats) else {
            throw LicenseError.invalid("seats must be between 1 and \(Validation.maxSeats)")
        }
        var policy = configuration.defaultPolicy
        if let ttl = command.leaseTTL { policy.leaseTTL = ttl }
        if let interval = command.heartbeatInterval { policy.heartbeatInterval = interval }
        if let grace = command.offlineGrace { policy.offlineGrace = grace }
        guard policy.heartbeatInterval >= .seconds(1), policy.heartbeatInterval < policy.leaseTTL else {
            throw LicenseError.invalid("heartbeat_interval_s must be at least 1 and shorter than lease_ttl_s")
        }
        guard policy.leaseTTL <= .seconds(86_400) else { throw LicenseError.invalid("lease_ttl_s may be at most 86400") }
        guard policy.offlineGrace >= policy.leaseTTL, policy.offlineGrace <= .seconds(30 * 86_400) else {
            throw LicenseError.invalid("offline_grace_s must be between lease_ttl_s and 30 days")
        }
        if let from = command.validFrom, let until = command.validUntil, until <= from {
            throw LicenseError.invalid("valid_until must be later than valid_from")
        }
        guard command.features.count <= Validation.maxFeatures else {
            throw LicenseError.invalid("at most \(Validation.maxFeatures) features")
        }
        for feature in command.features { try Validation.id(feature, field: "feature") }
        let licenseID = command.id.isEmpty ? IdentifierGenerator.make(prefix: "lic", byteCount: 8) : command.id
        try Validation.id(licenseID, field: "id")
        guard try await backend("the repository", { try await repository.tenant(TenantID(command.tenantID)) }) != nil else {
            throw LicenseError.tenantNotFound()
        }
        let license = License(
            id: LicenseID(licenseID), tenantID: TenantID(command.tenantID), name: command.name, seats: command.seats,
            policy: policy, validFrom: command.validFrom, validUntil: command.validUntil, features: command.features,
            createdAt: clock.now()
        )
        let audit = AuditEvent(at: license.createdAt, tenantID: license.tenantID, actor: principal.userID, action: "license.create", target: licenseID)
        try await backend("the repository") { try await repository.createLicense(license, audit: audit) }
        return license
    }

    /// The licenses of a tenant the principal belongs to; operators may ask for every tenant (`nil`).
    public func listLicenses(tenant: String?, by principal: Principal) async throws -> [License] {
        let repository = repository(for: principal)
        let scope = try visibleTenant(tenant, to: principal)
        return try await backend("the repository") { try await repository.licenses(tenant: scope) }
    }

    /// Seats used and total per license.
    public func licenseStatus(tenant: String?, license: String?, by principal: Principal) async throws -> [LicenseUsage] {
        let licenses: [License]
        if let license, !license.isEmpty {
            try Validation.id(license, field: "license_id")
            licenses = [try await visibleLicense(LicenseID(license), to: principal)]
        } else {
            licenses = try await listLicenses(tenant: tenant, by: principal)
        }
        var usage: [LicenseUsage] = []
        usage.reserveCapacity(licenses.count)
        for license in licenses {
            let used = try await backend("the seat store") { try await seats.leases(licenseID: license.id).count }
            usage.append(LicenseUsage(license: license, seatsUsed: used))
        }
        return usage
    }

    /// Creates a user with a first API key. Operators create users in any tenant (or operators,
    /// with no tenant); tenant administrators create users, services and admins in their own.
    public func createUser(tenant: String, name: String, role roleName: String, by principal: Principal) async throws -> CreatedUser {
        let repository = repository(for: principal)
        try requireAdministrator(principal)
        try Validation.text(name, field: "name", max: Validation.maxNameLength)
        guard let role = Role(rawValue: roleName.isEmpty ? Role.tenantUser.rawValue : roleName) else {
            throw LicenseError.invalid("role must be one of: \(Role.all.map(\.rawValue).joined(separator: ", "))")
        }
        var tenantID: TenantID?
        if role == .platformOperator {
            guard principal.role == .platformOperator else { throw LicenseError.forbidden("only operators create operators") }
            guard tenant.isEmpty else { throw LicenseError.invalid("operators belong to no tenant: leave tenant_id empty") }
        } else {
            try Validation.id(tenant, field: "tenant_id")
            let id = TenantID(tenant)
            guard principal.administers(id),
                  try await backend("the repository", { try await repository.tenant(id) }) != nil
            else { throw LicenseError.tenantNotFound() }
            tenantID = id
        }
        let now = clock.now()
        let user = User(id: UserID(IdentifierGenerator.make(prefix: "usr", byteCount: 8)), tenantID: tenantID, name: name, role: role, createdAt: now)
        let key = APIKey.generate()
        let record = APIKeyRecord(hash: APIKey.hash(key), userID: user.id, createdAt: now)
        let audit = AuditEvent(at: now, tenantID: tenantID, actor: principal.userID, action: "user.create", target: user.id.rawValue)
        try await backend("the repository") { try await repository.createUser(user, apiKey: record, audit: audit) }
        return CreatedUser(user: user, apiKey: key)
    }

    /// The sessions of a license: all of them for its administrators, one's own for members.
    public func listSessions(license: String, includeEnded: Bool, by principal: Principal) async throws -> [LeaseSession] {
        let repository = repository(for: principal)
        try Validation.id(license, field: "license_id")
        let found = try await visibleLicense(LicenseID(license), to: principal)
        let all = try await backend("the repository") { try await repository.sessions(license: found.id, includeEnded: includeEnded) }
        let now = clock.now()
        let visible = principal.administers(found.tenantID) ? all : all.filter { $0.userID == principal.userID }
        // A lapsed lease no longer holds a seat even before the repository row is closed.
        return includeEnded ? visible : visible.filter { $0.isLive(at: now) }
    }

    private func requireOperator(_ principal: Principal) throws {
        guard principal.role == .platformOperator else {
            throw LicenseError.forbidden("this call needs a platform operator")
        }
    }

    /// The tenant scope a listing may use: the named tenant if the principal belongs to it,
    /// the principal's own when none is named, or every tenant (`nil`) for operators.
    private func visibleTenant(_ tenant: String?, to principal: Principal) throws -> TenantID? {
        if let tenant, !tenant.isEmpty {
            try Validation.id(tenant, field: "tenant_id")
            guard principal.belongs(to: TenantID(tenant)) else { throw LicenseError.tenantNotFound() }
            return TenantID(tenant)
        }
        if principal.role == .platformOperator { return nil }
        guard let own = principal.tenantID else { throw LicenseError.tenantNotFound() }
        return own
    }
}
