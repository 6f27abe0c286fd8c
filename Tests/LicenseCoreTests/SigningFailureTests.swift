import LicenseCore
import LicenseEmbedded
import LicenseTokens
import Synchronization
import Testing

/// A signer standing for a key in an HSM or a KMS: it signs, fails, or stops answering (until
/// its call is cancelled, as a PKCS#11 signer's wait is).
final class KeyStoreSigner: LeaseTokenSigner {
    enum Mode { case working, failing, hanging }
    let ring: KeyRing
    let mode = Mutex(Mode.working)
    var issuer: String { ring.issuer }

    init(_ ring: KeyRing) { self.ring = ring }

    func sign(_ claims: LeaseClaims) async throws -> String {
        switch mode.withLock({ $0 }) {
        case .working: return try await ring.sign(claims)
        case .failing: throw LicenseError(.internal, .internalError, "CKR_DEVICE_REMOVED")
        case .hanging:
            try await Task.sleep(for: .seconds(3_600))  // returns early only when cancelled
            return try await ring.sign(claims)
        }
    }
    func jwksJSON() -> String { ring.jwksJSON() }
    func makeKey(algorithm: String?, at now: Timestamp) throws -> StoredSigningKey { try ring.makeKey(algorithm: algorithm, at: now) }
    func load(_ keys: [StoredSigningKey], now: Timestamp) throws { try ring.load(keys, now: now) }
}

/// What the service does when the signing key's store is slow, gone or failing.
@Suite("Signing failures")
struct SigningFailureTests {
    let clock = ManualWallClock()
    let signer: KeyStoreSigner
    let service: LicenseService
    let op = Principal(userID: "usr-op", tenantID: nil, role: .platformOperator, name: "op")

    init() throws {
        signer = KeyStoreSigner(KeyRing(issuer: "test-issuer", current: try SigningKey.generate(.edDSA)))
        service = LicenseService(repository: InMemoryLicenseRepository(), seats: InProcessSeatStore(clock: clock), signer: signer, clock: clock,
                                 configuration: ServiceConfiguration(issuer: "test-issuer", signingTimeout: .milliseconds(200)))
    }

    func setUp() async throws -> Principal {
        _ = try await service.createTenant(id: "acme", name: "acme", by: op)
        _ = try await service.createLicense(CreateLicenseCommand(id: "acme-pro", tenantID: "acme", name: "Pro", seats: 1, features: []), by: op)
        return try await service.createUser(CreateUserCommand(tenantID: "acme", name: "user", role: "user"), by: op).user.principal
    }

    func seatsUsed() async throws -> Int {
        try await service.licenseStatus(tenant: nil, license: "acme-pro", by: op).first?.seatsUsed ?? -1
    }

    @Test(arguments: [KeyStoreSigner.Mode.failing, .hanging])
    func anAcquireThatCannotBeSignedAnswersUnavailableAndGivesItsSeatBack(_ mode: KeyStoreSigner.Mode) async throws {
        let user = try await setUp()
        signer.mode.withLock { $0 = mode }
        let started = ContinuousClock.now
        let error = await #expect(throws: LicenseError.self) {
            try await service.acquire(AcquireCommand(licenseID: "acme-pro", hardwareID: "hw-1"), by: user)
        }
        #expect(error?.code == .unavailable && error?.reason == .signingUnavailable && error?.retryAfter == .seconds(1), "\(String(describing: error))")
        #expect(started.duration(to: .now) < .seconds(5), "a store that stopped answering must not hold the call")
        #expect(try await seatsUsed() == 0, "the seat is given back")
        let unsigned = try await service.queryAudit(AuditQuery(action: "session.unsigned", limit: 10), tenant: "", user: "", by: op)
        #expect(unsigned.items.count == 1)
        // The one seat is free for the next acquire once the store answers again.
        signer.mode.withLock { $0 = .working }
        let lease = try await service.acquire(AcquireCommand(licenseID: "acme-pro", hardwareID: "hw-2"), by: user)
        #expect(!lease.leaseToken.isEmpty)
    }

    @Test func aHeartbeatKeepsItsLeaseWhenItsTokenCannotBeRefreshedAndAsksAgainNextTime() async throws {
        let user = try await setUp()
        let lease = try await service.acquire(AcquireCommand(licenseID: "acme-pro", hardwareID: "hw"), by: user)
        // A token near its end asks for a fresh one; the store fails: the lease is renewed anyway.
        clock.advance(by: .seconds(86_400 - 600))
        signer.mode.withLock { $0 = .failing }
        let beat = try await service.heartbeat(session: lease.sessionID.rawValue, clientTokenExpiry: lease.tokenExpiresAt, by: user)
        #expect(beat.leaseToken == nil && beat.leaseExpiresAt == clock.now().advanced(by: .seconds(360)))
        #expect(try await seatsUsed() == 1)
        // Heartbeats that need no token never touch the signer.
        let quiet = try await service.heartbeat(session: lease.sessionID.rawValue, clientTokenExpiry: clock.now().advanced(by: .seconds(86_400)), by: user)
        #expect(quiet.leaseToken == nil)
        // The store is back: the next heartbeat with the old token gets a fresh one.
        signer.mode.withLock { $0 = .working }
        clock.advance(by: .seconds(60))
        let again = try await service.heartbeat(session: lease.sessionID.rawValue, clientTokenExpiry: lease.tokenExpiresAt, by: user)
        #expect(again.leaseToken != nil && (again.tokenExpiresAt ?? lease.tokenExpiresAt) > lease.tokenExpiresAt)
    }
}
