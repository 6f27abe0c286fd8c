import Crypto
import Logging
import Metrics

/// What the server needs to know to run the domain.
public struct ServiceConfiguration: Sendable {
    /// The `iss` of lease tokens, e.g. `coditect-licensed`.
    public var issuer: String
    /// The policy given to licenses created without explicit times.
    public var defaultPolicy: LeasePolicy
    /// How long a claimed seat is held before its session row has committed. Longer than the
    /// repository's write deadline, so a slow commit still finds its seat; short, so a claim
    /// whose daemon died or gave up frees its seat within seconds.
    public var pendingClaimTTL: Duration
    /// How long signing one lease token may take (an HSM or KMS that is slow or gone must not
    /// hold calls): an acquire past it answers `UNAVAILABLE` and gives its seat back.
    public var signingTimeout: Duration

    public init(
        issuer: String = "coditect-licensed", defaultPolicy: LeasePolicy = .default, pendingClaimTTL: Duration = .seconds(10),
        signingTimeout: Duration = .seconds(2)
    ) {
        self.issuer = issuer
        self.defaultPolicy = defaultPolicy
        self.pendingClaimTTL = pendingClaimTTL
        self.signingTimeout = signingTimeout
    }
}

/// An acquire as the service receives it (already decoded from the wire).
public struct AcquireCommand: Hashable, Sendable {
    public var licenseID: String
    public var hardwareID: String
    public var idempotencyKey: String
    public var clientInfo: [String: String]

    public init(licenseID: String, hardwareID: String, idempotencyKey: String = "", clientInfo: [String: String] = [:]) {
        self.licenseID = licenseID
        self.hardwareID = hardwareID
        self.idempotencyKey = idempotencyKey
        self.clientInfo = clientInfo
    }
}

/// A granted (or resumed) seat.
public struct AcquireOutcome: Hashable, Sendable {
    public var sessionID: SessionID
    public var leaseToken: String
    public var leaseExpiresAt: Timestamp
    public var tokenExpiresAt: Timestamp
    public var policy: LeasePolicy
    /// `true` when an existing session was returned instead of a new seat.
    public var resumed: Bool
}

/// A renewed lease.
public struct HeartbeatOutcome: Hashable, Sendable {
    public var leaseExpiresAt: Timestamp
    public var nextHeartbeatAt: Timestamp
    /// A fresh token when the client's was due for refresh.
    public var leaseToken: String?
    public var tokenExpiresAt: Timestamp?
}

/// The acquire / heartbeat / release orchestration, written only against `SeatStore`,
/// `LicenseRepository`, `LeaseTokenSigner` and `WallClock`, so it runs with no socket and no
/// database in tests.
///
/// Invariants kept here: a seat is granted only if its session row is committed (otherwise the
/// seat is given back); a heartbeat on a lapsed lease re-runs the limit check; an ended session
/// is never resurrected; entities of another tenant answer NOT_FOUND like missing ones.
public struct LicenseService: Sendable {
    public let repository: any LicenseRepository
    public let seats: any SeatStore
    public let signer: any LeaseTokenSigner
    public let clock: any WallClock
    public let configuration: ServiceConfiguration
    /// The immutable facts of sessions this daemon has seen, so heartbeats need not read rows.
    public let directory: SessionDirectory
    /// When set, heartbeats record lease expiries here instead of committing them before
    /// answering (the daemon runs it); when `nil` every expiry is committed in the call.
    public let leaseWriter: LeaseWriteBehind?
    let logger: Logger

    public init(
        repository: any LicenseRepository, seats: any SeatStore, signer: any LeaseTokenSigner,
        clock: any WallClock = SystemWallClock(), configuration: ServiceConfiguration = .init(),
        directory: SessionDirectory = SessionDirectory(), leaseWriter: LeaseWriteBehind? = nil,
        logger: Logger = Logger(label: "coditect.license.service")
    ) {
        self.repository = repository
        self.seats = seats
        self.signer = signer
        self.clock = clock
        self.configuration = configuration
        self.directory = directory
        self.leaseWriter = leaseWriter
        self.logger = logger
    }

    // MARK: - Session calls

    /// Extends a session's lease. A lapsed lease is re-taken only if a seat is free; an ended
    /// session stays ended. `clientTokenExpiry` lets the server decide whether to send a fresh token.
    ///
    /// In the steady state this reads no row: the session's owner and license come from the
    /// directory, the license from the repository's cache, and the seat store renews the lease.
    /// Only when the seat store no longer holds the session's seat is the row read, to tell a
    /// lapse from an ended session.
    public func heartbeat(session sessionID: String, clientTokenExpiry: Timestamp?, by principal: Principal) async throws -> HeartbeatOutcome {
        let repository = repository(for: principal)
        let session = try await ownedSession(sessionID, by: principal)
        try checkNotEnded(session)
        guard let license = try await backend("the repository", { try await repository.license(session.licenseID) }) else {
            throw LicenseError.licenseNotFound(session.licenseID)
        }
        let now = clock.now()
        try checkUsable(license, at: now)

        let holder = SeatHolder(userID: session.userID, hardwareID: session.hardwareID, idempotencyKey: session.idempotencyKey)
        let outcome = try await backend("the seat store") {
            try await seats.renew(licenseID: license.id, sessionID: session.id, holder: holder, seatLimit: license.seats, leaseTTL: license.policy.leaseTTL)
        }
        let lease: SeatLease
        switch outcome {
        case .renewed(let renewed):
            lease = renewed
        case .reclaimed(let reclaimed):
            // The seat had been let go: the session lapsed, or it ended (perhaps through another
            // replica, whose release the directory cannot know). The row decides.
            if let ended = try await endedSession(session.id, in: repository) {
                _ = try? await seats.release(licenseID: license.id, sessionID: session.id)
                directory.forget(session.id)
                try checkNotEnded(ended)
            }
            lease = reclaimed
        case .noSeat(let used, let limit):
            if let ended = try await endedSession(session.id, in: repository) {
                directory.forget(session.id)
                try checkNotEnded(ended)
            }
            let audit = AuditEvent(at: now, tenantID: session.tenantID, actor: principal.userID, action: "session.lapse", target: session.id.rawValue)
            _ = try await backend("the repository") {
                try await repository.endSession(session.id, at: now, reason: .lapsed, audit: audit)
            }
            directory.forget(session.id)
            throw LicenseError(
                .resourceExhausted, .leaseLapsed, "the lease lapsed and all \(limit) seats of license \(license.id) are in use",
                details: ["seats_total": String(limit), "seats_used": String(used)]
            )
        }
        try await recordLease(lease, in: repository)

        var result = HeartbeatOutcome(leaseExpiresAt: lease.expiresAt, nextHeartbeatAt: now.advanced(by: license.policy.heartbeatInterval))
        if needsFreshToken(clientTokenExpiry, policy: license.policy, now: now) {
            // The lease is renewed whatever the signer does: a token that cannot be signed now is
            // asked for again by the next heartbeat (the client's token is still the old one).
            do {
                let (token, expiry) = try await makeToken(license: license, sessionID: session.id, userID: session.userID, hardwareID: session.hardwareID, now: now)
                result.leaseToken = token
                result.tokenExpiresAt = expiry
            } catch {
                logger.warning("a heartbeat renewed its lease without a fresh token: signing failed; the next heartbeat asks again",
                               metadata: ["session": "\(session.id)"])
            }
        }
        return result
    }

    /// Gives a seat back at once. Releasing an ended session succeeds and changes nothing.
    public func release(session sessionID: String, by principal: Principal) async throws {
        let session = try await ownedSession(sessionID, by: principal)
        CallTrace.mark("session.lookup")
        guard session.endedAt == nil else { return }
        // The row is ended only if it was live (an ended session's release writes nothing).
        try await end(session, reason: .released, by: principal, action: "session.release")
    }

    /// Ends another principal's session (administrators only). Returns the revoked session so the
    /// caller can notify its holder.
    public func revoke(session sessionID: String, by principal: Principal) async throws -> LeaseSession {
        let repository = repository(for: principal)
        try Validation.id(sessionID, field: "session_id")
        guard let session = try await backend("the repository", { try await repository.session(SessionID(sessionID)) }),
              principal.belongs(to: session.tenantID)
        else { throw LicenseError.sessionNotFound(SessionID(sessionID)) }
        guard principal.administers(session.tenantID) else {
            throw LicenseError.forbidden("this call needs an operator or the tenant's administrator")
        }
        try checkNotEnded(session)
        try await end(session, reason: .revoked, by: principal, action: "session.revoke")
        return session
    }

    /// The JWKS document of the signing keys.
    public func signingKeys() -> String { signer.jwksJSON() }

    // MARK: - Helpers shared with the admin calls

    /// Ends a session: its row is ended, then its seat released. In this order no moment has
    /// the seat gone while the row is live, so a heartbeat in between either renews the handle
    /// that the release then drops, or finds the seat gone and the row ended. Should the release
    /// fail, the sweeper frees the seat (it has no live row); should the row's end fail, the
    /// seat stays held with its live row and the caller may retry.
    func end(_ session: LeaseSession, reason: SessionEndReason, by principal: Principal, action: String) async throws {
        try await end(session, reason: reason, actor: principal.userID, in: repository(for: principal), action: action)
    }

    /// Ends a session in `repository` with `actor` (`nil`: the server itself) in its audit row.
    func end(_ session: LeaseSession, reason: SessionEndReason, actor: UserID?, in repository: any LicenseRepository, action: String) async throws {
        let now = clock.now()
        let audit = AuditEvent(at: now, tenantID: session.tenantID, actor: actor, action: action, target: session.id.rawValue)
        _ = try await backend("the repository") {
            try await repository.endSession(session.id, at: now, reason: reason, audit: audit)
        }
        CallTrace.mark("session.ended")
        directory.forget(session.id)
        _ = try await backend("the seat store") { try await seats.release(licenseID: session.licenseID, sessionID: session.id) }
        CallTrace.mark("seat.release")
    }

    /// The session's row if it has ended; `nil` if it is live.
    private func endedSession(_ id: SessionID, in repository: any LicenseRepository) async throws -> LeaseSession? {
        let row = try await backend("the repository") { try await repository.session(id) }
        guard let row else { throw LicenseError.sessionNotFound(id) }
        return row.endedAt == nil ? nil : row
    }

    /// Stores a lease's new expiry: behind the call when the daemon runs a writer, else now.
    func recordLease(_ lease: SeatLease, in repository: any LicenseRepository) async throws {
        if let leaseWriter {
            leaseWriter.record(lease.sessionID, expiresAt: lease.expiresAt)
        } else {
            try await backend("the repository") { try await repository.updateLease(session: lease.sessionID, expiresAt: lease.expiresAt) }
        }
    }

    func visibleLicense(_ id: LicenseID, to principal: Principal) async throws -> License {
        let repository = repository(for: principal)
        guard let license = try await backend("the repository", { try await repository.license(id) }),
              principal.belongs(to: license.tenantID)
        else { throw LicenseError.licenseNotFound(id) }
        return license
    }

    /// The session if the principal owns or administers it. From the directory when this daemon
    /// knows it (then `endedAt` is `nil` and says nothing), else the row, remembered if live.
    private func ownedSession(_ id: String, by principal: Principal) async throws -> LeaseSession {
        try Validation.id(id, field: "session_id")
        let sessionID = SessionID(id)
        var session = directory.session(sessionID)
        if session == nil {
            let repository = repository(for: principal)
            session = try await backend("the repository", { try await repository.session(sessionID) })
            if let session, session.endedAt == nil { directory.remember(session) }
        }
        guard let session, session.userID == principal.userID || principal.administers(session.tenantID) else {
            throw LicenseError.sessionNotFound(sessionID)
        }
        return session
    }

    private func checkNotEnded(_ session: LeaseSession) throws {
        guard let reason = session.endReason, session.endedAt != nil else { return }
        if reason == .revoked {
            throw LicenseError(.failedPrecondition, .sessionRevoked, "the session was revoked by an administrator")
        }
        throw LicenseError(.failedPrecondition, .sessionEnded, "the session has ended (\(reason))")
    }

    func checkUsable(_ license: License, at now: Timestamp) throws {
        if license.status != .active {
            throw LicenseError(.failedPrecondition, .licenseSuspended, "license \(license.id) is suspended")
        }
        if let from = license.validFrom, now < from {
            throw LicenseError(.failedPrecondition, .licenseNotYetValid, "license \(license.id) is not valid yet")
        }
        if let until = license.validUntil, now >= until {
            throw LicenseError(.failedPrecondition, .licenseExpired, "license \(license.id) has expired")
        }
    }

    /// A token is refreshed once it has used up a twenty-fourth of the grace period (an hour for
    /// the 24-hour default), so heartbeats every 5 minutes sign about once an hour.
    private func needsFreshToken(_ clientExpiry: Timestamp?, policy: LeasePolicy, now: Timestamp) -> Bool {
        guard let clientExpiry else { return true }
        let share = max(policy.offlineGrace / 24, .seconds(60))
        return now.duration(to: clientExpiry) < policy.offlineGrace - share
    }

    /// `licensed_signing_duration_seconds`: signing one lease token.
    static let signingDuration = Metrics.Timer(label: "licensed_signing_duration_seconds", preferredDisplayUnit: .seconds)
    /// `licensed_signing_errors_total`: lease tokens that could not be signed.
    public static let signingErrors = Counter(label: "licensed_signing_errors_total")

    func makeToken(license: License, sessionID: SessionID, userID: UserID, hardwareID: String, now: Timestamp) async throws -> (String, Timestamp) {
        var expiry = now.advanced(by: license.policy.offlineGrace)
        if let until = license.validUntil { expiry = min(expiry, until) }
        // JWT times are whole seconds: round the expiry down so the answer matches the token.
        expiry = Timestamp(millisecondsSinceEpoch: expiry.secondsSinceEpoch * 1000)
        let claims = LeaseClaims(
            issuer: signer.issuer, userID: userID.rawValue, tenantID: license.tenantID.rawValue,
            licenseID: license.id.rawValue, sessionID: sessionID.rawValue,
            hardwareHash: LeaseClaims.hardwareHash(hardwareID), features: license.features,
            issuedAt: now.secondsSinceEpoch, notBefore: now.secondsSinceEpoch - 60,
            expiresAt: expiry.secondsSinceEpoch, tokenID: IdentifierGenerator.make(prefix: "tok", byteCount: 12)
        )
        let signer = self.signer
        do {
            let start = ContinuousClock.now
            let token = signer.signsInProcess
                ? try await signer.sign(claims)
                : try await withDeadline(configuration.signingTimeout, orThrow: { SigningTimedOut() }) { try await signer.sign(claims) }
            Self.signingDuration.recordSince(start)
            return (token, expiry)
        } catch {
            Self.signingErrors.increment()
            let timedOut = error is SigningTimedOut
            logger.error("lease token signing failed", metadata: ["error": "\(timedOut ? "timed out" : "\(type(of: error))")"])
            throw LicenseError(
                .unavailable, .signingUnavailable,
                timedOut ? "the lease token could not be signed in time: the signing key's store is slow or gone; retry"
                    : "the lease token could not be signed: the signing key's store failed; retry",
                retryAfter: .seconds(1)
            )
        }
    }

    /// The repository as `principal` may see it: scoped to its tenant (enforced by the database
    /// where the backend can), or everything for platform operators.
    func repository(for principal: Principal) -> any LicenseRepository {
        principal.tenantID.map { repository.scoped(to: $0) } ?? repository
    }

    func backend<T>(_ what: String, _ body: () async throws -> T) async throws -> T {
        try await callingBackend(what, logger: logger, body)
    }

    /// Runs a repository create; when it answers ALREADY_EXISTS and an entity with the id does
    /// exist (`exists`), the error names the kind and the id. Another clash (an e-mail address,
    /// an identity) keeps its own message.
    func creating<T>(_ what: String, id: String, exists: () async throws -> Bool, _ body: () async throws -> T) async throws -> T {
        do {
            return try await backend("the repository", body)
        } catch let error as LicenseError where error.code == .alreadyExists {
            guard (try? await exists()) == true else { throw error }
            throw LicenseError.alreadyExists(what, id)
        }
    }
}

/// Runs a backend call, turning failures that are not domain errors into UNAVAILABLE with a
/// message that does not echo the backend's text (which may hold connection strings).
func callingBackend<T>(_ what: String, logger: Logger, _ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as LicenseError {
        throw error
    } catch {
        logger.debug("backend call failed", metadata: ["backend": "\(what)", "error": "\(type(of: error))"])
        throw LicenseError.backendUnavailable(what)
    }
}

extension LeaseClaims {
    /// The `hwh` claim for a hardware id: base64url SHA-256 of its UTF-8 bytes.
    public static func hardwareHash(_ hardwareID: String) -> String {
        Base64URL.encode(SHA256.hash(data: Array(hardwareID.utf8)))
    }
}

/// A signature that did not come within `ServiceConfiguration.signingTimeout`.
struct SigningTimedOut: Error {}
