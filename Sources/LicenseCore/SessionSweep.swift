/// What the session sweeper does to one license: the pure decision, from three reads made in
/// this order, so that no write racing the reads is mistaken for a fault.
///
/// 1. `before`: the license's live session rows.
/// 2. `handles`: its seat handles (pending ones included).
/// 3. `after`: its live session rows again.
///
/// - A row live in both reads with no handle has lost its seat (the lease lapsed, the claim was
///   never confirmed, Redis lost it): it is ended as lapsed. Its claim preceded its commit, so
///   a row already live at read 1 had its handle before read 2; one committed later is not in
///   `before` and waits for the next sweep.
/// - A confirmed handle with no live row at read 3 has no session (its end or its row was lost):
///   it is released. A handle is confirmed only after its row committed, so a handle confirmed
///   by read 2 has its row by read 3 unless that row has ended. Pending handles are left alone:
///   they are confirmed or lapse within seconds by themselves.
public struct SessionSweep: Hashable, Sendable {
    /// Live rows that hold no seat: to be ended as lapsed.
    public var lapsed: [LeaseSession]
    /// Confirmed handles without a live row: to be released.
    public var orphanHandles: [SessionID]

    public init(before: [LeaseSession], handles: [SeatLease], after: [LeaseSession]) {
        let held = Set(handles.map(\.sessionID))
        let liveAfter = Set(after.map(\.id))
        lapsed = before.filter { liveAfter.contains($0.id) && !held.contains($0.id) }.sorted { $0.id < $1.id }
        orphanHandles = handles.filter { !$0.isPending && !liveAfter.contains($0.sessionID) }.map(\.sessionID).sorted()
    }

    /// Whether there is nothing to do.
    public var isEmpty: Bool { lapsed.isEmpty && orphanHandles.isEmpty }
}

/// What one sweep over every license did.
public struct SweepReport: Hashable, Sendable {
    /// Licenses looked at.
    public var licenses = 0
    /// Session rows ended as lapsed because their seat was gone.
    public var lapsedSessions = 0
    /// Seat handles released because no live session row backed them.
    public var releasedHandles = 0
    /// Licenses whose sweep failed (a backend was unavailable); the next sweep tries again.
    public var failedLicenses = 0

    public init() {}
}
