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

/// A change to a license: only the fields that are set change.
public struct UpdateLicenseCommand: Hashable, Sendable {
    /// A validity bound: left as it is, removed, or set.
    public enum Bound: Hashable, Sendable {
        case unchanged
        case cleared
        case set(Timestamp)
    }

    public var id: String
    public var name: String?
    public var seats: Int?
    public var leaseTTL: Duration?
    public var heartbeatInterval: Duration?
    public var offlineGrace: Duration?
    public var validFrom: Bound
    public var validUntil: Bound
    public var features: [String]?
    public var status: EntityStatus?

    public init(id: String, name: String? = nil, seats: Int? = nil, leaseTTL: Duration? = nil, heartbeatInterval: Duration? = nil, offlineGrace: Duration? = nil, validFrom: Bound = .unchanged, validUntil: Bound = .unchanged, features: [String]? = nil, status: EntityStatus? = nil) {
        self.id = id
        self.name = name
        self.seats = seats
        self.leaseTTL = leaseTTL
        self.heartbeatInterval = heartbeatInterval
        self.offlineGrace = offlineGrace
        self.validFrom = validFrom
        self.validUntil = validUntil
        self.features = features
        self.status = status
    }
}

/// A change to a tenant: only the fields that are set change.
public struct UpdateTenantCommand: Hashable, Sendable {
    public var id: String
    public var name: String?
    /// `active` or `suspended` (operators only).
    public var status: EntityStatus?
    public var provisioning: String?
    /// The tenant's e-mail domains, replacing the old list (operators only).
    public var emailDomains: [String]?
    /// The identity provider's tenant id; `""` clears it (operators only).
    public var identityTenant: String?

    public init(id: String, name: String? = nil, status: EntityStatus? = nil, provisioning: String? = nil, emailDomains: [String]? = nil, identityTenant: String? = nil) {
        self.id = id
        self.name = name
        self.status = status
        self.provisioning = provisioning
        self.emailDomains = emailDomains
        self.identityTenant = identityTenant
    }
}

/// A new user as an administrator asks for it.
public struct CreateUserCommand: Hashable, Sendable {
    public var tenantID: String
    public var name: String
    public var role: String
    /// Matched against the verified e-mail of a first ID-token sign-in.
    public var email: String
    /// Whether to create a first API key (shown once in the answer).
    public var withAPIKey: Bool

    public init(tenantID: String, name: String, role: String = "", email: String = "", withAPIKey: Bool = true) {
        self.tenantID = tenantID
        self.name = name
        self.role = role
        self.email = email
        self.withAPIKey = withAPIKey
    }
}

/// A license with its live seat count.
public struct LicenseUsage: Hashable, Sendable {
    public var license: License
    public var seatsUsed: Int
}

/// A created user with the API key that is shown only now (`nil` when none was asked for).
public struct CreatedUser: Hashable, Sendable {
    public var user: User
    public var apiKey: String?
}

/// A created (or rotated) API key: its record and the key itself, shown only now.
public struct CreatedAPIKey: Hashable, Sendable {
    public var record: APIKeyRecord
    public var key: String
}

/// The outcome of a signing-key rotation.
public struct SigningKeyRotation: Hashable, Sendable {
    /// The key that signs from now on.
    public var current: String
    public var algorithm: String
    /// The keys it replaced, published until `publishedUntil`.
    public var retired: [String]
    public var publishedUntil: Timestamp
}
