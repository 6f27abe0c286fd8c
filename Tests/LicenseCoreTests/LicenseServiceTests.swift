import LicenseCore
import LicenseEmbedded
import LicenseTokens
import Testing

/// Seat semantics through the service, with an injected clock: no socket, no database, no sleep.
@Suite("LicenseService")
struct LicenseServiceTests {
    let clock = ManualWallClock()
    let repository = InMemoryLicenseRepository()
    let keys: KeyRing
    let service: LicenseService
    let op = Principal(userID: "usr-op", tenantID: nil, role: .platformOperator, name: "op")

    init() throws {
        keys = KeyRing(issuer: "test-issuer", current: try SigningKey.generate(.edDSA))
        service = LicenseService(repository: repository, seats: InProcessSeatStore(clock: clock), signer: keys, clock: clock,
                                 configuration: ServiceConfiguration(issuer: "test-issuer"))
    }

    /// A tenant with one license of `seats` seats and `users` users; returns the users' principals.
    func setUp(seats: Int, users: Int = 3, tenant: String = "acme") async throws -> [Principal] {
        _ = try await service.createTenant(id: tenant, name: tenant, by: op)
        _ = try await service.createLicense(CreateLicenseCommand(id: "\(tenant)-pro", tenantID: tenant, name: "Pro", seats: seats, features: ["ai"]), by: op)
        var principals: [Principal] = []
        for i in 0..<users {
            principals.append(try await service.createUser(CreateUserCommand(tenantID: tenant, name: "user\(i)", role: "user"), by: op).user.principal)
        }
        return principals
    }

    func acquire(_ principal: Principal, hw: String = "hw", key: String = "", license: String = "acme-pro") async throws -> AcquireOutcome {
        try await service.acquire(AcquireCommand(licenseID: license, hardwareID: hw + principal.userID.rawValue, idempotencyKey: key), by: principal)
    }

    func expectError(_ code: LicenseError.Code, _ reason: LicenseError.Reason, _ body: () async throws -> Void) async {
        do {
            try await body()
            Issue.record("expected \(code) \(reason)")
        } catch let error as LicenseError {
            #expect(error.code == code)
            #expect(error.reason == reason)
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func acquireHeartbeatRelease() async throws {
        let users = try await setUp(seats: 1)
        let lease = try await acquire(users[0])
        #expect(lease.leaseExpiresAt == clock.now().advanced(by: .seconds(360)))
        #expect(lease.tokenExpiresAt.millisecondsSinceEpoch == clock.now().advanced(by: .seconds(86_400)).millisecondsSinceEpoch)
        #expect(!lease.resumed)
        let claims = try LeaseTokenVerifier(keys: keys.verificationKeys, issuer: "test-issuer")
            .verify(lease.leaseToken, now: clock.now(), hardwareID: "hw" + users[0].userID.rawValue)
        #expect(claims.sessionID == lease.sessionID.rawValue)
        #expect(claims.licenseID == "acme-pro")
        #expect(claims.tenantID == "acme")
        #expect(claims.features == ["ai"])

        clock.advance(by: .seconds(300))
        let beat = try await service.heartbeat(session: lease.sessionID.rawValue, clientTokenExpiry: lease.tokenExpiresAt, by: users[0])
        #expect(beat.leaseExpiresAt == clock.now().advanced(by: .seconds(360)))
        #expect(beat.nextHeartbeatAt == clock.now().advanced(by: .seconds(300)))
        #expect(beat.leaseToken == nil, "a fresh token is not due after 5 minutes")

        try await service.release(session: lease.sessionID.rawValue, by: users[0])
        #expect(try await service.licenseStatus(tenant: nil, license: "acme-pro", by: op).first?.seatsUsed == 0)
        // Releasing twice is fine; a heartbeat after release is refused.
        try await service.release(session: lease.sessionID.rawValue, by: users[0])
        await expectError(.failedPrecondition, .sessionEnded) {
            _ = try await service.heartbeat(session: lease.sessionID.rawValue, clientTokenExpiry: nil, by: users[0])
        }
        // Another user gets the freed seat at once.
        _ = try await acquire(users[1])
    }

    @Test func seatsRunOutWithNoSeats() async throws {
        let users = try await setUp(seats: 2)
        _ = try await acquire(users[0])
        _ = try await acquire(users[1])
        await expectError(.resourceExhausted, .noSeats) { _ = try await acquire(users[2]) }
        #expect(try await service.licenseStatus(tenant: "acme", license: nil, by: op).first?.seatsUsed == 2)
    }

    @Test func retriedAcquireReturnsTheSameSession() async throws {
        let users = try await setUp(seats: 1)
        let first = try await acquire(users[0], key: "idem-1")
        clock.advance(by: .seconds(5))
        let retry = try await acquire(users[0], key: "idem-1")
        #expect(retry.sessionID == first.sessionID)
        #expect(retry.resumed)
        #expect(retry.leaseExpiresAt == clock.now().advanced(by: .seconds(360)))
        #expect(try await repository.sessions(license: "acme-pro", includeEnded: true).count == 1)
    }

    @Test func aLapsedLeaseIsReclaimedAndItsHeartbeatRerunsTheLimitCheck() async throws {
        let users = try await setUp(seats: 1)
        let crashed = try await acquire(users[0])
        await expectError(.resourceExhausted, .noSeats) { _ = try await acquire(users[1]) }
        clock.advance(by: .seconds(361))
        let next = try await acquire(users[1])
        #expect(next.sessionID != crashed.sessionID)
        await expectError(.resourceExhausted, .leaseLapsed) {
            _ = try await service.heartbeat(session: crashed.sessionID.rawValue, clientTokenExpiry: nil, by: users[0])
        }
        #expect(try await repository.session(crashed.sessionID)?.endReason == .lapsed)
    }

    @Test func aLapsedLeaseWithAFreeSeatIsRenewed() async throws {
        let users = try await setUp(seats: 1)
        let lease = try await acquire(users[0])
        clock.advance(by: .seconds(600))
        let beat = try await service.heartbeat(session: lease.sessionID.rawValue, clientTokenExpiry: nil, by: users[0])
        #expect(beat.leaseExpiresAt == clock.now().advanced(by: .seconds(360)))
        #expect(beat.leaseToken != nil, "a client that reports no token gets one")
    }

    @Test func tokensAreRefreshedOnceTheyHaveUsedTheirShare() async throws {
        let users = try await setUp(seats: 1)
        let lease = try await acquire(users[0])
        clock.advance(by: .seconds(3_700))
        let beat = try await service.heartbeat(session: lease.sessionID.rawValue, clientTokenExpiry: lease.tokenExpiresAt, by: users[0])
        let fresh = try #require(beat.tokenExpiresAt)
        #expect(fresh > lease.tokenExpiresAt)
    }

    @Test func anotherTenantsEntitiesAreNotFound() async throws {
        let acme = try await setUp(seats: 1)
        let globex = try await setUp(seats: 1, users: 1, tenant: "globex")
        await expectError(.notFound, .licenseUnknown) { _ = try await acquire(globex[0], license: "acme-pro") }
        let lease = try await acquire(acme[0])
        await expectError(.notFound, .sessionUnknown) {
            _ = try await service.heartbeat(session: lease.sessionID.rawValue, clientTokenExpiry: nil, by: globex[0])
        }
        await expectError(.notFound, .sessionUnknown) { try await service.release(session: lease.sessionID.rawValue, by: globex[0]) }
        await expectError(.notFound, .licenseUnknown) {
            _ = try await service.listSessions(license: "acme-pro", user: "", includeEnded: true, by: globex[0])
        }
        // A user of the same tenant may not touch a colleague's session either.
        await expectError(.notFound, .sessionUnknown) { try await service.release(session: lease.sessionID.rawValue, by: acme[1]) }
    }

    @Test func sessionPagesWalkEveryLicenseTheCallerMaySeeOnceEach() async throws {
        let acme = try await setUp(seats: 10, users: 4)
        let globex = try await setUp(seats: 10, users: 3, tenant: "globex")
        _ = try await service.createLicense(CreateLicenseCommand(id: "acme-lite", tenantID: "acme", name: "Lite", seats: 10), by: op)
        _ = try await service.createLicense(CreateLicenseCommand(id: "acme-empty", tenantID: "acme", name: "Empty", seats: 10), by: op)
        var expected: [String: Set<SessionID>] = [:]
        for (index, user) in (acme + globex).enumerated() {
            let license = user.tenantID == "acme" ? (index % 2 == 0 ? "acme-pro" : "acme-lite") : "globex-pro"
            let lease = try await acquire(user, license: license)
            expected[license, default: []].insert(lease.sessionID)
            clock.advance(by: .seconds(1))
        }
        func walk(as principal: Principal, size: Int) async throws -> [LeaseSession] {
            var all: [LeaseSession] = []
            var token = ""
            repeat {
                let page = try await service.listSessions(license: "", user: "", includeEnded: false, pageSize: size, pageToken: token, by: principal)
                #expect(page.items.count <= size)
                all += page.items
                token = page.hasMore ? PageToken.sessions(after: try #require(page.items.last)) : ""
            } while !token.isEmpty
            return all
        }
        let everything = try await walk(as: op, size: 3)
        // License by license in id order, each newest first, every session once.
        #expect(everything.map(\.licenseID.rawValue) == ["acme-lite", "acme-lite", "acme-pro", "acme-pro", "globex-pro", "globex-pro", "globex-pro"])
        #expect(Set(everything.map(\.id)) == expected.values.reduce(Set()) { $0.union($1) })
        for license in Set(everything.map(\.licenseID)) {
            let created = everything.filter { $0.licenseID == license }.map(\.createdAt)
            #expect(created == created.sorted(by: >))
        }
        // A tenant administrator walks only the tenant's licenses.
        let admin = try await service.createUser(CreateUserCommand(tenantID: "acme", name: "admin", role: "tenant_admin"), by: op).user.principal
        #expect(Set(try await walk(as: admin, size: 1).map(\.licenseID)) == ["acme-pro", "acme-lite"])
        // A plain user sees only their own.
        #expect(try await walk(as: acme[0], size: 2).map(\.userID) == [acme[0].userID])
        // A token from another list kind is refused.
        await expectError(.invalidArgument, .invalidRequest) {
            _ = try await service.listSessions(license: "", user: "", includeEnded: false, pageToken: "AAAA", by: op)
        }
    }

    @Test func licenseValidityIsEnforced() async throws {
        let users = try await setUp(seats: 5)
        _ = try await service.createLicense(CreateLicenseCommand(id: "future", tenantID: "acme", name: "F", seats: 1,
                                                                 validFrom: clock.now().advanced(by: .seconds(60))), by: op)
        _ = try await service.createLicense(CreateLicenseCommand(id: "ending", tenantID: "acme", name: "E", seats: 1,
                                                                 validUntil: clock.now().advanced(by: .seconds(3_600))), by: op)
        await expectError(.failedPrecondition, .licenseNotYetValid) { _ = try await acquire(users[0], license: "future") }
        let lease = try await acquire(users[0], license: "ending")
        #expect(lease.tokenExpiresAt <= clock.now().advanced(by: .seconds(3_600)), "no token outlives its license")
        clock.advance(by: .seconds(3_600))
        await expectError(.failedPrecondition, .licenseExpired) { _ = try await acquire(users[1], license: "ending") }
    }

    @Test func revokedSessionsCannotHeartbeat() async throws {
        let users = try await setUp(seats: 1)
        let lease = try await acquire(users[0])
        await expectError(.permissionDenied, .forbidden) { _ = try await service.revoke(session: lease.sessionID.rawValue, by: users[1]) }
        _ = try await service.revoke(session: lease.sessionID.rawValue, by: op)
        await expectError(.failedPrecondition, .sessionRevoked) {
            _ = try await service.heartbeat(session: lease.sessionID.rawValue, clientTokenExpiry: nil, by: users[0])
        }
        _ = try await acquire(users[1])
    }

    @Test func aSeatWhoseSessionCannotBeRecordedIsGivenBack() async throws {
        let failing = FailingRepository(inner: repository)
        let seats = InProcessSeatStore(clock: clock)
        let service = LicenseService(repository: failing, seats: seats, signer: keys, clock: clock)
        let users = try await setUp(seats: 1)
        failing.failSessionWrites(true)
        await expectError(.unavailable, .backendUnavailable) {
            _ = try await service.acquire(AcquireCommand(licenseID: "acme-pro", hardwareID: "hw"), by: users[0])
        }
        #expect(await seats.leases(licenseID: "acme-pro").isEmpty)
        failing.failSessionWrites(false)
        _ = try await service.acquire(AcquireCommand(licenseID: "acme-pro", hardwareID: "hw"), by: users[1])
    }

    @Test func aRetryResumesOnlyARecordedSessionAndWaitsOutAnUnrecordedClaim() async throws {
        let seats = InProcessSeatStore(clock: clock)
        let service = LicenseService(repository: repository, seats: seats, signer: keys, clock: clock)
        let users = try await setUp(seats: 2)
        // An earlier attempt's claim whose row never committed (its daemon died, say).
        let holder = SeatHolder(userID: users[0].userID, hardwareID: "hw", idempotencyKey: "k1")
        _ = await seats.claim(SeatClaimRequest(licenseID: "acme-pro", sessionID: "ses_unrecorded", holder: holder, seatLimit: 2,
                                                   leaseTTL: .seconds(360), pendingTTL: .seconds(10)))
        await expectError(.unavailable, .backendUnavailable) {
            _ = try await service.acquire(AcquireCommand(licenseID: "acme-pro", hardwareID: "hw", idempotencyKey: "k1"), by: users[0])
        }
        #expect(try await repository.session("ses_unrecorded") == nil)
        // Once that claim has lapsed, the retry gets a new, recorded session.
        clock.advance(by: .seconds(10))
        let lease = try await service.acquire(AcquireCommand(licenseID: "acme-pro", hardwareID: "hw", idempotencyKey: "k1"), by: users[0])
        #expect(!lease.resumed)
        #expect(lease.sessionID != "ses_unrecorded")
        #expect(try await repository.session(lease.sessionID)?.endedAt == nil)
        #expect(await seats.leases(licenseID: "acme-pro").map(\.isPending) == [false])
        // A retry now resumes that recorded session.
        let again = try await service.acquire(AcquireCommand(licenseID: "acme-pro", hardwareID: "hw", idempotencyKey: "k1"), by: users[0])
        #expect(again.resumed && again.sessionID == lease.sessionID)
    }

    @Test func aRetryWhoseSessionEndedIsNotResumed() async throws {
        let seats = InProcessSeatStore(clock: clock)
        let service = LicenseService(repository: repository, seats: seats, signer: keys, clock: clock)
        let users = try await setUp(seats: 1)
        let first = try await service.acquire(AcquireCommand(licenseID: "acme-pro", hardwareID: "hw", idempotencyKey: "k1"), by: users[0])
        // The row ended, but the seat store missed the release (a Redis copy that lost it).
        _ = try await repository.endSession(first.sessionID, at: clock.now(), reason: .released,
                                            audit: AuditEvent(at: clock.now(), tenantID: "acme", actor: nil, action: "session.release", target: first.sessionID.rawValue))
        let retry = try await service.acquire(AcquireCommand(licenseID: "acme-pro", hardwareID: "hw", idempotencyKey: "k1"), by: users[0])
        #expect(!retry.resumed)
        #expect(retry.sessionID != first.sessionID)
        #expect(await seats.leases(licenseID: "acme-pro").map(\.sessionID) == [retry.sessionID])
    }

    @Test func aClaimThatLapsesBeforeItsRowCommitsIsRefusedAndItsRowEnded() async throws {
        let failing = FailingRepository(inner: repository)
        let seats = InProcessSeatStore(clock: clock)
        let service = LicenseService(repository: failing, seats: seats, signer: keys, clock: clock,
                                     configuration: ServiceConfiguration(issuer: "test-issuer", pendingClaimTTL: .seconds(5)))
        let users = try await setUp(seats: 1)
        // The commit takes longer than the claim waits for it.
        failing.advanceOnInsert = (clock, .seconds(6))
        await expectError(.unavailable, .backendUnavailable) {
            _ = try await service.acquire(AcquireCommand(licenseID: "acme-pro", hardwareID: "hw"), by: users[0])
        }
        let rows = try await repository.sessions(license: "acme-pro", includeEnded: true)
        #expect(rows.count == 1)
        #expect(rows.first?.endReason == .lapsed)
        #expect(await seats.leases(licenseID: "acme-pro").isEmpty)
    }

    @Test func theSweepEndsRowsWithoutSeatsAndFreesSeatsWithoutRows() async throws {
        let seats = InProcessSeatStore(clock: clock)
        let service = LicenseService(repository: repository, seats: seats, signer: keys, clock: clock)
        let users = try await setUp(seats: 3)
        let kept = try await service.acquire(AcquireCommand(licenseID: "acme-pro", hardwareID: "a"), by: users[0])
        let lost = try await service.acquire(AcquireCommand(licenseID: "acme-pro", hardwareID: "b"), by: users[1])
        // The seat store lost one seat, and holds one that no row backs.
        _ = await seats.release(licenseID: "acme-pro", sessionID: lost.sessionID)
        _ = await seats.claim(SeatClaimRequest(licenseID: "acme-pro", sessionID: "ses_ghost",
                                               holder: SeatHolder(userID: users[2].userID, hardwareID: "c", idempotencyKey: ""), seatLimit: 3, leaseTTL: .seconds(360)))
        let report = try await service.sweepAll()
        #expect(report.licenses == 1 && report.lapsedSessions == 1 && report.releasedHandles == 1 && report.failedLicenses == 0)
        #expect(try await repository.session(lost.sessionID)?.endReason == .lapsed)
        #expect(try await repository.session(kept.sessionID)?.endedAt == nil)
        #expect(await seats.leases(licenseID: "acme-pro").map(\.sessionID) == [kept.sessionID])
        let lapses = try await repository.auditEvents(AuditQuery(action: "session.lapse"))
        #expect(lapses.map(\.target) == [lost.sessionID.rawValue])
        // Nothing left to do.
        #expect(try await service.sweepAll() == { var r = SweepReport(); r.licenses = 1; return r }())
    }

    @Test func badInputIsRefusedBeforeAnyBackend() async throws {
        let users = try await setUp(seats: 1)
        await expectError(.invalidArgument, .invalidRequest) {
            _ = try await service.acquire(AcquireCommand(licenseID: "", hardwareID: "hw"), by: users[0])
        }
        await expectError(.invalidArgument, .invalidRequest) {
            _ = try await service.acquire(AcquireCommand(licenseID: "acme-pro", hardwareID: ""), by: users[0])
        }
        await expectError(.invalidArgument, .invalidRequest) {
            _ = try await service.acquire(AcquireCommand(licenseID: "acme pro; drop", hardwareID: "hw"), by: users[0])
        }
        await expectError(.invalidArgument, .invalidRequest) {
            _ = try await service.acquire(AcquireCommand(licenseID: "acme-pro", hardwareID: String(repeating: "x", count: 300)), by: users[0])
        }
        await expectError(.invalidArgument, .invalidRequest) {
            _ = try await service.createLicense(CreateLicenseCommand(tenantID: "acme", name: "zero", seats: 0), by: op)
        }
        await expectError(.invalidArgument, .invalidRequest) {
            _ = try await service.createLicense(CreateLicenseCommand(tenantID: "acme", name: "hb", seats: 1, leaseTTL: .seconds(60), heartbeatInterval: .seconds(60)), by: op)
        }
        await expectError(.permissionDenied, .forbidden) {
            _ = try await service.createTenant(id: "x", name: "x", by: users[0])
        }
        #expect(try await service.licenseStatus(tenant: nil, license: "acme-pro", by: op).first?.seatsUsed == 0)
    }
}

/// Wraps a repository and fails session writes on demand (a fault injector, not a stand-in:
/// every other call reaches the real repository).
final class FailingRepository: LicenseRepository, @unchecked Sendable {
    let inner: any LicenseRepository
    private let failing = ManualWallClock(start: Timestamp(millisecondsSinceEpoch: 0))

    init(inner: any LicenseRepository) { self.inner = inner }

    /// A clock to move forward by a duration whenever a session row is inserted (a slow commit).
    nonisolated(unsafe) var advanceOnInsert: (ManualWallClock, Duration)?

    func failSessionWrites(_ on: Bool) { failing.set(Timestamp(millisecondsSinceEpoch: on ? 1 : 0)) }
    private func check() throws {
        struct DiskFull: Error {}
        if failing.now().millisecondsSinceEpoch == 1 { throw DiskFull() }
    }

    func migrate() async throws { try await inner.migrate() }
    func createTenant(_ tenant: Tenant, audit: AuditEvent) async throws { try await inner.createTenant(tenant, audit: audit) }
    func tenant(_ id: TenantID) async throws -> Tenant? { try await inner.tenant(id) }
    func tenants() async throws -> [Tenant] { try await inner.tenants() }
    func createLicense(_ license: License, audit: AuditEvent) async throws { try await inner.createLicense(license, audit: audit) }
    func license(_ id: LicenseID) async throws -> License? { try await inner.license(id) }
    func licenses(tenant: TenantID?) async throws -> [License] { try await inner.licenses(tenant: tenant) }
    func createUser(_ user: User, apiKey: APIKeyRecord?, audit: AuditEvent?) async throws { try await inner.createUser(user, apiKey: apiKey, audit: audit) }
    func user(_ id: UserID) async throws -> User? { try await inner.user(id) }
    func user(apiKeyHash: String) async throws -> User? { try await inner.user(apiKeyHash: apiKeyHash) }
    func userCount(role: Role) async throws -> Int { try await inner.userCount(role: role) }
    func insertSession(_ session: LeaseSession, audit: AuditEvent) async throws {
        try check()
        try await inner.insertSession(session, audit: audit)
        if let (clock, by) = advanceOnInsert { clock.advance(by: by) }
    }
    /// How many expiries each `updateLeases` call carried, in order (a flush writes one
    /// statement after another).
    nonisolated(unsafe) var leaseWriteSizes: [Int] = []

    func updateLeases(_ leases: [SessionID: Timestamp]) async throws {
        try check()
        leaseWriteSizes.append(leases.count)
        try await inner.updateLeases(leases)
    }
    func endSession(_ id: SessionID, at: Timestamp, reason: SessionEndReason, audit: AuditEvent) async throws -> Bool {
        try check()
        return try await inner.endSession(id, at: at, reason: reason, audit: audit)
    }
    func session(_ id: SessionID) async throws -> LeaseSession? { try await inner.session(id) }
    func sessions(license: LicenseID, includeEnded: Bool) async throws -> [LeaseSession] { try await inner.sessions(license: license, includeEnded: includeEnded) }
    func appendAudit(_ event: AuditEvent) async throws { try await inner.appendAudit(event) }
    func auditEvents(_ query: AuditQuery) async throws -> [AuditEvent] { try await inner.auditEvents(query) }
    func updateTenant(_ tenant: Tenant, audit: AuditEvent) async throws { try await inner.updateTenant(tenant, audit: audit) }
    func tenants(identityTenant: String) async throws -> [Tenant] { try await inner.tenants(identityTenant: identityTenant) }
    func tenants(emailDomain: String) async throws -> [Tenant] { try await inner.tenants(emailDomain: emailDomain) }
    func updateLicense(_ license: License, audit: AuditEvent) async throws { try await inner.updateLicense(license, audit: audit) }
    func users(tenant: TenantID?) async throws -> [User] { try await inner.users(tenant: tenant) }
    func updateUser(_ user: User, audit: AuditEvent?) async throws { try await inner.updateUser(user, audit: audit) }
    func user(identity: ExternalIdentity) async throws -> User? { try await inner.user(identity: identity) }
    func users(email: String) async throws -> [User] { try await inner.users(email: email) }
    func createAPIKey(_ key: APIKeyRecord, audit: AuditEvent) async throws { try await inner.createAPIKey(key, audit: audit) }
    func apiKey(id: String) async throws -> APIKeyRecord? { try await inner.apiKey(id: id) }
    func apiKeys(user: UserID?, tenant: TenantID?) async throws -> [APIKeyRecord] { try await inner.apiKeys(user: user, tenant: tenant) }
    func revokeAPIKey(id: String, at: Timestamp, replacement: APIKeyRecord?, audit: AuditEvent) async throws -> Bool {
        try await inner.revokeAPIKey(id: id, at: at, replacement: replacement, audit: audit)
    }
    func sessions(user: UserID, includeEnded: Bool) async throws -> [LeaseSession] { try await inner.sessions(user: user, includeEnded: includeEnded) }
    func sessions(_ filter: SessionFilter, after cursor: SessionCursor?, limit: Int) async throws -> [LeaseSession] {
        try await inner.sessions(filter, after: cursor, limit: limit)
    }
    func licensesWithLiveSessions() async throws -> [LicenseID] { try await inner.licensesWithLiveSessions() }
    func ping() async throws { try await inner.ping() }
    func signingKeys() async throws -> [StoredSigningKey] { try await inner.signingKeys() }
    func rotateSigningKey(to key: StoredSigningKey, ifCurrent current: String?, publishRetiredUntil: Timestamp, audit: AuditEvent) async throws -> Bool {
        try await inner.rotateSigningKey(to: key, ifCurrent: current, publishRetiredUntil: publishRetiredUntil, audit: audit)
    }
    func resealSigningKeys(_ keys: [StoredSigningKey], audit: AuditEvent) async throws { try await inner.resealSigningKeys(keys, audit: audit) }
}
