extension LicenseService {
    /// Creates a tenant (platform operators only).
    public func createTenant(id: String, name: String, by principal: Principal) async throws -> Tenant {
        try requireOperator(principal)
        try Validation.text(name, field: "name", max: Validation.maxNameLength)
        let tenantID = id.isEmpty ? IdentifierGenerator.make(prefix: "tnt", byteCount: 8) : id
        try Validation.id(tenantID, field: "id")
        let tenant = Tenant(id: TenantID(tenantID), name: name, createdAt: clock.now())
        let audit = AuditEvent(at: tenant.createdAt, tenantID: tenant.id, actor: principal.userID, action: "tenant.create", target: tenantID)
        try await creating("tenant", id: tenant.id.rawValue, exists: { try await repository.tenant(tenant.id) != nil }) {
            try await repository.createTenant(tenant, audit: audit)
        }
        return tenant
    }

    /// Every tenant for operators; the caller's own for everyone else.
    public func listTenants(by principal: Principal) async throws -> [Tenant] {
        let repository = repository(for: principal)
        if principal.isOperator {
            return try await backend("the repository") { try await repository.tenants() }
        }
        guard let own = principal.tenantID,
              let tenant = try await backend("the repository", { try await repository.tenant(own) })
        else { return [] }
        return [tenant]
    }

    /// One tenant the principal belongs to.
    public func showTenant(_ id: String, by principal: Principal) async throws -> Tenant {
        try Validation.id(id, field: "tenant_id")
        return try await visibleTenant(TenantID(id), to: principal)
    }

    /// Renames a tenant, changes how its users are provisioned, or (operators) suspends it,
    /// resumes it and sets its e-mail domains and identity-provider tenant.
    public func updateTenant(_ command: UpdateTenantCommand, by principal: Principal) async throws -> Tenant {
        try Validation.id(command.id, field: "tenant_id")
        var tenant = try await visibleTenant(TenantID(command.id), to: principal)
        guard principal.administers(tenant.id) else { throw LicenseError.forbidden("this call needs an operator or the tenant's administrator") }
        if command.status != nil || command.emailDomains != nil || command.identityTenant != nil {
            try requireOperator(principal, "only operators change a tenant's status, e-mail domains or identity tenant")
        }
        if let name = command.name {
            try Validation.text(name, field: "name", max: Validation.maxNameLength)
            tenant.name = name
        }
        if let mode = command.provisioning {
            guard let provisioning = UserProvisioning(rawValue: mode) else {
                throw LicenseError.invalid("provisioning must be admin or email_domain")
            }
            tenant.provisioning = provisioning
        }
        if let status = command.status {
            guard status == .active || status == .suspended else { throw LicenseError.invalid("status must be active or suspended") }
            tenant.status = status
        }
        if let domains = command.emailDomains {
            guard domains.count <= Validation.maxFeatures else { throw LicenseError.invalid("at most \(Validation.maxFeatures) e-mail domains") }
            tenant.emailDomains = try domains.map(Validation.emailDomain)
            for domain in tenant.emailDomains {
                let owners = try await backend("the repository") { try await repository.tenants(emailDomain: domain) }
                if owners.contains(where: { $0.id != tenant.id }) {
                    throw LicenseError(.alreadyExists, .alreadyExists, "e-mail domain \(domain) belongs to another tenant")
                }
            }
        }
        if let identityTenant = command.identityTenant {
            if identityTenant.isEmpty {
                tenant.identityTenant = nil
            } else {
                try Validation.id(identityTenant, field: "identity_tenant")
                let owners = try await backend("the repository") { try await repository.tenants(identityTenant: identityTenant) }
                if owners.contains(where: { $0.id != tenant.id }) {
                    throw LicenseError(.alreadyExists, .alreadyExists, "identity tenant \(identityTenant) is mapped to another tenant")
                }
                tenant.identityTenant = identityTenant
            }
        }
        if tenant.provisioning == .emailDomain && tenant.emailDomains.isEmpty {
            throw LicenseError.invalid("email_domain provisioning needs at least one e-mail domain (set by an operator)")
        }
        let action = command.status.map { $0 == .suspended ? "tenant.suspend" : "tenant.resume" } ?? "tenant.update"
        let audit = AuditEvent(at: clock.now(), tenantID: tenant.id, actor: principal.userID, action: action, target: tenant.id.rawValue)
        let updated = tenant
        try await backend("the repository") { try await repository(for: principal).updateTenant(updated, audit: audit) }
        return tenant
    }

    func visibleTenant(_ id: TenantID, to principal: Principal) async throws -> Tenant {
        let repository = repository(for: principal)
        guard principal.belongs(to: id),
              let tenant = try await backend("the repository", { try await repository.tenant(id) })
        else { throw LicenseError.tenantNotFound(id) }
        return tenant
    }

    func requireOperator(_ principal: Principal, _ message: String = "this call needs a platform operator") throws {
        guard principal.isOperator else { throw LicenseError.forbidden(message) }
    }
}
