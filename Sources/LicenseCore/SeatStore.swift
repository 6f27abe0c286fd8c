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

/// A handle on a seat, held until `expiresAt` by session `sessionID`.
///
/// A seat is one user on one machine (user id and hardware id). Every process holding it has its
/// own handle (its own session and lease); the seat counts once against the license's limit and
/// is free again when its last handle is released or lapses.
///
/// A handle claimed for a session whose row is not committed yet is *pending*: it holds its seat
/// only briefly (the claim's `pendingTTL`) unless `confirm` is called once the row commits, so
/// a claim whose caller died or gave up frees its seat within seconds, not a lease TTL.
public struct SeatLease: Hashable, Sendable {
    public var sessionID: SessionID
    public var expiresAt: Timestamp
    /// Whether the handle awaits confirmation (its session row was not known to be committed).
    public var isPending: Bool

    public init(sessionID: SessionID, expiresAt: Timestamp, isPending: Bool = false) {
        self.sessionID = sessionID
        self.expiresAt = expiresAt
        self.isPending = isPending
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
    /// How long a new handle holds its seat unconfirmed: `confirm` must follow within this, or
    /// the handle lapses. `nil` makes the handle confirmed at once (for a caller that records
    /// no session row).
    public var pendingTTL: Duration?

    public init(licenseID: LicenseID, sessionID: SessionID, holder: SeatHolder, seatLimit: Int, leaseTTL: Duration, pendingTTL: Duration? = nil) {
        self.licenseID = licenseID
        self.sessionID = sessionID
        self.holder = holder
        self.seatLimit = seatLimit
        self.leaseTTL = leaseTTL
        self.pendingTTL = pendingTTL
    }
}

/// What a claim did.
public enum SeatClaimOutcome: Hashable, Sendable {
    /// A new handle was made for the requested session id: on the seat the user already holds
    /// on this machine, or on a newly taken seat. `expiresAt` is the lease's expiry once the
    /// handle is confirmed; with a `pendingTTL` the handle is pending until then.
    case granted(SeatLease)
    /// A retry: the holder's idempotency key already names a live, confirmed handle, whose
    /// session is returned and whose lease is extended; nothing new is made.
    case existing(SeatLease)
    /// A retry whose idempotency key names a handle still pending confirmation (an earlier
    /// attempt's session row may or may not commit): nothing was changed.
    case pending(SeatLease)
    /// Every seat is taken by live leases.
    case full(used: Int, limit: Int)
}

/// What a renewal did.
public enum SeatRenewOutcome: Hashable, Sendable {
    /// The live lease was extended.
    case renewed(SeatLease)
    /// The handle had lapsed; its machine still held the seat through another handle, or the
    /// limit check was re-run and a seat was free, so the handle was made again.
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
    /// Makes a handle on the holder's seat (taking the seat if the machine holds none and one is
    /// free), or returns the live handle its idempotency key names.
    func claim(_ request: SeatClaimRequest) async throws -> SeatClaimOutcome

    /// Marks a pending handle confirmed (its session row has committed) and holds it for
    /// `leaseTTL` from now. Confirming a confirmed handle extends it. Returns `nil` when the
    /// handle is gone (it lapsed or was released), and then changes nothing.
    func confirm(licenseID: LicenseID, sessionID: SessionID, leaseTTL: Duration) async throws -> SeatLease?

    /// Extends a live handle's lease (confirming it if it was pending: only recorded sessions
    /// are renewed); for a lapsed one, re-runs the limit check before making it
    /// again (no check is needed while the machine still holds the seat).
    func renew(licenseID: LicenseID, sessionID: SessionID, holder: SeatHolder, seatLimit: Int, leaseTTL: Duration) async throws -> SeatRenewOutcome

    /// Ends the session's handle at once; the seat is freed with its last handle. Returns
    /// whether a live handle was ended. Other handles on the same seat are untouched.
    @discardableResult
    func release(licenseID: LicenseID, sessionID: SessionID) async throws -> Bool

    /// The live handles of a license, pending ones included (`isPending`).
    func leases(licenseID: LicenseID) async throws -> [SeatLease]

    /// How many seats of a license are held: machines with at least one live handle.
    func seatsInUse(licenseID: LicenseID) async throws -> Int

    /// Succeeds when the store answers (readiness checks); throws when it cannot be reached.
    func ping() async throws
}
