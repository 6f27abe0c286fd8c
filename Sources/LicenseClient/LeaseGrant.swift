import LicenseCore

/// A seat held by this machine: the session, its server-signed lease token (already verified),
/// and the times that govern it. All times are server times.
public struct LeaseGrant: Hashable, Sendable {
    /// The license the seat belongs to.
    public var licenseID: String
    /// The session the server keeps for this seat.
    public var sessionID: String
    /// The compact JWS lease token.
    public var token: String
    /// The token's verified claims.
    public var claims: LeaseClaims
    /// The seat is held until then unless renewed.
    public var leaseExpiresAt: Timestamp
    /// When the next heartbeat is due.
    public var nextHeartbeatAt: Timestamp
    /// The heartbeat interval of the license.
    public var heartbeatInterval: Duration
    /// Whether the server returned an existing session (an idempotent retry, or the same user on
    /// the same machine).
    public var resumed: Bool

    /// The offline grace horizon: the token's expiry. Without a successful heartbeat the client
    /// stops being licensed then.
    public var graceUntil: Timestamp { Timestamp(millisecondsSinceEpoch: claims.expiresAt * 1000) }

    /// The license's features.
    public var features: [String] { claims.features }
}
