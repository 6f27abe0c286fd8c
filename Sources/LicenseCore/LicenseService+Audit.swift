extension LicenseService {
    /// The sessions of a license or of a user. Administrators and service accounts of the tenant
    /// see every session; other users see only their own.
    public func listSessions(license: String, user: String, includeEnded: Bool, by principal: Principal) async throws -> [LeaseSession] {
        let repository = repository(for: principal)
        let all: [LeaseSession]
        let readsAll: Bool
        switch (license.isEmpty, user.isEmpty) {
        case (false, true):
            try Validation.id(license, field: "license_id")
            let found = try await visibleLicense(LicenseID(license), to: principal)
            all = try await backend("the repository") { try await repository.sessions(license: found.id, includeEnded: includeEnded) }
            readsAll = principal.reads(found.tenantID)
        case (true, false):
            try Validation.id(user, field: "user_id")
            let found = try await visibleUser(UserID(user), to: principal)
            all = try await backend("the repository") { try await repository.sessions(user: found.id, includeEnded: includeEnded) }
            readsAll = found.tenantID.map(principal.reads) ?? principal.isOperator
        case (true, true):
            // Everything the caller may see: every license's sessions for operators, the tenant's
            // for its administrators and service accounts, one's own for anyone else.
            if principal.isOperator || principal.tenantID.map(principal.reads) == true {
                let scope = principal.isOperator ? nil : principal.tenantID
                let licenses = try await backend("the repository") { try await repository.licenses(tenant: scope) }
                var sessions: [LeaseSession] = []
                for license in licenses {
                    sessions += try await backend("the repository") { try await repository.sessions(license: license.id, includeEnded: includeEnded) }
                }
                all = sessions
                readsAll = true
            } else {
                all = try await backend("the repository") { try await repository.sessions(user: principal.userID, includeEnded: includeEnded) }
                readsAll = false
            }
        default:
            throw LicenseError.invalid("give at most one of license_id and user_id")
        }
        let now = clock.now()
        let visible = readsAll ? all : all.filter { $0.userID == principal.userID }
        // A lapsed lease no longer holds a seat even before the repository row is closed.
        return includeEnded ? visible : visible.filter { $0.isLive(at: now) }
    }

    /// The display names of users, for lists that show user ids (sessions). Users the principal
    /// may not see (`visibleUser`) are left out.
    public func userNames(_ ids: Set<UserID>, by principal: Principal) async throws -> [UserID: String] {
        var names: [UserID: String] = [:]
        for id in ids {
            do {
                names[id] = try await visibleUser(id, to: principal).name
            } catch let error as LicenseError where error.code == .notFound {
                continue
            }
        }
        return names
    }

    /// Audit events, newest first: every tenant's for operators, their own tenant's for
    /// tenant administrators.
    public func queryAudit(_ query: AuditQuery, tenant: String, user: String, by principal: Principal) async throws -> [AuditEvent] {
        var query = query
        query.tenantID = try visibleTenantScope(tenant, to: principal)
        guard query.tenantID.map(principal.administers) ?? principal.isOperator else {
            throw LicenseError.forbidden("this call needs an operator or the tenant's administrator")
        }
        if !user.isEmpty {
            try Validation.id(user, field: "user_id")
            query.actor = UserID(user)
        }
        if let action = query.action { try Validation.id(action, field: "action") }
        guard (1...1000).contains(query.limit) else { throw LicenseError.invalid("limit must be between 1 and 1000") }
        if let since = query.since, let until = query.until, until <= since {
            throw LicenseError.invalid("until must be later than since")
        }
        let final = query
        return try await backend("the repository") { try await repository(for: principal).auditEvents(final) }
    }

    /// Makes a new key sign lease tokens (platform operators only). The keys it replaces stay
    /// published until the longest-lived token they can have signed has expired.
    public func rotateSigningKey(algorithm: String, by principal: Principal) async throws -> SigningKeyRotation {
        try requireOperator(principal)
        let now = clock.now()
        let key: StoredSigningKey
        do {
            key = try signer.makeKey(algorithm: algorithm.isEmpty ? nil : algorithm, at: now)
        } catch let error as LicenseError {
            throw error
        } catch {
            throw LicenseError(.internal, .internalError, "the new signing key could not be made")
        }
        let until = now.advanced(by: Self.retiredKeyPublication)
        let audit = AuditEvent(at: now, tenantID: nil, actor: principal.userID, action: "signing_key.rotate", target: key.keyID)
        try await backend("the repository") { try await repository.rotateSigningKey(to: key, publishRetiredUntil: until, audit: audit) }
        let keys = try await backend("the repository") { try await repository.signingKeys() }
        try signer.load(keys, now: now)
        // The keys this rotation retired carry its instant (read in the same result, not before).
        return SigningKeyRotation(
            current: key.keyID, algorithm: key.algorithm,
            retired: keys.filter { $0.keyID != key.keyID && $0.retiredAt == key.createdAt }.map(\.keyID), publishedUntil: until
        )
    }
}
