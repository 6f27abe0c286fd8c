import BackendTestSupport
import LicenseCore
import LicenseRedis
import LicenseEmbedded
import Testing

/// The behaviour every `SeatStore` must have. Each backend adds itself to `backends`.
@Suite("SeatStore conformance")
struct SeatStoreConformanceTests {
    struct Backend: CustomStringConvertible, Sendable {
        var description: String
        var make: @Sendable (ManualWallClock) async throws -> any SeatStore
    }

    static let backends: [Backend] = [
        Backend(description: "in-process") { InProcessSeatStore(clock: $0) },
        // The same Lua script production runs, with the test's clock passed in instead of Redis's TIME.
        Backend(description: "redis") { clock in
            var configuration = try await SharedRedis.server().configuration
            configuration.keyPrefix = "t\(UInt64.random(in: 0...UInt64.max)):"
            return RedisSeatStore(client: RedisClient(configuration: configuration), seedSource: EmptySeatSeedSource(), clock: clock)
        },
    ]

    let license = LicenseID("lic-1")
    let ttl = Duration.seconds(360)

    func holder(_ user: String, _ hw: String = "hw-1", key: String = "") -> SeatHolder {
        SeatHolder(userID: UserID(user), hardwareID: hw, idempotencyKey: key)
    }

    func claim(_ store: any SeatStore, _ session: String, _ holder: SeatHolder, limit: Int = 2) async throws -> SeatClaimOutcome {
        try await store.claim(SeatClaimRequest(licenseID: license, sessionID: SessionID(session), holder: holder, seatLimit: limit, leaseTTL: ttl))
    }

    @Test(arguments: backends)
    func grantsUpToTheLimitThenRefuses(_ backend: Backend) async throws {
        let clock = ManualWallClock()
        let store = try await backend.make(clock)
        let expiry = clock.now().advanced(by: ttl)
        #expect(try await claim(store, "s1", holder("u1")) == .granted(SeatLease(sessionID: "s1", expiresAt: expiry)))
        #expect(try await claim(store, "s2", holder("u2")) == .granted(SeatLease(sessionID: "s2", expiresAt: expiry)))
        #expect(try await claim(store, "s3", holder("u3")) == .full(used: 2, limit: 2))
        #expect(try await store.leases(licenseID: license).map(\.sessionID) == ["s1", "s2"])
        #expect(try await store.seatsInUse(licenseID: license) == 2)
    }

    @Test(arguments: backends)
    func sameIdempotencyKeyReturnsTheSameSeat(_ backend: Backend) async throws {
        let clock = ManualWallClock()
        let store = try await backend.make(clock)
        _ = try await claim(store, "s1", holder("u1", "hw-a", key: "k1"))
        clock.advance(by: .seconds(10))
        let again = try await claim(store, "s9", holder("u1", "hw-b", key: "k1"))
        #expect(again == .existing(SeatLease(sessionID: "s1", expiresAt: clock.now().advanced(by: ttl))))
        #expect(try await store.leases(licenseID: license).count == 1)
    }

    @Test(arguments: backends)
    func processesOfOneUserOnOneMachineShareOneSeatWithTheirOwnHandles(_ backend: Backend) async throws {
        let clock = ManualWallClock()
        let store = try await backend.make(clock)
        let expiry = clock.now().advanced(by: ttl)
        #expect(try await claim(store, "s1", holder("u1", "hw-a", key: "k1"), limit: 1) == .granted(SeatLease(sessionID: "s1", expiresAt: expiry)))
        // A second process of the same user on the same machine: its own session, no second seat.
        #expect(try await claim(store, "s2", holder("u1", "hw-a", key: "k2"), limit: 1) == .granted(SeatLease(sessionID: "s2", expiresAt: expiry)))
        #expect(try await claim(store, "s3", holder("u1", "hw-a"), limit: 1) == .granted(SeatLease(sessionID: "s3", expiresAt: expiry)))
        #expect(try await store.seatsInUse(licenseID: license) == 1)
        #expect(try await store.leases(licenseID: license).map(\.sessionID) == ["s1", "s2", "s3"])
        // The same user on another machine, or another user, needs a seat of its own.
        #expect(try await claim(store, "s4", holder("u1", "hw-b"), limit: 1) == .full(used: 1, limit: 1))
        #expect(try await claim(store, "s5", holder("u2", "hw-a"), limit: 1) == .full(used: 1, limit: 1))
    }

    @Test(arguments: backends)
    func aReleaseEndsOnlyItsOwnHandleAndTheLastOneFreesTheSeat(_ backend: Backend) async throws {
        let clock = ManualWallClock()
        let store = try await backend.make(clock)
        _ = try await claim(store, "s1", holder("u1", "hw-a", key: "k1"), limit: 1)
        _ = try await claim(store, "s2", holder("u1", "hw-a", key: "k2"), limit: 1)
        #expect(try await store.release(licenseID: license, sessionID: "s1"))
        #expect(try await store.seatsInUse(licenseID: license) == 1)
        let renewed = try await store.renew(licenseID: license, sessionID: "s2", holder: holder("u1", "hw-a", key: "k2"), seatLimit: 1, leaseTTL: ttl)
        #expect(renewed == .renewed(SeatLease(sessionID: "s2", expiresAt: clock.now().advanced(by: ttl))))
        #expect(try await claim(store, "s3", holder("u2"), limit: 1) == .full(used: 1, limit: 1))
        // The retry key of the ended handle no longer finds anything: a retry gets a new handle.
        #expect(try await claim(store, "s4", holder("u1", "hw-a", key: "k1"), limit: 1) == .granted(SeatLease(sessionID: "s4", expiresAt: clock.now().advanced(by: ttl))))
        #expect(try await store.release(licenseID: license, sessionID: "s2"))
        #expect(try await store.release(licenseID: license, sessionID: "s4"))
        #expect(try await store.seatsInUse(licenseID: license) == 0)
        guard case .granted = try await claim(store, "s5", holder("u2"), limit: 1) else {
            Issue.record("the seat should be free once its last handle is released")
            return
        }
    }

    @Test(arguments: backends)
    func theSeatLastsUntilItsLastHandleLapses(_ backend: Backend) async throws {
        let clock = ManualWallClock()
        let store = try await backend.make(clock)
        _ = try await claim(store, "s1", holder("u1", "hw-a", key: "k1"), limit: 1)
        clock.advance(by: .seconds(200))
        _ = try await claim(store, "s2", holder("u1", "hw-a", key: "k2"), limit: 1)
        clock.advance(by: .seconds(160))  // s1 has lapsed, s2 has not
        #expect(try await store.leases(licenseID: license).map(\.sessionID) == ["s2"])
        #expect(try await store.seatsInUse(licenseID: license) == 1)
        #expect(try await claim(store, "s3", holder("u2"), limit: 1) == .full(used: 1, limit: 1))
        // The lapsed handle comes back on the seat its machine still holds, although the license is full.
        let back = try await store.renew(licenseID: license, sessionID: "s1", holder: holder("u1", "hw-a", key: "k1"), seatLimit: 1, leaseTTL: ttl)
        #expect(back == .reclaimed(SeatLease(sessionID: "s1", expiresAt: clock.now().advanced(by: ttl))))
        #expect(try await store.seatsInUse(licenseID: license) == 1)
        clock.advance(by: ttl)
        #expect(try await store.seatsInUse(licenseID: license) == 0)
        #expect(try await store.leases(licenseID: license).isEmpty)
    }

    @Test(arguments: backends)
    func idempotencyKeysAreScopedToTheUser(_ backend: Backend) async throws {
        let store = try await backend.make(ManualWallClock())
        _ = try await claim(store, "s1", holder("u1", "hw-a", key: "shared"))
        guard case .granted(let lease) = try await claim(store, "s2", holder("u2", "hw-b", key: "shared")) else {
            Issue.record("another user's key must not find the first user's seat")
            return
        }
        #expect(lease.sessionID == "s2")
    }

    @Test(arguments: backends)
    func aLapsedLeaseFreesItsSeat(_ backend: Backend) async throws {
        let clock = ManualWallClock()
        let store = try await backend.make(clock)
        _ = try await claim(store, "s1", holder("u1"), limit: 1)
        #expect(try await claim(store, "s2", holder("u2"), limit: 1) == .full(used: 1, limit: 1))
        clock.advance(by: ttl)
        #expect(try await store.leases(licenseID: license).isEmpty)
        guard case .granted = try await claim(store, "s2", holder("u2"), limit: 1) else {
            Issue.record("the lapsed seat should be free")
            return
        }
    }

    @Test(arguments: backends)
    func renewExtendsALiveLease(_ backend: Backend) async throws {
        let clock = ManualWallClock()
        let store = try await backend.make(clock)
        _ = try await claim(store, "s1", holder("u1"), limit: 1)
        clock.advance(by: .seconds(300))
        let outcome = try await store.renew(licenseID: license, sessionID: "s1", holder: holder("u1"), seatLimit: 1, leaseTTL: ttl)
        #expect(outcome == .renewed(SeatLease(sessionID: "s1", expiresAt: clock.now().advanced(by: ttl))))
        clock.advance(by: .seconds(300))
        #expect(try await store.leases(licenseID: license).map(\.sessionID) == ["s1"])
    }

    @Test(arguments: backends)
    func renewOfALapsedLeaseRerunsTheLimitCheck(_ backend: Backend) async throws {
        let clock = ManualWallClock()
        let store = try await backend.make(clock)
        _ = try await claim(store, "s1", holder("u1"), limit: 1)
        clock.advance(by: .seconds(400))
        // Nobody took the seat: it is re-taken.
        let reclaimed = try await store.renew(licenseID: license, sessionID: "s1", holder: holder("u1"), seatLimit: 1, leaseTTL: ttl)
        #expect(reclaimed == .reclaimed(SeatLease(sessionID: "s1", expiresAt: clock.now().advanced(by: ttl))))
        clock.advance(by: .seconds(400))
        _ = try await claim(store, "s2", holder("u2"), limit: 1)
        // Someone took it: the lapsed session does not get a second seat.
        let refused = try await store.renew(licenseID: license, sessionID: "s1", holder: holder("u1"), seatLimit: 1, leaseTTL: ttl)
        #expect(refused == .noSeat(used: 1, limit: 1))
        #expect(try await store.leases(licenseID: license).map(\.sessionID) == ["s2"])
    }

    @Test(arguments: backends)
    func releaseFreesTheSeatAtOnce(_ backend: Backend) async throws {
        let store = try await backend.make(ManualWallClock())
        _ = try await claim(store, "s1", holder("u1"), limit: 1)
        #expect(try await store.release(licenseID: license, sessionID: "s1"))
        #expect(try await !store.release(licenseID: license, sessionID: "s1"))
        guard case .granted = try await claim(store, "s2", holder("u2"), limit: 1) else {
            Issue.record("a released seat should be free")
            return
        }
    }

    @Test(arguments: backends)
    func concurrentClaimsNeverExceedTheLimit(_ backend: Backend) async throws {
        let store = try await backend.make(ManualWallClock())
        let license = self.license
        let ttl = self.ttl
        let granted = try await withThrowingTaskGroup(of: Bool.self) { group in
            for i in 0..<200 {
                group.addTask {
                    let outcome = try await store.claim(SeatClaimRequest(
                        licenseID: license, sessionID: SessionID("s\(i)"),
                        holder: SeatHolder(userID: UserID("u\(i)"), hardwareID: "hw", idempotencyKey: "k\(i)"),
                        seatLimit: 10, leaseTTL: ttl))
                    if case .granted = outcome { return true }
                    return false
                }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(granted == 10)
        #expect(try await store.leases(licenseID: license).count == 10)
    }

    // MARK: Pending claims

    func pendingClaim(_ store: any SeatStore, _ session: String, _ holder: SeatHolder, limit: Int = 2) async throws -> SeatClaimOutcome {
        try await store.claim(SeatClaimRequest(licenseID: license, sessionID: SessionID(session), holder: holder, seatLimit: limit, leaseTTL: ttl, pendingTTL: .seconds(7)))
    }

    @Test(arguments: backends)
    func anUnconfirmedClaimHoldsItsSeatOnlyForThePendingTTL(_ backend: Backend) async throws {
        let clock = ManualWallClock()
        let store = try await backend.make(clock)
        let granted = try await pendingClaim(store, "s1", holder("u1", key: "k1"), limit: 1)
        #expect(granted == .granted(SeatLease(sessionID: "s1", expiresAt: clock.now().advanced(by: ttl), isPending: true)))
        #expect(try await store.leases(licenseID: license) == [SeatLease(sessionID: "s1", expiresAt: clock.now().advanced(by: .seconds(7)), isPending: true)])
        // The seat is taken while the claim waits for its row.
        #expect(try await claim(store, "s2", holder("u2"), limit: 1) == .full(used: 1, limit: 1))
        // Nobody confirms it (the daemon died, or gave up): it lapses with the pending TTL.
        clock.advance(by: .seconds(7))
        #expect(try await store.leases(licenseID: license).isEmpty)
        #expect(try await store.confirm(licenseID: license, sessionID: "s1", leaseTTL: ttl) == nil)
        guard case .granted = try await claim(store, "s2", holder("u2"), limit: 1) else {
            Issue.record("the unconfirmed claim's seat should be free")
            return
        }
    }

    @Test(arguments: backends)
    func aConfirmedClaimHoldsTheFullLease(_ backend: Backend) async throws {
        let clock = ManualWallClock()
        let store = try await backend.make(clock)
        _ = try await pendingClaim(store, "s1", holder("u1", key: "k1"), limit: 1)
        clock.advance(by: .seconds(2))
        let confirmed = try await store.confirm(licenseID: license, sessionID: "s1", leaseTTL: ttl)
        #expect(confirmed == SeatLease(sessionID: "s1", expiresAt: clock.now().advanced(by: ttl)))
        clock.advance(by: .seconds(300))
        #expect(try await store.leases(licenseID: license) == [SeatLease(sessionID: "s1", expiresAt: clock.now().advanced(by: .seconds(60)))])
        // A retry with its key now resumes it (and extends it).
        #expect(try await pendingClaim(store, "s9", holder("u1", key: "k1"), limit: 1) == .existing(SeatLease(sessionID: "s1", expiresAt: clock.now().advanced(by: ttl))))
    }

    @Test(arguments: backends)
    func aRetryOfAnUnconfirmedClaimChangesNothing(_ backend: Backend) async throws {
        let clock = ManualWallClock()
        let store = try await backend.make(clock)
        let pendingUntil = clock.now().advanced(by: .seconds(7))
        _ = try await pendingClaim(store, "s1", holder("u1", key: "k1"), limit: 2)
        clock.advance(by: .seconds(3))
        // The earlier attempt may yet commit: the retry learns of it, extends nothing, takes no second seat.
        #expect(try await pendingClaim(store, "s2", holder("u1", key: "k1"), limit: 2) == .pending(SeatLease(sessionID: "s1", expiresAt: pendingUntil, isPending: true)))
        #expect(try await store.seatsInUse(licenseID: license) == 1)
        clock.advance(by: .seconds(4))
        // Lapsed: the retry gets a claim of its own.
        #expect(try await pendingClaim(store, "s2", holder("u1", key: "k1"), limit: 2) == .granted(SeatLease(sessionID: "s2", expiresAt: clock.now().advanced(by: ttl), isPending: true)))
    }

    @Test(arguments: backends)
    func aRenewConfirmsAPendingHandle(_ backend: Backend) async throws {
        let clock = ManualWallClock()
        let store = try await backend.make(clock)
        _ = try await pendingClaim(store, "s1", holder("u1"), limit: 1)
        let renewed = try await store.renew(licenseID: license, sessionID: "s1", holder: holder("u1"), seatLimit: 1, leaseTTL: ttl)
        #expect(renewed == .renewed(SeatLease(sessionID: "s1", expiresAt: clock.now().advanced(by: ttl))))
        #expect(try await store.leases(licenseID: license).map(\.isPending) == [false])
        clock.advance(by: .seconds(10))
        #expect(try await store.seatsInUse(licenseID: license) == 1)
    }

    @Test(arguments: backends)
    func concurrentConfirmsEachGetTheirOwnAnswer(_ backend: Backend) async throws {
        let clock = ManualWallClock()
        let store = try await backend.make(clock)
        for i in 0..<20 { _ = try await pendingClaim(store, "s\(i)", holder("u\(i)"), limit: 30) }
        let ids = (0..<20).map { SessionID("s\($0)") } + ["never-claimed"]
        let license = self.license
        let ttl = self.ttl
        let confirmed = try await withThrowingTaskGroup(of: (SessionID, SeatLease?).self) { group in
            for id in ids { group.addTask { (id, try await store.confirm(licenseID: license, sessionID: id, leaseTTL: ttl)) } }
            return try await group.reduce(into: [SessionID: SeatLease?]()) { $0[$1.0] = $1.1 }
        }
        for id in ids.dropLast() { #expect(confirmed[id] == SeatLease(sessionID: id, expiresAt: clock.now().advanced(by: ttl)), "\(id)") }
        #expect(confirmed["never-claimed"] == .some(nil))
        #expect(try await store.leases(licenseID: license).allSatisfy { !$0.isPending })
    }
}
