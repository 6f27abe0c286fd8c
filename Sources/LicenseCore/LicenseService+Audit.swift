extension LicenseService {
    /// A page of the sessions of a license or of a user, or (neither given) of every session
    /// the caller may see, newest first. Administrators and service accounts of the tenant see
    /// every session; other users see only their own. `pageToken` is a previous page's token
    /// (`PageToken.sessions(after:)`), empty for the first page.
    public func listSessions(
        license: String, user: String, includeEnded: Bool, pageSize: Int = 0, pageToken: String = "", by principal: Principal
    ) async throws -> PageSlice<LeaseSession> {
        let size = try PageSlice<LeaseSession>.size(pageSize, field: "page_size")
        let cursor = try PageToken.sessionCursor(pageToken)
        var filter = SessionFilter(liveAt: includeEnded ? nil : clock.now())
        switch (license.isEmpty, user.isEmpty) {
        case (false, true):
            try Validation.id(license, field: "license_id")
            let found = try await visibleLicense(LicenseID(license), to: principal)
            filter.licenseID = found.id
            if !principal.reads(found.tenantID) { filter.userID = principal.userID }
        case (true, false):
            try Validation.id(user, field: "user_id")
            let found = try await visibleUser(UserID(user), to: principal)
            filter.userID = found.id
            // Someone who may not read the user's tenant sees only their own sessions.
            guard found.tenantID.map(principal.reads) ?? principal.isOperator || found.id == principal.userID else {
                return PageSlice(items: [], hasMore: false)
            }
        case (true, true):
            // Everything the caller may see: every session for operators, the tenant's for its
            // administrators and service accounts, one's own for anyone else.
            if principal.isOperator || principal.tenantID.map(principal.reads) == true {
                return try await sessionsOfLicenses(filter, tenant: principal.isOperator ? nil : principal.tenantID, after: cursor, size: size, by: principal)
            }
            filter.userID = principal.userID
        default:
            throw LicenseError.invalid("give at most one of license_id and user_id")
        }
        let final = filter
        let rows = try await backend("the repository") { try await repository(for: principal).sessions(final, after: cursor, limit: size + 1) }
        return PageSlice(lookahead: rows, size: size)
    }

    /// A page of the sessions of every license of `tenant` (`nil`: every tenant), walking the
    /// licenses in id order and each newest first, so every query is one license's (indexed by
    /// license and creation time): an index over all sessions by tenant would cost every acquire
    /// an index update for a list administrators rarely ask for.
    private func sessionsOfLicenses(
        _ filter: SessionFilter, tenant: TenantID?, after cursor: SessionCursor?, size: Int, by principal: Principal
    ) async throws -> PageSlice<LeaseSession> {
        let repository = repository(for: principal)
        let licenses = try await backend("the repository") { try await repository.licenses(tenant: tenant) }.map(\.id).sorted()
        var rows: [LeaseSession] = []
        for license in licenses where cursor.map({ license >= $0.licenseID }) ?? true {
            var one = filter
            one.licenseID = license
            let after = cursor?.licenseID == license ? cursor : nil
            let wanted = size + 1 - rows.count
            rows += try await backend("the repository") { [one] in try await repository.sessions(one, after: after, limit: wanted) }
            if rows.count > size { break }
        }
        return PageSlice(lookahead: rows, size: size)
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
    /// `pageToken` is a previous page's token (`PageToken.audit(after:)`), empty for the first
    /// page; `query.limit` is the page size.
    public func queryAudit(_ query: AuditQuery, tenant: String, user: String, pageToken: String = "", by principal: Principal) async throws -> PageSlice<AuditEvent> {
        var query = query
        query.before = try PageToken.auditSequence(pageToken)
        query.tenantID = try visibleTenantScope(tenant, to: principal)
        guard query.tenantID.map(principal.administers) ?? principal.isOperator else {
            throw LicenseError.forbidden("this call needs an operator or the tenant's administrator")
        }
        if !user.isEmpty {
            try Validation.id(user, field: "user_id")
            query.actor = UserID(user)
        }
        if let action = query.action { try Validation.id(action, field: "action") }
        guard (1...PageSlice<AuditEvent>.maximumSize).contains(query.limit) else {
            throw LicenseError.invalid("limit must be between 1 and \(PageSlice<AuditEvent>.maximumSize)")
        }
        if let since = query.since, let until = query.until, until <= since {
            throw LicenseError.invalid("until must be later than since")
        }
        var final = query
        final.limit += 1
        let rows = try await backend("the repository") { [final] in try await repository(for: principal).auditEvents(final) }
        return PageSlice(lookahead: rows, size: query.limit)
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
