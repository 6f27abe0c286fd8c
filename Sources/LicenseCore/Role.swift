/// What a principal may do. Roles are ordered by power within a tenant; the platform operator
/// stands above every tenant.
public struct Role: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String
    public init?(rawValue: String) {
        guard Role.all.contains(where: { $0.rawValue == rawValue }) else { return nil }
        self.rawValue = rawValue
    }
    private init(known: String) { self.rawValue = known }

    /// Runs the platform: creates tenants and licenses, sees every tenant.
    public static let platformOperator = Role(known: "operator")
    /// Administers one tenant: its users and sessions.
    public static let tenantAdmin = Role(known: "tenant_admin")
    /// A person using the product: acquires, heartbeats and releases seats.
    public static let tenantUser = Role(known: "user")
    /// Automation acting for a tenant (CI, provisioning): like a user, without a person.
    public static let service = Role(known: "service")

    /// Every known role.
    public static let all: [Role] = [.platformOperator, .tenantAdmin, .tenantUser, .service]

    public var description: String { rawValue }
}

/// The authenticated identity behind a connection.
public struct Principal: Hashable, Sendable {
    /// The user the credential belongs to.
    public var userID: UserID
    /// The user's tenant; `nil` for platform operators.
    public var tenantID: TenantID?
    /// The user's role.
    public var role: Role
    /// A display name for audit and listings.
    public var name: String
    /// The hash of the API key this principal signed in with, so the connection can be checked
    /// again later (never the key itself).
    public var apiKeyHash: String?
    /// When the ID token this principal signed in with expires.
    public var expiresAt: Timestamp?

    public init(userID: UserID, tenantID: TenantID?, role: Role, name: String, apiKeyHash: String? = nil, expiresAt: Timestamp? = nil) {
        self.userID = userID
        self.tenantID = tenantID
        self.role = role
        self.name = name
        self.apiKeyHash = apiKeyHash
        self.expiresAt = expiresAt
    }

    /// Whether this principal may see and use entities of `tenant`.
    public func belongs(to tenant: TenantID) -> Bool {
        role == .platformOperator || tenantID == tenant
    }

    /// Whether this principal administers `tenant` (operator, or that tenant's admin).
    public func administers(_ tenant: TenantID) -> Bool {
        role == .platformOperator || (role == .tenantAdmin && tenantID == tenant)
    }

    /// Whether this principal may read everything of `tenant` (licenses, every session): its
    /// administrators and its service accounts.
    public func reads(_ tenant: TenantID) -> Bool {
        administers(tenant) || (role == .service && tenantID == tenant)
    }

    /// Whether this principal is a platform operator.
    public var isOperator: Bool { role == .platformOperator }
}
