/// Who holds (or asks for) a seat; used to recognise a retried acquire.
public struct SeatHolder: Hashable, Sendable {
    public var userID: UserID
    public var hardwareID: String
    /// The client's idempotency key; empty when the client sent none.
    public var idempotencyKey: String

    public init(userID: UserID, hardwareID: String, idempotencyKey: String) {
        self.userID = userID
        self.hardwareID = hardwareID
        self.idempotencyKey = idempotencyKey
    }
}

/// A seat held until `expiresAt` by session `sessionID`.
public struct SeatLease: Hashable, Sendable {
    public var sessionID: SessionID
    public var expiresAt: Timestamp

    public init(sessionID: SessionID, expiresAt: Timestamp) {
        self.sessionID = sessionID
        self.expiresAt = expiresAt
    }
}

/// A request to claim one seat of a license.
public struct SeatClaimRequest: Hashable, Sendable {
    public var licenseID: LicenseID
    /// The id the new session gets if a seat is granted.
    public var sessionID: SessionID
    public var holder: SeatHolder
    /// The license's seat count at the time of the call.
    public var seatLimit: Int
    public var leaseTTL: Duration

    public init(licenseID: LicenseID, sessionID: SessionID, holder: SeatHolder, seatLimit: Int, leaseTTL: Duration) {
        self.licenseID = licenseID
        self.sessionID = sessionID
        self.holder = holder
        self.seatLimit = seatLimit
        self.leaseTTL = leaseTTL
    }
}

/// What a claim did.
public enum SeatClaimOutcome: Hashable, Sendable {
    /// A new seat was taken for the requested session id.
    case granted(SeatLease)
    /// The holder (same idempotency key, or same user on the same hardware) already had a live
    /// seat: its session is returned and its lease extended; no second seat is taken.
    case existing(SeatLease)
    /// Every seat is taken by live leases.
    case full(used: Int, limit: Int)
}

/// What a renewal did.
public enum SeatRenewOutcome: Hashable, Sendable {
    /// The live lease was extended.
    case renewed(SeatLease)
    /// The lease had lapsed; the limit check was re-run and a seat was free, so it was re-taken.
    case reclaimed(SeatLease)
    /// The lease had lapsed and every seat is taken.
    case noSeat(used: Int, limit: Int)
}

/// Live seat state: which sessions hold seats of which license until when.
///
/// Every operation is atomic per license: no read-then-write across calls. Implementations:
/// the in-process store (embedded default) and the Redis store (production). A conformance
/// suite runs against each.
public protocol SeatStore: Sendable {
    /// Claims a seat, or returns the holder's existing live seat.
    func claim(_ request: SeatClaimRequest) async throws -> SeatClaimOutcome

    /// Extends a live lease; for a lapsed one, re-runs the limit check before re-taking a seat.
    func renew(licenseID: LicenseID, sessionID: SessionID, holder: SeatHolder, seatLimit: Int, leaseTTL: Duration) async throws -> SeatRenewOutcome

    /// Frees the session's seat at once. Returns whether a live seat was freed.
    @discardableResult
    func release(licenseID: LicenseID, sessionID: SessionID) async throws -> Bool

    /// The live leases of a license.
    func leases(licenseID: LicenseID) async throws -> [SeatLease]
}
