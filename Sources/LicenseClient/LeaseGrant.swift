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

/// What happened to a lease, in order, on ``Lease/events``.
public enum LeaseEvent: Hashable, Sendable {
    /// The seat was granted.
    case acquired(LeaseGrant)
    /// A heartbeat succeeded (also the first one after the server was unreachable).
    case renewed(LeaseGrant)
    /// The lease had lapsed while the server was unreachable and was acquired again.
    case reacquired(LeaseGrant)
    /// The server cannot be reached; the client stays licensed until `graceUntil` (server time).
    case serverUnreachable(graceUntil: Timestamp, error: LicenseCallError)
    /// The wall clock reads earlier than time already seen; grace is measured without it.
    case clockTurnedBack
    /// The grace period ended without the server confirming the lease. The lease is over.
    case graceExpired
    /// An administrator revoked the session. The lease is over.
    case revoked
    /// The server refused to continue the lease (e.g. no seat left after it lapsed, license
    /// suspended or expired). The lease is over.
    case lost(LicenseCallError)
    /// The seat was given back.
    case released
}
