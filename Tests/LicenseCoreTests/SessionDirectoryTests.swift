import LicenseCore
import LicenseEmbedded
import LicenseTokens
import Testing

/// Heartbeats served from the session directory, with two replicas sharing one repository and
/// one seat store (as two daemons share Postgres and Redis), and lease expiries written behind.
@Suite("Session directory and lease writer")
struct SessionDirectoryTests {
    let clock = ManualWallClock()
    let repository = InMemoryLicenseRepository()
    let seats: InProcessSeatStore
    let a: LicenseService
    let b: LicenseService
    let op = Principal(userID: "usr-op", tenantID: nil, role: .platformOperator, name: "op")

    init() throws {
        let keys = KeyRing(issuer: "test-issuer", current: try SigningKey.generate(.edDSA))
        seats = InProcessSeatStore(clock: clock)
        a = LicenseService(repository: repository, seats: seats, signer: keys, clock: clock)
        b = LicenseService(repository: repository, seats: seats, signer: keys, clock: clock)
    }

    func setUp(seats: Int = 1) async throws -> Principal {
        _ = try await a.createTenant(id: "acme", name: "acme", by: op)
        _ = try await a.createLicense(CreateLicenseCommand(id: "acme-pro", tenantID: "acme", name: "Pro", seats: seats), by: op)
        return try await a.createUser(CreateUserCommand(tenantID: "acme", name: "ann", role: "user"), by: op).user.principal
    }

    func expectError(_ reason: LicenseError.Reason, _ body: () async throws -> Void) async {
        do {
            try await body()
            Issue.record("expected \(reason)")
        } catch let error as LicenseError {
            #expect(error.reason == reason, "\(error.message)")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func aSessionEndedThroughAnotherReplicaStaysEnded() async throws {
        let user = try await setUp()
        let lease = try await a.acquire(AcquireCommand(licenseID: "acme-pro", hardwareID: "hw"), by: user)
        #expect(a.directory.session(lease.sessionID) != nil)
        _ = try await b.heartbeat(session: lease.sessionID.rawValue, clientTokenExpiry: nil, by: user)
        #expect(b.directory.session(lease.sessionID) != nil, "b learned the session from its row")

        try await a.release(session: lease.sessionID.rawValue, by: user)
        #expect(a.directory.session(lease.sessionID) == nil)
        await expectError(.sessionEnded) { _ = try await b.heartbeat(session: lease.sessionID.rawValue, clientTokenExpiry: nil, by: user) }
        #expect(await seats.leases(licenseID: "acme-pro").isEmpty, "the ended session did not take its seat back")
        #expect(b.directory.session(lease.sessionID) == nil)

        let second = try await a.acquire(AcquireCommand(licenseID: "acme-pro", hardwareID: "hw2"), by: user)
        _ = try await b.heartbeat(session: second.sessionID.rawValue, clientTokenExpiry: nil, by: user)
        _ = try await a.revoke(session: second.sessionID.rawValue, by: op)
        await expectError(.sessionRevoked) { _ = try await b.heartbeat(session: second.sessionID.rawValue, clientTokenExpiry: nil, by: user) }
        #expect(await seats.leases(licenseID: "acme-pro").isEmpty)
        // Releasing what another replica ended succeeds and writes nothing more.
        let audits = try await repository.auditEvents(AuditQuery(limit: 100)).count
        try await b.release(session: second.sessionID.rawValue, by: user)
        #expect(try await repository.auditEvents(AuditQuery(limit: 100)).count == audits)
    }

    @Test func aHeartbeatThatRetookTheSeatWhileItsSessionEndedLosesItAgain() async throws {
        let user = try await setUp()
        let lease = try await a.acquire(AcquireCommand(licenseID: "acme-pro", hardwareID: "hw"), by: user)
        _ = try await b.heartbeat(session: lease.sessionID.rawValue, clientTokenExpiry: nil, by: user)
        // A's release has let the seat go but not yet ended the row when b's heartbeat arrives:
        // the row still looks live, so b takes the seat again.
        _ = await seats.release(licenseID: "acme-pro", sessionID: lease.sessionID)
        _ = try await b.heartbeat(session: lease.sessionID.rawValue, clientTokenExpiry: nil, by: user)
        #expect(await seats.leases(licenseID: "acme-pro").count == 1)
        // A's release completes: the row ends and the seat is released a second time.
        try await a.release(session: lease.sessionID.rawValue, by: user)
        #expect(await seats.leases(licenseID: "acme-pro").isEmpty)
        await expectError(.sessionEnded) { _ = try await b.heartbeat(session: lease.sessionID.rawValue, clientTokenExpiry: nil, by: user) }
        #expect(await seats.leases(licenseID: "acme-pro").isEmpty)
    }

    @Test func aLapsedSessionIsReclaimedOrEndedAsBefore() async throws {
        let user = try await setUp()
        let other = try await a.createUser(CreateUserCommand(tenantID: "acme", name: "bob", role: "user"), by: op).user.principal
        let lease = try await a.acquire(AcquireCommand(licenseID: "acme-pro", hardwareID: "hw"), by: user)
        clock.advance(by: .seconds(400))
        // Lapsed with the seat free: the directory's session is renewed after the row is checked.
        _ = try await a.heartbeat(session: lease.sessionID.rawValue, clientTokenExpiry: nil, by: user)
        clock.advance(by: .seconds(400))
        _ = try await a.acquire(AcquireCommand(licenseID: "acme-pro", hardwareID: "hw-bob"), by: other)
        await expectError(.leaseLapsed) { _ = try await a.heartbeat(session: lease.sessionID.rawValue, clientTokenExpiry: nil, by: user) }
        #expect(try await repository.session(lease.sessionID)?.endReason == .lapsed)
        await expectError(.sessionEnded) { _ = try await a.heartbeat(session: lease.sessionID.rawValue, clientTokenExpiry: nil, by: user) }
    }

    @Test func aFullDirectoryStartsOverAndStillServes() async throws {
        let directory = SessionDirectory(capacity: 2)
        let service = LicenseService(repository: repository, seats: seats, signer: a.signer, clock: clock, directory: directory)
        let user = try await setUp(seats: 3)
        var ids: [SessionID] = []
        for i in 0..<3 { ids.append(try await service.acquire(AcquireCommand(licenseID: "acme-pro", hardwareID: "hw\(i)"), by: user).sessionID) }
        #expect(directory.count == 1, "the third session emptied the full directory")
        for id in ids { _ = try await service.heartbeat(session: id.rawValue, clientTokenExpiry: nil, by: user) }
        #expect(directory.count <= 2)
    }

    /// Each statement of a flush holds its rows' locks until it commits, and ending one of those
    /// sessions waits for it: a flush writes at most 100 expiries per statement by default.
    @Test func aFlushWritesAtMostAHundredExpiriesPerStatement() async throws {
        let recording = FailingRepository(inner: repository)
        let writer = LeaseWriteBehind(repository: recording, interval: .seconds(3_600))
        let expiry = clock.now().advanced(by: .seconds(360))
        for i in 0..<250 { writer.record(SessionID("ses-\(i)"), expiresAt: expiry) }
        try await writer.flush()
        #expect(recording.leaseWriteSizes.sorted() == [50, 100, 100])
        #expect(writer.pendingCount == 0)
    }

    @Test func leaseExpiriesAreWrittenBehindInBatches() async throws {
        let failing = FailingRepository(inner: repository)
        let writer = LeaseWriteBehind(repository: failing, interval: .seconds(3_600), batchSize: 2)
        let service = LicenseService(repository: repository, seats: seats, signer: a.signer, clock: clock, leaseWriter: writer)
        let user = try await setUp(seats: 3)
        var leases: [AcquireOutcome] = []
        for i in 0..<3 { leases.append(try await service.acquire(AcquireCommand(licenseID: "acme-pro", hardwareID: "hw\(i)"), by: user)) }
        clock.advance(by: .seconds(10))
        for lease in leases { _ = try await service.heartbeat(session: lease.sessionID.rawValue, clientTokenExpiry: nil, by: user) }
        let renewedTo = clock.now().advanced(by: .seconds(360))
        #expect(writer.pendingCount == 3)
        // The lag is how long the oldest unwritten expiry has waited.
        let later = ContinuousClock.now.advanced(by: .seconds(42))
        #expect(writer.lag(at: later) >= .seconds(42) && writer.lag(at: later) < .seconds(60), "\(writer.lag(at: later))")
        #expect(try await repository.session(leases[0].sessionID)?.leaseExpiresAt == leases[0].leaseExpiresAt, "not written before the flush")

        // An older expiry never replaces a newer one.
        writer.record(leases[0].sessionID, expiresAt: leases[0].leaseExpiresAt)
        failing.failSessionWrites(true)
        await #expect(throws: (any Error).self) { try await writer.flush() }
        #expect(writer.pendingCount == 3, "nothing written is lost")
        #expect(writer.lag(at: later) >= .seconds(42), "a failed flush leaves the lag growing")
        failing.failSessionWrites(false)

        // An ended session's row keeps its lease.
        try await service.release(session: leases[2].sessionID.rawValue, by: user)
        let ended = try await repository.session(leases[2].sessionID)?.leaseExpiresAt

        // stop() wakes run() at once (the interval is an hour); it flushes once more and returns.
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await writer.run() }
            writer.stop()
        }
        #expect(writer.pendingCount == 0)
        #expect(writer.lag(at: later) == .zero, "all written")
        #expect(try await repository.session(leases[0].sessionID)?.leaseExpiresAt == renewedTo)
        #expect(try await repository.session(leases[1].sessionID)?.leaseExpiresAt == renewedTo)
        #expect(try await repository.session(leases[2].sessionID)?.leaseExpiresAt == ended)
    }
}
