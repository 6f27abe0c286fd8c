import LicenseCore

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
