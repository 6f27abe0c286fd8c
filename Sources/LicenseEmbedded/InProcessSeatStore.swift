import LicenseCore

/// The embedded default's seat store: live seats in this process's memory.
///
/// A seat is one user on one machine; each process on it holds its own handle (session), and
/// the seat is free again when its last handle is released or lapses.
///
/// Each license's state is changed by one actor step per call, so a claim is atomic exactly as
/// the Redis store's Lua script is. Lapsed leases are dropped lazily on the next call that
/// touches their license. Nothing survives a restart: the server rebuilds seats from the
/// repository's live sessions on start.
public actor InProcessSeatStore: SeatStore {
    private struct Claim {
        var holder: SeatHolder
        var expiresAt: Timestamp
        var isPending = false
    }

    /// One license's handles, and the seats (machines) they hold.
    private struct Seats {
        var claims: [SessionID: Claim] = [:]
        var byIdempotencyKey: [String: SessionID] = [:]
        /// Live handles per machine (user and hardware id): one entry per seat held.
        var machines: [String: Int] = [:]
        /// No claim expires before this instant; purging is skipped until then.
        var nextExpiry: Timestamp = Timestamp(millisecondsSinceEpoch: .max)

        mutating func purge(now: Timestamp) {
            guard now >= nextExpiry else { return }
            var next = Timestamp(millisecondsSinceEpoch: .max)
            for (id, claim) in claims {
                if claim.expiresAt <= now { remove(id) } else { next = min(next, claim.expiresAt) }
            }
            nextExpiry = next
        }

        /// Whether a new handle for `holder` fits: its machine holds a seat already, or one is free.
        func fits(_ holder: SeatHolder, limit: Int) -> Bool {
            machines[Seats.machineIndex(holder)] != nil || machines.count < limit
        }

        mutating func insert(_ id: SessionID, _ claim: Claim) {
            claims[id] = claim
            if let key = Seats.idempotencyIndex(claim.holder) { byIdempotencyKey[key] = id }
            machines[Seats.machineIndex(claim.holder), default: 0] += 1
            nextExpiry = min(nextExpiry, claim.expiresAt)
        }

        /// Removes a handle; the seat goes with its machine's last handle.
        @discardableResult
        mutating func remove(_ id: SessionID) -> Bool {
            guard let claim = claims.removeValue(forKey: id) else { return false }
            if let key = Seats.idempotencyIndex(claim.holder), byIdempotencyKey[key] == id { byIdempotencyKey[key] = nil }
            let machine = Seats.machineIndex(claim.holder)
            if let count = machines[machine], count > 1 { machines[machine] = count - 1 } else { machines[machine] = nil }
            return true
        }

        mutating func extend(_ id: SessionID, to expiry: Timestamp) {
            claims[id]?.expiresAt = expiry
            nextExpiry = min(nextExpiry, expiry)
        }

        /// The live handle a retry names by its idempotency key.
        func retried(by holder: SeatHolder) -> SessionID? {
            Seats.idempotencyIndex(holder).flatMap { byIdempotencyKey[$0] }
        }

        // Idempotency keys are scoped to the user, so one user's key never finds another's seat.
        static func idempotencyIndex(_ holder: SeatHolder) -> String? {
            holder.idempotencyKey.isEmpty ? nil : holder.userID.rawValue + "\u{1F}" + holder.idempotencyKey
        }

        static func machineIndex(_ holder: SeatHolder) -> String {
            holder.userID.rawValue + "\u{1F}" + holder.hardwareID
        }
    }

    private let clock: any WallClock
    private var licenses: [LicenseID: Seats] = [:]

    /// Creates an empty store reading time from `clock`.
    public init(clock: any WallClock = SystemWallClock()) {
        self.clock = clock
    }

    public func claim(_ request: SeatClaimRequest) -> SeatClaimOutcome {
        let now = clock.now()
        let expiry = now.advanced(by: request.leaseTTL)
        return withSeats(request.licenseID) { seats in
            seats.purge(now: now)
            if let id = seats.retried(by: request.holder), let claim = seats.claims[id] {
                // An unconfirmed handle is not extended: it lapses unless its session row commits.
                if claim.isPending { return .pending(SeatLease(sessionID: id, expiresAt: claim.expiresAt, isPending: true)) }
                seats.extend(id, to: expiry)
                return .existing(SeatLease(sessionID: id, expiresAt: expiry))
            }
            guard seats.fits(request.holder, limit: request.seatLimit) else {
                return .full(used: seats.machines.count, limit: request.seatLimit)
            }
            if let pendingTTL = request.pendingTTL {
                seats.insert(request.sessionID, Claim(holder: request.holder, expiresAt: now.advanced(by: pendingTTL), isPending: true))
                return .granted(SeatLease(sessionID: request.sessionID, expiresAt: expiry, isPending: true))
            }
            seats.insert(request.sessionID, Claim(holder: request.holder, expiresAt: expiry))
            return .granted(SeatLease(sessionID: request.sessionID, expiresAt: expiry))
        }
    }

    public func confirm(licenseID: LicenseID, sessionID: SessionID, leaseTTL: Duration) -> SeatLease? {
        guard licenses[licenseID] != nil else { return nil }
        let now = clock.now()
        let expiry = now.advanced(by: leaseTTL)
        return withSeats(licenseID) { seats in
            seats.purge(now: now)
            guard seats.claims[sessionID] != nil else { return nil }
            seats.claims[sessionID]?.isPending = false
            seats.extend(sessionID, to: expiry)
            return SeatLease(sessionID: sessionID, expiresAt: expiry)
        }
    }

    public func renew(licenseID: LicenseID, sessionID: SessionID, holder: SeatHolder, seatLimit: Int, leaseTTL: Duration) -> SeatRenewOutcome {
        let now = clock.now()
        let expiry = now.advanced(by: leaseTTL)
        return withSeats(licenseID) { seats in
            seats.purge(now: now)
            if seats.claims[sessionID] != nil {
                seats.claims[sessionID]?.isPending = false
                seats.extend(sessionID, to: expiry)
                return .renewed(SeatLease(sessionID: sessionID, expiresAt: expiry))
            }
            guard seats.fits(holder, limit: seatLimit) else { return .noSeat(used: seats.machines.count, limit: seatLimit) }
            seats.insert(sessionID, Claim(holder: holder, expiresAt: expiry))
            return .reclaimed(SeatLease(sessionID: sessionID, expiresAt: expiry))
        }
    }

    @discardableResult
    public func release(licenseID: LicenseID, sessionID: SessionID) -> Bool {
        guard licenses[licenseID] != nil else { return false }
        let now = clock.now()
        let removed = withSeats(licenseID) { seats in
            seats.purge(now: now)
            return seats.remove(sessionID)
        }
        if licenses[licenseID]?.claims.isEmpty == true { licenses[licenseID] = nil }
        return removed
    }

    public func leases(licenseID: LicenseID) -> [SeatLease] {
        guard licenses[licenseID] != nil else { return [] }
        let now = clock.now()
        return withSeats(licenseID) { seats in
            seats.purge(now: now)
            return seats.claims.map { SeatLease(sessionID: $0.key, expiresAt: $0.value.expiresAt, isPending: $0.value.isPending) }
        }.sorted { $0.sessionID < $1.sessionID }
    }

    public func ping() {}

    public func seatsInUse(licenseID: LicenseID) -> Int {
        guard licenses[licenseID] != nil else { return 0 }
        let now = clock.now()
        return withSeats(licenseID) { seats in
            seats.purge(now: now)
            return seats.machines.count
        }
    }

    /// Runs `body` on a license's seats in place. (Copying `Seats` out of the dictionary and
    /// back would copy its dictionaries on every call — O(seats) per call — because the copy in
    /// `licenses` still shares their storage when they are mutated.)
    private func withSeats<Result>(_ licenseID: LicenseID, _ body: (inout Seats) -> Result) -> Result {
        body(&licenses[licenseID, default: Seats()])
    }

    /// Re-creates a seat from a durable session row (used at start to rebuild the live state).
    /// Lapsed sessions and seats beyond the limit are not restored.
    public func restore(_ session: LeaseSession, seatLimit: Int) {
        let now = clock.now()
        guard session.isLive(at: now) else { return }
        let holder = SeatHolder(userID: session.userID, hardwareID: session.hardwareID, idempotencyKey: session.idempotencyKey)
        withSeats(session.licenseID) { seats in
            seats.purge(now: now)
            guard seats.claims[session.id] == nil, seats.fits(holder, limit: seatLimit) else { return }
            seats.insert(session.id, Claim(holder: holder, expiresAt: session.leaseExpiresAt))
        }
    }
}
