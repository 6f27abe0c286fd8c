extension LicenseService {
    /// Gives the caller its own session on a seat of the license for this machine: the seat the
    /// user already holds on this hardware (it counts once however many processes share it), or
    /// a newly taken one. A retry with the same idempotency key resumes the same session.
    public func acquire(_ command: AcquireCommand, by principal: Principal) async throws -> AcquireOutcome {
        try Validation.id(command.licenseID, field: "license_id")
        try Validation.text(command.hardwareID, field: "hardware_id", max: Validation.maxHardwareIDLength)
        try Validation.text(command.idempotencyKey, field: "idempotency_key", max: Validation.maxIDLength, required: false)
        try Validation.clientInfo(command.clientInfo)

        let license = try await visibleLicense(LicenseID(command.licenseID), to: principal)
        CallTrace.mark("license")
        let now = clock.now()
        try checkUsable(license, at: now)

        let holder = SeatHolder(userID: principal.userID, hardwareID: command.hardwareID, idempotencyKey: command.idempotencyKey)
        let request = SeatClaimRequest(
            licenseID: license.id, sessionID: SessionID(IdentifierGenerator.make(prefix: "ses")), holder: holder,
            seatLimit: license.seats, leaseTTL: license.policy.leaseTTL, pendingTTL: configuration.pendingClaimTTL
        )
        let (lease, resumed) = try await claimRecorded(request, command: command, license: license, by: principal, at: now)
        let token: String, tokenExpiry: Timestamp
        do {
            (token, tokenExpiry) = try await makeToken(license: license, sessionID: lease.sessionID, userID: principal.userID, hardwareID: command.hardwareID, now: now)
            CallTrace.mark("token.signed")
        } catch {
            // No token, no seat: the client was told to retry, so the seat is given back now
            // rather than held until the lease lapses.
            await giveBack(lease.sessionID, license: license, by: principal)
            throw error
        }
        return AcquireOutcome(
            sessionID: lease.sessionID, leaseToken: token, leaseExpiresAt: lease.expiresAt,
            tokenExpiresAt: tokenExpiry, policy: license.policy, resumed: resumed
        )
    }

    /// Ends the session of an acquire whose token could not be signed (audited as
    /// `session.unsigned`) and frees its seat. A backend that fails here leaves the seat to lapse
    /// with its lease, as a client that vanished would.
    private func giveBack(_ sessionID: SessionID, license: License, by principal: Principal) async {
        let repository = repository(for: principal)
        let now = clock.now()
        let audit = AuditEvent(at: now, tenantID: license.tenantID, actor: principal.userID, action: "session.unsigned", target: sessionID.rawValue)
        do {
            _ = try await backend("the repository") { try await repository.endSession(sessionID, at: now, reason: .released, audit: audit) }
            directory.forget(sessionID)
            _ = try await backend("the seat store") { try await seats.release(licenseID: license.id, sessionID: sessionID) }
        } catch {
            logger.warning("the seat of an acquire that could not be signed is left to lapse", metadata: ["session": "\(sessionID)", "error": "\(error)"])
        }
    }

    /// Claims a seat and records its session, so that a seat is held only with its row: the
    /// claim is pending until the row has committed and the seat store confirmed it. A retry
    /// resumes its earlier session only if that session is recorded and live.
    private func claimRecorded(
        _ request: SeatClaimRequest, command: AcquireCommand, license: License, by principal: Principal, at now: Timestamp
    ) async throws -> (SeatLease, resumed: Bool) {
        let repository = repository(for: principal)
        for attempt in 0..<2 {
            let outcome = try await backend("the seat store") { try await seats.claim(request) }
            CallTrace.mark("seat.claim")
            switch outcome {
            case .full(let used, let limit):
                throw LicenseError(
                    .resourceExhausted, .noSeats, "all \(limit) seats of license \(license.id) are in use (\(used) held)",
                    details: ["seats_total": String(limit), "seats_used": String(used)]
                )
            case .granted(let granted):
                return (try await record(granted, command: command, license: license, by: principal, at: now), false)
            case .existing(let existing), .pending(let existing):
                if let session = try await recordedLiveSession(existing.sessionID, in: repository) {
                    if existing.isPending { return (try await confirm(session, leaseTTL: license.policy.leaseTTL, by: principal), true) }
                    try await recordLease(existing, in: repository)
                    return (existing, true)
                }
                if existing.isPending {
                    // An earlier attempt's row may still commit (or its claim lapse): neither
                    // resume an unrecorded session nor take a second seat meanwhile.
                    throw LicenseError(
                        .unavailable, .backendUnavailable,
                        "an earlier acquire with this idempotency key is still being recorded; retry in a moment",
                        retryAfter: .seconds(1)
                    )
                }
                // A confirmed handle whose session is not live (its end was lost with a Redis
                // copy): free it and claim afresh.
                _ = try await backend("the seat store") { try await seats.release(licenseID: license.id, sessionID: existing.sessionID) }
                logger.debug("retry found a handle without a live session; claiming afresh", metadata: ["license": "\(license.id)", "attempt": "\(attempt)"])
            }
        }
        throw LicenseError.backendUnavailable("the seat store")
    }

    /// Records a granted claim's session and confirms its seat. Without the row the seat is
    /// given back; without the confirmation (the pending claim lapsed, or the seat store failed)
    /// the row is ended, so no OK is answered for a seat that is not held.
    private func record(_ granted: SeatLease, command: AcquireCommand, license: License, by principal: Principal, at now: Timestamp) async throws -> SeatLease {
        let repository = repository(for: principal)
        let session = LeaseSession(
            id: granted.sessionID, tenantID: license.tenantID, licenseID: license.id, userID: principal.userID,
            hardwareID: command.hardwareID, idempotencyKey: command.idempotencyKey, clientInfo: command.clientInfo,
            createdAt: now, leaseExpiresAt: granted.expiresAt
        )
        let audit = AuditEvent(at: now, tenantID: license.tenantID, actor: principal.userID, action: "session.acquire", target: granted.sessionID.rawValue)
        do {
            try await repository.insertSession(session, audit: audit)
            CallTrace.mark("session.recorded")
        } catch {
            // No seat may be held that is not recorded: give it back before answering. (Should the
            // insert still commit, the sweeper ends the row: it holds no seat.)
            _ = try? await seats.release(licenseID: license.id, sessionID: granted.sessionID)
            logger.debug("session commit failed; seat returned", metadata: ["license": "\(license.id)", "error": "\(type(of: error))"])
            throw error as? LicenseError ?? LicenseError.backendUnavailable("the repository")
        }
        guard granted.isPending else {
            directory.remember(session)
            return granted
        }
        return try await confirm(session, leaseTTL: license.policy.leaseTTL, by: principal)
    }

    /// Confirms a recorded session's pending seat. When the seat is gone or the store fails, the
    /// session is ended (best effort: the sweeper ends it otherwise) and the call refused.
    private func confirm(_ session: LeaseSession, leaseTTL: Duration, by principal: Principal) async throws -> SeatLease {
        let confirmed: SeatLease?
        do {
            confirmed = try await seats.confirm(licenseID: session.licenseID, sessionID: session.id, leaseTTL: leaseTTL)
            CallTrace.mark("seat.confirm")
        } catch {
            confirmed = nil
        }
        guard let confirmed else {
            // Best effort (the seat store may be what failed): the seat first, then `end`, which
            // ends the row and releases again. Should the row stay live, the sweeper ends it,
            // since it holds no confirmed seat.
            logger.debug("pending seat could not be confirmed; session ended", metadata: ["license": "\(session.licenseID)"])
            _ = try? await seats.release(licenseID: session.licenseID, sessionID: session.id)
            try? await end(session, reason: .lapsed, actor: nil, in: repository(for: principal), action: "session.lapse")
            throw LicenseError.backendUnavailable("the seat store")
        }
        directory.remember(session)
        return confirmed
    }

    /// The session if it is recorded and live, by its row: the directory cannot tell, since
    /// another replica may have ended it. (Only retries come here.)
    private func recordedLiveSession(_ id: SessionID, in repository: any LicenseRepository) async throws -> LeaseSession? {
        let row = try await backend("the repository") { try await repository.session(id) }
        guard let row, row.endedAt == nil else { return nil }
        return row
    }
}
