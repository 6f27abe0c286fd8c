extension LicenseService {
    /// Creates a license for a tenant (platform operators only).
    public func createLicense(_ command: CreateLicenseCommand, by principal: Principal) async throws -> License {
        let repository = repository(for: principal)
        try Validation.id(command.tenantID, field: "tenant_id")
        let tenant = try await visibleTenant(TenantID(command.tenantID), to: principal)
        try requireOperator(principal)
        try Validation.text(command.name, field: "name", max: Validation.maxNameLength)
        var policy = configuration.defaultPolicy
        if let ttl = command.leaseTTL { policy.leaseTTL = ttl }
        if let interval = command.heartbeatInterval { policy.heartbeatInterval = interval }
        if let grace = command.offlineGrace { policy.offlineGrace = grace }
        let licenseID = command.id.isEmpty ? IdentifierGenerator.make(prefix: "lic", byteCount: 8) : command.id
        try Validation.id(licenseID, field: "id")
        let license = License(
            id: LicenseID(licenseID), tenantID: tenant.id, name: command.name, seats: command.seats,
            policy: policy, validFrom: command.validFrom, validUntil: command.validUntil, features: command.features,
            createdAt: clock.now()
        )
        try Self.validateTerms(license)
        let audit = AuditEvent(at: license.createdAt, tenantID: license.tenantID, actor: principal.userID, action: "license.create", target: licenseID)
        try await creating("license", id: license.id.rawValue, exists: { try await repository.license(license.id) != nil }) {
            try await repository.createLicense(license, audit: audit)
        }
        return license
    }

    /// One license of a tenant the principal belongs to.
    public func showLicense(_ id: String, by principal: Principal) async throws -> License {
        try Validation.id(id, field: "license_id")
        return try await visibleLicense(LicenseID(id), to: principal)
    }

    /// Changes a license's seats, validity, lease times, features, name or status (platform
    /// operators only). Sessions keep their seats when seats shrink; new times apply from each
    /// session's next heartbeat.
    public func updateLicense(_ command: UpdateLicenseCommand, by principal: Principal) async throws -> License {
        try Validation.id(command.id, field: "license_id")
        var license = try await visibleLicense(LicenseID(command.id), to: principal)
        try requireOperator(principal)
        if let name = command.name {
            try Validation.text(name, field: "name", max: Validation.maxNameLength)
            license.name = name
        }
        if let seats = command.seats { license.seats = seats }
        if let ttl = command.leaseTTL { license.policy.leaseTTL = ttl }
        if let interval = command.heartbeatInterval { license.policy.heartbeatInterval = interval }
        if let grace = command.offlineGrace { license.policy.offlineGrace = grace }
        switch command.validFrom {
        case .unchanged: break
        case .cleared: license.validFrom = nil
        case .set(let from): license.validFrom = from
        }
        switch command.validUntil {
        case .unchanged: break
        case .cleared: license.validUntil = nil
        case .set(let until): license.validUntil = until
        }
        if let features = command.features { license.features = features }
        if let status = command.status {
            guard status == .active || status == .suspended else { throw LicenseError.invalid("status must be active or suspended") }
            license.status = status
        }
        try Self.validateTerms(license)
        let action = command.status.map { $0 == .suspended ? "license.suspend" : "license.resume" } ?? "license.update"
        let audit = AuditEvent(at: clock.now(), tenantID: license.tenantID, actor: principal.userID, action: action, target: license.id.rawValue)
        let updated = license
        try await backend("the repository") { try await repository(for: principal).updateLicense(updated, audit: audit) }
        return license
    }

    /// The licenses of a tenant the principal belongs to; operators may ask for every tenant (`nil`).
    public func listLicenses(tenant: String?, by principal: Principal) async throws -> [License] {
        let repository = repository(for: principal)
        let scope = try visibleTenantScope(tenant, to: principal)
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
            let used = try await backend("the seat store") { try await seats.seatsInUse(licenseID: license.id) }
            usage.append(LicenseUsage(license: license, seatsUsed: used))
        }
        return usage
    }

    /// The checks every license's terms must pass, on create and on update.
    static func validateTerms(_ license: License) throws {
        guard (1...Validation.maxSeats).contains(license.seats) else {
            throw LicenseError.invalid("seats must be between 1 and \(Validation.maxSeats)")
        }
        let policy = license.policy
        guard policy.heartbeatInterval >= .seconds(1), policy.heartbeatInterval < policy.leaseTTL else {
            throw LicenseError.invalid("heartbeat_interval_s must be at least 1 and shorter than lease_ttl_s")
        }
        guard policy.leaseTTL <= .seconds(86_400) else { throw LicenseError.invalid("lease_ttl_s may be at most 86400") }
        guard policy.offlineGrace >= policy.leaseTTL, policy.offlineGrace <= maxOfflineGrace else {
            throw LicenseError.invalid("offline_grace_s must be between lease_ttl_s and 30 days")
        }
        if let from = license.validFrom, let until = license.validUntil, until <= from {
            throw LicenseError.invalid("valid_until must be later than valid_from")
        }
        guard license.features.count <= Validation.maxFeatures else {
            throw LicenseError.invalid("at most \(Validation.maxFeatures) features")
        }
        for feature in license.features { try Validation.id(feature, field: "feature") }
    }

    /// The longest offline grace a license may have, and so the longest a lease token lives.
    public static let maxOfflineGrace = Duration.seconds(30 * 86_400)

    /// How long a retired signing key stays published: the longest a token it signed can live,
    /// plus two minutes for clock skew.
    public static let retiredKeyPublication = maxOfflineGrace + .seconds(120)

    /// The tenant scope a listing may use: the named tenant if the principal belongs to it,
    /// the principal's own when none is named, or every tenant (`nil`) for operators.
    func visibleTenantScope(_ tenant: String?, to principal: Principal) throws -> TenantID? {
        if let tenant, !tenant.isEmpty {
            try Validation.id(tenant, field: "tenant_id")
            guard principal.belongs(to: TenantID(tenant)) else { throw LicenseError.tenantNotFound(TenantID(tenant)) }
            return TenantID(tenant)
        }
        if principal.isOperator { return nil }
        guard let own = principal.tenantID else {
            throw LicenseError(.notFound, .tenantUnknown, "you belong to no tenant: name one (operators)")
        }
        return own
    }
}
