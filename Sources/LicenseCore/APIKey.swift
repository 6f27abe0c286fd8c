import Crypto
import Logging

/// API keys: `lk_` followed by 32 random bytes in base64url. Only the SHA-256 hash is stored;
/// the key's entropy makes a slow hash unnecessary.
public enum APIKey {
    /// A new random API key.
    public static func generate() -> String {
        IdentifierGenerator.make(prefix: "lk", byteCount: 32)
    }

    /// The hash under which a key is stored and looked up (lowercase hex SHA-256).
    public static func hash(_ key: String) -> String {
        Hex.encode(SHA256.hash(data: Array(key.utf8)))
    }

    /// Whether the text has the shape of an API key (checked before any lookup).
    public static func isWellFormed(_ key: String) -> Bool {
        key.hasPrefix("lk_") && key.utf8.count >= 20 && key.utf8.count <= 128
            && key.utf8.allSatisfy { $0 < 128 && ($0 == 95 || $0 == 45 || (48...57).contains($0) || (65...90).contains($0) || (97...122).contains($0)) }
    }
}

/// Turns the credential of a `Hello` into a principal.
public struct Authenticator: Sendable {
    private let repository: any LicenseRepository
    private let clock: any WallClock
    private let logger: Logger

    public init(repository: any LicenseRepository, clock: any WallClock = SystemWallClock(), logger: Logger = Logger(label: "coditect.license.auth")) {
        self.repository = repository
        self.clock = clock
        self.logger = logger
    }

    /// Authenticates an API key. Every failure is the same `UNAUTHENTICATED` answer, so the
    /// response does not tell which part was wrong.
    public func authenticate(apiKey: String) async throws -> Principal {
        let rejected = LicenseError(.unauthenticated, .invalidCredential, "the credential was not accepted")
        guard APIKey.isWellFormed(apiKey) else { throw rejected }
        let hash = APIKey.hash(apiKey)
        let user = try await backend { try await repository.user(apiKeyHash: hash) }
        guard let user, !user.disabled else { throw rejected }
        try await requireActiveTenant(of: user, rejected: rejected)
        var principal = user.principal
        principal.apiKeyHash = hash
        return principal
    }

    /// Checks again that a connection's principal may still act: its API key is not revoked, its
    /// user is not disabled, its tenant is not suspended, and its ID token has not expired (with
    /// 60 s of skew). Throws the refusal; a backend failure is thrown as UNAVAILABLE.
    public func recheck(_ principal: Principal) async throws {
        if let expiresAt = principal.expiresAt, clock.now() >= expiresAt.advanced(by: .seconds(60)) {
            throw LicenseError(.unauthenticated, .tokenExpired, "the ID token this connection signed in with has expired; send Hello with a fresh one")
        }
        let lapsed = LicenseError(.unauthenticated, .invalidCredential, "the credential this connection signed in with was revoked or its user disabled")
        let user: User?
        if let hash = principal.apiKeyHash {
            user = try await backend { try await repository.user(apiKeyHash: hash) }
        } else {
            user = try await backend { try await repository.user(principal.userID) }
        }
        guard let user, user.id == principal.userID, !user.disabled else { throw lapsed }
        try await requireActiveTenant(of: user, rejected: lapsed)
    }

    /// Authenticates a platform operator by the common name of a TLS client certificate that the
    /// server verified against its operator client CA: the name must be the id of an enabled
    /// operator. Anything else is the same `UNAUTHENTICATED` answer as a bad API key.
    public func authenticate(operatorCertificate commonName: String) async throws -> Principal {
        let rejected = LicenseError(.unauthenticated, .invalidCredential, "the credential was not accepted")
        guard (try? Validation.id(commonName, field: "common name")) != nil,
              let user = try await backend({ try await repository.user(UserID(commonName)) }),
              user.role == .platformOperator, !user.disabled
        else { throw rejected }
        return user.principal
    }

    /// Maps a verified ID token to the one user it names, in exactly one tenant:
    ///
    /// 1. the user already bound to the token's `iss` + `sub`;
    /// 2. else the one unbound user created with the token's verified e-mail, which is then bound;
    /// 3. else, when the tenant (chosen by the token's identity-provider tenant if present, or by
    ///    the e-mail's domain) provisions by e-mail domain, a new user of that tenant.
    ///
    /// Where the token names an identity-provider tenant, the user must belong to the tenant
    /// mapped to it. Everything else is refused with `IDENTITY_NOT_PROVISIONED`.
    public func authenticate(identity: VerifiedIdentity) async throws -> Principal {
        let refused = LicenseError(.permissionDenied, .identityNotProvisioned, "this identity is not a user of any tenant; ask your administrator")
        let mappedTenant: Tenant?
        if let identityTenant = identity.identityTenant {
            let tenants = try await backend { try await repository.tenants(identityTenant: identityTenant) }
            guard tenants.count == 1 else { throw refused }
            mappedTenant = tenants[0]
        } else {
            mappedTenant = nil
        }
        func check(_ user: User) async throws -> Principal {
            guard !user.disabled, user.tenantID != nil else { throw LicenseError(.unauthenticated, .invalidCredential, "the credential was not accepted") }
            if let mappedTenant, user.tenantID != mappedTenant.id { throw refused }
            try await requireActiveTenant(of: user, rejected: refused)
            var principal = user.principal
            principal.expiresAt = identity.expiresAt
            return principal
        }
        if let user = try await backend({ try await repository.user(identity: identity.account) }) {
            return try await check(user)
        }
        guard let email = identity.email, identity.emailVerified, let at = email.lastIndex(of: "@") else { throw refused }
        let now = clock.now()
        let candidates = try await backend { try await repository.users(email: email) }
            .filter { $0.identity == nil && $0.tenantID != nil && (mappedTenant == nil || $0.tenantID == mappedTenant?.id) }
        if candidates.count > 1 { throw refused }
        if var user = candidates.first {
            user.identity = identity.account
            let bound = user
            let audit = AuditEvent(at: now, tenantID: user.tenantID, actor: user.id, action: "user.bind_identity", target: user.id.rawValue)
            try await backend { try await repository.updateUser(bound, audit: audit) }
            return try await check(user)
        }
        let domain = String(email[email.index(after: at)...])
        let tenant: Tenant
        if let mappedTenant {
            tenant = mappedTenant
        } else {
            let owners = try await backend { try await repository.tenants(emailDomain: domain) }
            guard owners.count == 1 else { throw refused }
            tenant = owners[0]
        }
        guard tenant.provisioning == .emailDomain, tenant.emailDomains.contains(domain) else { throw refused }
        guard tenant.status == .active else { throw LicenseError(.permissionDenied, .tenantSuspended, "the tenant is suspended") }
        let name = identity.displayName.flatMap { (try? Validation.text($0, field: "name", max: Validation.maxNameLength)) == nil ? nil : $0 } ?? email
        let user = User(
            id: UserID(IdentifierGenerator.make(prefix: "usr", byteCount: 8)), tenantID: tenant.id, name: name,
            role: .tenantUser, createdAt: now, email: email, identity: identity.account
        )
        let audit = AuditEvent(at: now, tenantID: tenant.id, actor: user.id, action: "user.provision", target: user.id.rawValue)
        do {
            try await backend { try await repository.createUser(user, apiKey: nil, audit: audit) }
        } catch let error as LicenseError where error.code == .alreadyExists {
            // A concurrent first sign-in of the same account created the user first: use it.
            guard let existing = try await backend({ try await repository.user(identity: identity.account) }) else { throw error }
            return try await check(existing)
        }
        var principal = user.principal
        principal.expiresAt = identity.expiresAt
        return principal
    }

    private func requireActiveTenant(of user: User, rejected: LicenseError) async throws {
        guard let tenantID = user.tenantID else { return }
        guard let tenant = try await backend({ try await repository.tenant(tenantID) }) else { throw rejected }
        guard tenant.status == .active else {
            throw LicenseError(.permissionDenied, .tenantSuspended, "the tenant is suspended")
        }
    }

    private func backend<T>(_ body: () async throws -> T) async throws -> T {
        try await callingBackend("the repository", logger: logger, body)
    }
}
