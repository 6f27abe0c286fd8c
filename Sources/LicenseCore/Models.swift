/// Whether an entity may be used.
public struct EntityStatus: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public static let active = EntityStatus(rawValue: "active")
    public static let suspended = EntityStatus(rawValue: "suspended")
    public var description: String { rawValue }
}

/// How people signing in with an identity provider become users of a tenant.
public struct UserProvisioning: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init?(rawValue: String) {
        guard ["admin", "email_domain"].contains(rawValue) else { return nil }
        self.rawValue = rawValue
    }
    private init(known: String) { self.rawValue = known }

    /// Only users an administrator created may sign in (matched by e-mail on first sign-in).
    public static let admin = UserProvisioning(known: "admin")
    /// Also: anyone whose verified e-mail is in one of the tenant's domains becomes a user on
    /// first sign-in.
    public static let emailDomain = UserProvisioning(known: "email_domain")

    public var description: String { rawValue }
}

/// A customer organisation that buys seats.
public struct Tenant: Hashable, Sendable {
    public var id: TenantID
    public var name: String
    public var status: EntityStatus
    public var createdAt: Timestamp
    /// How identity-provider users join the tenant.
    public var provisioning: UserProvisioning
    /// The e-mail domains the tenant owns (lowercase), for `.emailDomain` provisioning.
    public var emailDomains: [String]
    /// The identity provider's tenant id (Identity Platform's `firebase.tenant` claim) that
    /// maps to this tenant, if any.
    public var identityTenant: String?

    public init(
        id: TenantID, name: String, status: EntityStatus = .active, createdAt: Timestamp,
        provisioning: UserProvisioning = .admin, emailDomains: [String] = [], identityTenant: String? = nil
    ) {
        self.id = id
        self.name = name
        self.status = status
        self.createdAt = createdAt
        self.provisioning = provisioning
        self.emailDomains = emailDomains
        self.identityTenant = identityTenant
    }
}

/// The time policy of a license's leases.
public struct LeasePolicy: Hashable, Sendable {
    /// How long a seat is held without a heartbeat. Default 6 minutes.
    public var leaseTTL: Duration
    /// How often clients should heartbeat. Default 5 minutes; must be shorter than `leaseTTL`.
    public var heartbeatInterval: Duration
    /// How long a lease token stays valid offline. Default 24 hours.
    public var offlineGrace: Duration

    public init(leaseTTL: Duration = .seconds(360), heartbeatInterval: Duration = .seconds(300), offlineGrace: Duration = .seconds(86_400)) {
        self.leaseTTL = leaseTTL
        self.heartbeatInterval = heartbeatInterval
        self.offlineGrace = offlineGrace
    }

    /// The defaults DESIGN.md names: 6-minute lease, 5-minute heartbeat, 24-hour grace.
    public static let `default` = LeasePolicy()
}

/// A pool of concurrent seats sold to a tenant, with its policy.
public struct License: Hashable, Sendable {
    public var id: LicenseID
    public var tenantID: TenantID
    public var name: String
    /// The number of concurrent seats.
    public var seats: Int
    public var policy: LeasePolicy
    /// Not usable before this instant (`nil`: no bound).
    public var validFrom: Timestamp?
    /// Not usable from this instant on (`nil`: no bound).
    public var validUntil: Timestamp?
    /// Feature names copied into every lease token.
    public var features: [String]
    public var status: EntityStatus
    public var createdAt: Timestamp

    public init(
        id: LicenseID, tenantID: TenantID, name: String, seats: Int, policy: LeasePolicy = .default,
        validFrom: Timestamp? = nil, validUntil: Timestamp? = nil, features: [String] = [],
        status: EntityStatus = .active, createdAt: Timestamp
    ) {
        self.id = id
        self.tenantID = tenantID
        self.name = name
        self.seats = seats
        self.policy = policy
        self.validFrom = validFrom
        self.validUntil = validUntil
        self.features = features
        self.status = status
        self.createdAt = createdAt
    }
}

/// An account at an identity provider: the `iss` and `sub` of its ID tokens.
public struct ExternalIdentity: Hashable, Sendable {
    public var issuer: String
    public var subject: String

    public init(issuer: String, subject: String) {
        self.issuer = issuer
        self.subject = subject
    }
}

/// A person, service account or operator known to the server.
public struct User: Hashable, Sendable {
    public var id: UserID
    /// `nil` only for platform operators.
    public var tenantID: TenantID?
    public var name: String
    public var role: Role
    public var disabled: Bool
    public var createdAt: Timestamp
    /// The e-mail address (lowercase) a first ID-token sign-in is matched on.
    public var email: String?
    /// The identity-provider account bound to this user (set on first sign-in).
    public var identity: ExternalIdentity?

    public init(
        id: UserID, tenantID: TenantID?, name: String, role: Role, disabled: Bool = false, createdAt: Timestamp,
        email: String? = nil, identity: ExternalIdentity? = nil
    ) {
        self.id = id
        self.tenantID = tenantID
        self.name = name
        self.role = role
        self.disabled = disabled
        self.createdAt = createdAt
        self.email = email
        self.identity = identity
    }

    /// The principal this user authenticates as.
    public var principal: Principal { Principal(userID: id, tenantID: tenantID, role: role, name: name) }
}

/// A stored API key: only its SHA-256 hash is kept.
public struct APIKeyRecord: Hashable, Sendable {
    /// The key's public id (`key_` and 16 hex digits of its hash), for listing and revoking.
    public var id: String
    /// Lowercase hex SHA-256 of the key's full text.
    public var hash: String
    public var userID: UserID
    /// The owner's tenant (`nil` for operators).
    public var tenantID: TenantID?
    /// A label chosen by its creator, e.g. `ci`.
    public var name: String
    public var createdAt: Timestamp
    public var revokedAt: Timestamp?

    public init(hash: String, userID: UserID, tenantID: TenantID?, name: String = "", createdAt: Timestamp, revokedAt: Timestamp? = nil) {
        self.id = "key_" + hash.prefix(16)
        self.hash = hash
        self.userID = userID
        self.tenantID = tenantID
        self.name = name
        self.createdAt = createdAt
        self.revokedAt = revokedAt
    }
}

/// Why a session ended.
public struct SessionEndReason: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    /// The client gave the seat back.
    public static let released = SessionEndReason(rawValue: "released")
    /// An administrator took the seat away.
    public static let revoked = SessionEndReason(rawValue: "revoked")
    /// The lease lapsed and could not be renewed.
    public static let lapsed = SessionEndReason(rawValue: "lapsed")
    public var description: String { rawValue }
}

/// The durable record of one seat held by one client.
public struct LeaseSession: Hashable, Sendable {
    public var id: SessionID
    public var tenantID: TenantID
    public var licenseID: LicenseID
    public var userID: UserID
    public var hardwareID: String
    public var idempotencyKey: String
    public var clientInfo: [String: String]
    public var createdAt: Timestamp
    public var leaseExpiresAt: Timestamp
    public var endedAt: Timestamp?
    public var endReason: SessionEndReason?

    public init(
        id: SessionID, tenantID: TenantID, licenseID: LicenseID, userID: UserID, hardwareID: String,
        idempotencyKey: String, clientInfo: [String: String] = [:], createdAt: Timestamp,
        leaseExpiresAt: Timestamp, endedAt: Timestamp? = nil, endReason: SessionEndReason? = nil
    ) {
        self.id = id
        self.tenantID = tenantID
        self.licenseID = licenseID
        self.userID = userID
        self.hardwareID = hardwareID
        self.idempotencyKey = idempotencyKey
        self.clientInfo = clientInfo
        self.createdAt = createdAt
        self.leaseExpiresAt = leaseExpiresAt
        self.endedAt = endedAt
        self.endReason = endReason
    }

    /// Whether the session holds its seat at `now`: not ended and the lease not lapsed.
    public func isLive(at now: Timestamp) -> Bool { endedAt == nil && leaseExpiresAt > now }
}

/// One line of the audit log: who did what to which entity, when, and how it ended.
public struct AuditEvent: Hashable, Sendable {
    public var id: String
    public var at: Timestamp
    public var tenantID: TenantID?
    public var actor: UserID?
    /// A dotted verb such as `session.acquire` or `tenant.create`.
    public var action: String
    /// The entity acted on (an id).
    public var target: String
    /// `ok`, or the refusal's reason.
    public var outcome: String
    /// How many events this row stands for: refused sign-ins from one address are recorded as
    /// one row per interval (`at` is the first of them). 1 for everything else.
    public var count: Int
    /// The row's place in the log (ascending with each append), set when read from a
    /// repository; `nil` for an event not yet appended. Audit pages resume before it.
    public var sequence: Int64?

    public init(
        id: String = IdentifierGenerator.make(prefix: "aud", byteCount: 12), at: Timestamp, tenantID: TenantID?, actor: UserID?, action: String, target: String,
        outcome: String = "ok", count: Int = 1, sequence: Int64? = nil
    ) {
        self.id = id
        self.at = at
        self.tenantID = tenantID
        self.actor = actor
        self.action = action
        self.target = target
        self.outcome = outcome
        self.count = count
        self.sequence = sequence
    }
}

/// A filter over the audit log; every set field must match.
public struct AuditQuery: Hashable, Sendable {
    /// Only this tenant's events (`nil`: every tenant, operators only).
    public var tenantID: TenantID?
    /// Only events by this actor.
    public var actor: UserID?
    /// Only this action (`session.acquire`), or every action under a prefix ending in `.` (`session.`).
    public var action: String?
    /// Events at or after this instant.
    public var since: Timestamp?
    /// Events before this instant.
    public var until: Timestamp?
    /// At most this many, newest first.
    public var limit: Int
    /// Only events earlier in the log than this sequence (the next page after an event with it).
    public var before: Int64?

    public init(tenantID: TenantID? = nil, actor: UserID? = nil, action: String? = nil, since: Timestamp? = nil, until: Timestamp? = nil, limit: Int = 100, before: Int64? = nil) {
        self.tenantID = tenantID
        self.actor = actor
        self.action = action
        self.since = since
        self.until = until
        self.limit = limit
        self.before = before
    }

    /// Whether `event` passes the filter (for repositories that filter in memory).
    public func matches(_ event: AuditEvent) -> Bool {
        if let tenantID, event.tenantID != tenantID { return false }
        if let actor, event.actor != actor { return false }
        if let action {
            if action.hasSuffix(".") ? !event.action.hasPrefix(action) : event.action != action { return false }
        }
        if let since, event.at < since { return false }
        if let until, event.at >= until { return false }
        if let before, let sequence = event.sequence, sequence >= before { return false }
        return true
    }
}

/// A lease-signing key as the repository keeps it, shared by every replica. Its description
/// names the key id only, never the private key.
public struct StoredSigningKey: Hashable, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The JWS `kid`.
    public var keyID: String
    /// The JWS algorithm (`EdDSA`, `RS256`, `PS256`).
    public var algorithm: String
    /// The PKCS#8 PEM private key.
    public var privateKeyPEM: String
    public var createdAt: Timestamp
    /// When a newer key replaced it for signing (`nil`: it signs).
    public var retiredAt: Timestamp?
    /// Until when its public half stays in the JWKS (the longest a token it signed can live).
    public var publishUntil: Timestamp?

    public init(keyID: String, algorithm: String, privateKeyPEM: String, createdAt: Timestamp, retiredAt: Timestamp? = nil, publishUntil: Timestamp? = nil) {
        self.keyID = keyID
        self.algorithm = algorithm
        self.privateKeyPEM = privateKeyPEM
        self.createdAt = createdAt
        self.retiredAt = retiredAt
        self.publishUntil = publishUntil
    }

    public var description: String { "signing key \(keyID) (\(algorithm))" }
    public var debugDescription: String { description }
}

extension Sequence where Element == StoredSigningKey {
    /// The key that signs: the newest one not retired.
    public var signingKey: StoredSigningKey? {
        filter { $0.retiredAt == nil }.max { $0.createdAt < $1.createdAt }
    }
}
