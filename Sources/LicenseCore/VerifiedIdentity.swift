/// The facts a verified OIDC ID token establishes about the person signing in.
public struct VerifiedIdentity: Hashable, Sendable {
    /// `iss` and `sub`: the account at the identity provider.
    public var account: ExternalIdentity
    /// `email`, lowercased, when present.
    public var email: String?
    /// `email_verified`: whether the provider vouches for `email`.
    public var emailVerified: Bool
    /// The identity provider's tenant (Identity Platform's `firebase.tenant`), when present.
    public var identityTenant: String?
    /// `name`, when present, for a user created on first sign-in.
    public var displayName: String?
    /// `exp`: when the token stops being valid.
    public var expiresAt: Timestamp

    public init(account: ExternalIdentity, email: String?, emailVerified: Bool, identityTenant: String?, displayName: String?, expiresAt: Timestamp) {
        self.account = account
        self.email = email
        self.emailVerified = emailVerified
        self.identityTenant = identityTenant
        self.displayName = displayName
        self.expiresAt = expiresAt
    }
}

/// Checks an OIDC ID token (signature, issuer, audience, times) and returns who it names.
public protocol IDTokenVerifying: Sendable {
    /// Returns the identity of a valid token, or throws `LicenseError` (`UNAUTHENTICATED`, or
    /// `UNAVAILABLE` when the issuer's keys cannot be fetched).
    func verify(_ token: String) async throws -> VerifiedIdentity
}
