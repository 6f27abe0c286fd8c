/// The claims of a lease token, signed by the server and verified offline by the client.
public struct LeaseClaims: Hashable, Sendable, Codable {
    /// `iss`: the server's issuer name.
    public var issuer: String
    /// `sub`: the user.
    public var userID: String
    /// `tid`: the tenant.
    public var tenantID: String
    /// `lic`: the license.
    public var licenseID: String
    /// `sid`: the session.
    public var sessionID: String
    /// `hwh`: base64url SHA-256 of the hardware id (the raw id never appears in a token).
    public var hardwareHash: String
    /// `features`: the license's features.
    public var features: [String]
    /// `iat`, seconds since the epoch.
    public var issuedAt: Int64
    /// `nbf`, seconds since the epoch.
    public var notBefore: Int64
    /// `exp`, seconds since the epoch: the offline grace horizon.
    public var expiresAt: Int64
    /// `jti`: a unique id of this token.
    public var tokenID: String

    enum CodingKeys: String, CodingKey {
        case issuer = "iss", userID = "sub", tenantID = "tid", licenseID = "lic", sessionID = "sid"
        case hardwareHash = "hwh", features, issuedAt = "iat", notBefore = "nbf", expiresAt = "exp", tokenID = "jti"
    }

    public init(issuer: String, userID: String, tenantID: String, licenseID: String, sessionID: String, hardwareHash: String, features: [String], issuedAt: Int64, notBefore: Int64, expiresAt: Int64, tokenID: String) {
        self.issuer = issuer
        self.userID = userID
        self.tenantID = tenantID
        self.licenseID = licenseID
        self.sessionID = sessionID
        self.hardwareHash = hardwareHash
        self.features = features
        self.issuedAt = issuedAt
        self.notBefore = notBefore
        self.expiresAt = expiresAt
        self.tokenID = tokenID
    }
}

/// Signs lease tokens and publishes the keys that verify them.
public protocol LeaseTokenSigner: Sendable {
    /// The `iss` claim this signer's tokens carry.
    var issuer: String { get }
    /// Signs the claims as a compact JWS. A signer whose key is elsewhere (an HSM, a KMS) must
    /// return promptly when its task is cancelled: the service signs under a deadline.
    func sign(_ claims: LeaseClaims) async throws -> String
    /// Whether signing happens in this process and cannot stall (a key in memory): the service
    /// then signs without a deadline, which costs two tasks and a timer per token.
    var signsInProcess: Bool { get }
    /// The current and retired public keys as an RFC 7517 JWKS document.
    func jwksJSON() -> String
    /// A new random key of `algorithm` (`nil`: the current key's), in the form the repository stores.
    func makeKey(algorithm: String?, at now: Timestamp) throws -> StoredSigningKey
    /// Adopts the repository's keys: the newest unretired key signs; retired keys stay
    /// published until their `publishUntil`.
    func load(_ keys: [StoredSigningKey], now: Timestamp) throws
}

extension LeaseTokenSigner {
    public var signsInProcess: Bool { false }
}
