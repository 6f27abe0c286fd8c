import LicenseCore

/// The embedded default's seat store: live seats in this process's memory.
///
/// Each license's state is changed by one actor step per call, so a claim is atomic exactly as
/// the Redis store's Lua script is. Lapsed leases are dropped lazily on the next call that
/// touches their license. Nothing survives a restart: the server rebuilds seats from the
/// repository's live sessions on start.
public actor InProcessSeatStore: SeatStore {
    private struct Claim {
        var holder: SeatHolder
        var expiresAt: Timestamp
    }

    private struct Seats {
        var claims: [SessionID: Claim] = [:]
        var byIdempotencyKey: [String: SessionID] = [:]
        var byMachine: [String: SessionID] = [:]
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

        mutating func insert(_ id: SessionID, _ claim: Claim) {
            claims[id] = claim
            if let key = Seats.idempotencyIndex(claim.holder) { byIdempotencyKey[key] = id }
            byMachine[Seats.machineIndex(claim.holder)] = id
            nextExpiry = min(nextExpiry, claim.expiresAt)
        }

        @discardableResult
        mutating func remove(_ id: SessionID) -> Bool {
            guard let claim = claims.removeValue(forKey: id) else { return false }
            if let key = Seats.idempotencyIndex(claim.holder), byIdempotencyKey[key] == id { byIdempotencyKey[key] = nil }
            let machine = Seats.machineIndex(claim.holder)
            if byMachine[machine] == id { byMachine[machine] = nil }
            return true
        }

        mutating func extend(_ id: SessionID, to expiry: Timestamp) {
            claims[id]?.expiresAt = expiry
            nextExpiry = min(nextExpiry, expiry)
        }

        func existing(for holder: SeatHolder) -> SessionID? {
            if let key = Seats.idempotencyIndex(holder), let id = byIdempotencyKey[key] { return id }
            return byMachine[Seats.machineIndex(holder)]
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
            if let id = seats.existing(for: request.holder) {
                seats.extend(id, to: expiry)
                return .existing(SeatLease(sessionID: id, expiresAt: expiry))
            }
            guard seats.claims.count < request.seatLimit else {
                return .full(used: seats.claims.count, limit: request.seatLimit)
            }
            seats.insert(request.sessionID, Claim(holder: request.holder, expiresAt: expiry))
            return .granted(SeatLease(sessionID: request.sessionID, expiresAt: expiry))
        }
    }

    public func renew(licenseID: LicenseID, sessionID: SessionID, holder: SeatHolder, seatLimit: Int, leaseTTL: Duration) -> SeatRenewOutcome {
        let now = clock.now()
        let expiry = now.advanced(by: leaseTTL)
        return withSeats(licenseID) { seats in
            seats.purge(now: now)
            if seats.claims[sessionID] != nil {
                seats.extend(sessionID, to: expiry)
                return .renewed(SeatLease(sessionID: sessionID, expiresAt: expiry))
            }
            guard seats.claims.count < seatLimit else { return .noSeat(used: seats.claims.count, limit: seatLimit) }
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
            return seats.claims.map { SeatLease(sessionID: $0.key, expiresAt: $0.value.expiresAt) }
        }.sorted { $0.sessionID < $1.sessionID }
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
            guard seats.claims[session.id] == nil, seats.claims.count < seatLimit else { return }
            seats.insert(session.id, Claim(holder: holder, expiresAt: session.leaseExpiresAt))
        }
    }
}
