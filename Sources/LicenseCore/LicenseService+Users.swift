extension LicenseService {
    /// Creates a user, with a first API key unless `withAPIKey` is false (a person who signs in
    /// with an identity provider, matched by e-mail). Operators create users in any tenant (and
    /// operators, with no tenant); tenant administrators create users, services and admins in
    /// their own.
    public func createUser(_ command: CreateUserCommand, by principal: Principal) async throws -> CreatedUser {
        let repository = repository(for: principal)
        guard let role = Role(rawValue: command.role.isEmpty ? Role.tenantUser.rawValue : command.role) else {
            throw LicenseError.invalid("role must be one of: \(Role.all.map(\.rawValue).joined(separator: ", "))")
        }
        var tenantID: TenantID?
        if role == .platformOperator {
            try requireOperator(principal, "only operators create operators")
            guard command.tenantID.isEmpty else { throw LicenseError.invalid("operators belong to no tenant: leave tenant_id empty") }
        } else {
            try Validation.id(command.tenantID, field: "tenant_id")
            tenantID = try await visibleTenant(TenantID(command.tenantID), to: principal).id
            guard principal.administers(tenantID!) else { throw LicenseError.forbidden("this call needs an operator or the tenant's administrator") }
        }
        try Validation.text(command.name, field: "name", max: Validation.maxNameLength)
        let email = command.email.isEmpty ? nil : try Validation.email(command.email)
        guard email != nil || command.withAPIKey else {
            throw LicenseError.invalid("a user without an API key needs an email to sign in with")
        }
        let now = clock.now()
        let user = User(
            id: UserID(IdentifierGenerator.make(prefix: "usr", byteCount: 8)), tenantID: tenantID, name: command.name,
            role: role, createdAt: now, email: email
        )
        let key = command.withAPIKey ? APIKey.generate() : nil
        let record = key.map { APIKeyRecord(hash: APIKey.hash($0), userID: user.id, tenantID: tenantID, name: "first", createdAt: now) }
        let audit = AuditEvent(at: now, tenantID: tenantID, actor: principal.userID, action: "user.create", target: user.id.rawValue)
        try await creating("user", id: user.id.rawValue, exists: { try await repository.user(user.id) != nil }) {
            try await repository.createUser(user, apiKey: record, audit: audit)
        }
        return CreatedUser(user: user, apiKey: key)
    }

    /// The users of a tenant (its administrators and operators), or every user (operators, `nil`).
    public func listUsers(tenant: String?, pageSize: Int = 0, pageToken: String = "", by principal: Principal) async throws -> PageSlice<User> {
        let repository = repository(for: principal)
        let size = try PageSlice<User>.size(pageSize, field: "page_size")
        let cursor = try PageToken.userCursor(pageToken)
        let scope = try visibleTenantScope(tenant, to: principal)
        guard scope.map(principal.administers) ?? principal.isOperator else {
            throw LicenseError.forbidden("this call needs an operator or the tenant's administrator")
        }
        // Users are few per tenant next to sessions and audit rows: read them all, page by id.
        let users = try await backend("the repository") { try await repository.users(tenant: scope) }
            .filter { user in cursor.map { user.id > $0 } ?? true }
            .sorted { $0.id < $1.id }
        return PageSlice(lookahead: Array(users.prefix(size + 1)), size: size)
    }

    /// Disables a user (or enables it again). A disabled user can no longer sign in, and its
    /// live sessions are revoked: their seats are freed at once. Returns the user and the
    /// sessions revoked, so their holders can be told.
    public func setUserDisabled(_ id: String, disabled: Bool, by principal: Principal) async throws -> (User, [LeaseSession]) {
        try Validation.id(id, field: "user_id")
        var user = try await visibleUser(UserID(id), to: principal)
        guard user.tenantID.map(principal.administers) ?? principal.isOperator else {
            throw LicenseError.forbidden("this call needs an operator or the tenant's administrator")
        }
        guard user.id != principal.userID else {
            throw LicenseError(.failedPrecondition, .invalidRequest, "you cannot disable yourself")
        }
        guard user.disabled != disabled else { return (user, []) }
        user.disabled = disabled
        let audit = AuditEvent(at: clock.now(), tenantID: user.tenantID, actor: principal.userID, action: disabled ? "user.disable" : "user.enable", target: user.id.rawValue)
        let updated = user
        try await backend("the repository") { try await repository(for: principal).updateUser(updated, audit: audit) }
        guard disabled else { return (user, []) }
        let live = try await backend("the repository") { try await repository(for: principal).sessions(user: updated.id, includeEnded: false) }
        var revoked: [LeaseSession] = []
        for session in live {
            try await end(session, reason: .revoked, by: principal, action: "session.revoke")
            revoked.append(session)
        }
        return (user, revoked)
    }

    // MARK: API keys

    /// Creates an API key for a user: one's own, or (administrators) any user of their tenant.
    public func createAPIKey(user id: String, name: String, by principal: Principal) async throws -> CreatedAPIKey {
        let owner = try await keyOwner(id.isEmpty ? principal.userID.rawValue : id, by: principal)
        try Validation.text(name, field: "name", max: Validation.maxNameLength, required: false)
        let key = APIKey.generate()
        let now = clock.now()
        let record = APIKeyRecord(hash: APIKey.hash(key), userID: owner.id, tenantID: owner.tenantID, name: name, createdAt: now)
        let audit = AuditEvent(at: now, tenantID: owner.tenantID, actor: principal.userID, action: "api_key.create", target: record.id)
        try await backend("the repository") { try await repository(for: principal).createAPIKey(record, audit: audit) }
        return CreatedAPIKey(record: record, key: key)
    }

    /// API keys (never the keys themselves): of one user, or of a tenant (administrators), or
    /// one's own when nothing is named.
    public func listAPIKeys(user: String, tenant: String, by principal: Principal) async throws -> [APIKeyRecord] {
        let repository = repository(for: principal)
        if !user.isEmpty {
            let owner = try await keyOwner(user, by: principal)
            return try await backend("the repository") { try await repository.apiKeys(user: owner.id, tenant: nil) }
        }
        if tenant.isEmpty && !principal.isOperator && principal.role != .tenantAdmin {
            return try await backend("the repository") { try await repository.apiKeys(user: principal.userID, tenant: nil) }
        }
        let scope = try visibleTenantScope(tenant, to: principal)
        guard scope.map(principal.administers) ?? principal.isOperator else {
            throw LicenseError.forbidden("listing a tenant's keys needs an operator or the tenant's administrator")
        }
        return try await backend("the repository") { try await repository.apiKeys(user: nil, tenant: scope) }
    }

    /// Replaces a key with a new one (shown once) in one commit; the old key stops working at once.
    public func rotateAPIKey(_ id: String, by principal: Principal) async throws -> CreatedAPIKey {
        let old = try await managedKey(id, by: principal)
        guard old.revokedAt == nil else { throw LicenseError(.failedPrecondition, .invalidRequest, "the API key is revoked; create a new one") }
        let key = APIKey.generate()
        let now = clock.now()
        let record = APIKeyRecord(hash: APIKey.hash(key), userID: old.userID, tenantID: old.tenantID, name: old.name, createdAt: now)
        let audit = AuditEvent(at: now, tenantID: old.tenantID, actor: principal.userID, action: "api_key.rotate", target: old.id)
        let rotated = try await backend("the repository") {
            try await repository(for: principal).revokeAPIKey(id: old.id, at: now, replacement: record, audit: audit)
        }
        guard rotated else { throw LicenseError(.failedPrecondition, .invalidRequest, "the API key is revoked; create a new one") }
        return CreatedAPIKey(record: record, key: key)
    }

    /// Revokes a key at once. Revoking a revoked key succeeds and changes nothing.
    public func revokeAPIKey(_ id: String, by principal: Principal) async throws -> APIKeyRecord {
        var key = try await managedKey(id, by: principal)
        guard key.revokedAt == nil else { return key }
        let now = clock.now()
        let audit = AuditEvent(at: now, tenantID: key.tenantID, actor: principal.userID, action: "api_key.revoke", target: key.id)
        let target = key.id
        if try await backend("the repository", { try await repository(for: principal).revokeAPIKey(id: target, at: now, replacement: nil, audit: audit) }) {
            key.revokedAt = now
        }
        return key
    }

    /// A user the principal can see: itself, anyone for operators, its tenant's users otherwise.
    func visibleUser(_ id: UserID, to principal: Principal) async throws -> User {
        let repository = repository(for: principal)
        guard let user = try await backend("the repository", { try await repository.user(id) }),
              user.id == principal.userID || principal.isOperator || (user.tenantID != nil && user.tenantID == principal.tenantID)
        else { throw LicenseError.userNotFound(id) }
        return user
    }

    /// A user whose keys the principal manages: itself, or a user of a tenant it administers.
    private func keyOwner(_ id: String, by principal: Principal) async throws -> User {
        try Validation.id(id, field: "user_id")
        let owner = try await visibleUser(UserID(id), to: principal)
        guard owner.id == principal.userID || principal.isOperator || owner.tenantID.map(principal.administers) == true else {
            throw LicenseError.forbidden("only administrators manage other users' keys")
        }
        return owner
    }

    private func managedKey(_ id: String, by principal: Principal) async throws -> APIKeyRecord {
        try Validation.id(id, field: "key_id")
        guard let key = try await backend("the repository", { try await repository(for: principal).apiKey(id: id) }),
              key.userID == principal.userID || principal.isOperator || (key.tenantID != nil && key.tenantID == principal.tenantID)
        else { throw LicenseError(.notFound, .apiKeyUnknown, "API key '\(id)' not found") }
        guard key.userID == principal.userID || principal.isOperator || key.tenantID.map(principal.administers) == true else {
            throw LicenseError.forbidden("only administrators manage other users' keys")
        }
        return key
    }
}
