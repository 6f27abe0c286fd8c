import Foundation
import LicenseCore

extension LicenseClient {
    /// Acquires a seat of `licenseID`, keeps it while `body` runs (heartbeats in a child task),
    /// and gives it back when `body` returns, throws or is cancelled.
    ///
    /// While the server is unreachable the lease runs on grace until the horizon in its last
    /// server-signed token. If the lease ends first (grace expired, session revoked, or the server
    /// refuses to continue it), `body` is cancelled and this throws the reason as a
    /// ``LicenseCallError`` (`GRACE_EXPIRED`, `SESSION_REVOKED`, …). `NO_SEATS` at start is thrown
    /// at once; its ``LicenseCallError/seatsTotal`` says how many seats the license has.
    public func withLease<T: Sendable>(
        licenseID: String,
        options: LeaseOptions = LeaseOptions(),
        _ body: @escaping @Sendable (Lease) async throws -> T
    ) async throws -> T {
        let lease = try await startLease(licenseID: licenseID, options: options)
        let outcome: LeaseOutcome<T>
        do {
            outcome = try await withRevocations { revocations in
                try await withThrowingTaskGroup(of: LeaseOutcome<T>.self) { group in
                    group.addTask { .body(try await body(lease)) }
                    group.addTask { .ended(try await self.maintain(lease, options: options)) }
                    group.addTask {
                        for await sessionID in revocations {
                            let ended = lease.update { machine in
                                let events = machine.revokedNotice(sessionID: sessionID)
                                return (!events.isEmpty, events)
                            }
                            if ended { return .ended(LeaseStateMachine.revoked) }
                        }
                        return .idle
                    }
                    defer { group.cancelAll() }
                    while let next = try await group.next() {
                        if case .idle = next { continue }
                        return next
                    }
                    return .idle
                }
            }
        } catch {
            // The body threw (or the scope was cancelled): give the seat back.
            await finish(lease, options: options)
            throw error
        }
        switch outcome {
        case .body(let value):
            await finish(lease, options: options)
            return value
        case .ended(let why):
            // Nothing to release: the lease is over on the server's side too, or unreachable.
            lease.finishEvents()
            if why.reason != "GRACE_EXPIRED" { store?.removeLease(licenseID) }
            throw why
        case .idle:
            await finish(lease, options: options)
            throw CancellationError()
        }
    }

    /// Which child of `withLease` finished first.
    private enum LeaseOutcome<T: Sendable>: Sendable {
        case body(T)
        case ended(LicenseCallError)
        case idle
    }

    /// Acquires, or, when the server cannot be reached and a lease of the previous run is on
    /// disk, restores that lease after verifying its token offline.
    func startLease(licenseID: String, options: LeaseOptions) async throws -> Lease {
        do {
            let grant = try await acquire(
                licenseID: licenseID, idempotencyKey: options.idempotencyKey ?? UUID().uuidString,
                clientInfo: options.clientInfo, budget: options.acquireBudget
            )
            remember(grant)
            let lease = Lease(licenseID: licenseID, machine: LeaseStateMachine(acquired: grant, backoff: configuration.backoff))
            lease.emit([.acquired(grant)])
            return lease
        } catch let error as LicenseCallError where error.isTransient && options.startOffline {
            guard let stored = store?.lease(licenseID) else { throw error }
            let claims: LeaseClaims
            do {
                claims = try await verifyToken(stored.token, licenseID: licenseID, sessionID: stored.sessionID, online: false)
            } catch let rejected as LicenseCallError {
                logger.warning("the stored lease was rejected", metadata: ["license": "\(licenseID)", "reason": "\(rejected.reason)"])
                if rejected.reason != "KEYS_UNAVAILABLE" { store?.removeLease(licenseID) }
                throw rejected
            }
            let now = serverTime().now
            let grant = LeaseGrant(
                licenseID: licenseID, sessionID: stored.sessionID, token: stored.token, claims: claims,
                leaseExpiresAt: Timestamp(millisecondsSinceEpoch: claims.issuedAt * 1000).advanced(by: .seconds(Int64(stored.leaseTTLS))),
                nextHeartbeatAt: now, heartbeatInterval: .seconds(Int64(stored.heartbeatIntervalS)), resumed: true
            )
            let lease = Lease(licenseID: licenseID, machine: LeaseStateMachine(restored: grant, now: now, backoff: configuration.backoff))
            lease.emit([.serverUnreachable(graceUntil: grant.graceUntil, error: error)])
            return lease
        }
    }

    /// Heartbeats (and re-acquires after a lapse) until the lease ends; returns why. Each call is
    /// a single attempt: the state machine schedules retries, so the grace horizon is checked
    /// between them.
    func maintain(_ lease: Lease, options: LeaseOptions) async throws -> LicenseCallError {
        var reportedRollback = false
        while true {
            let reading = serverTime()
            persistClock()
            if reading.wallClockTurnedBack != reportedRollback {
                reportedRollback = reading.wallClockTurnedBack
                if reportedRollback { lease.emit([.clockTurnedBack]) }
            }
            let step = lease.update { $0.step(now: reading.now) }
            switch step {
            case .finished(let why):
                return why
            case .wait(let until):
                try await configuration.clock.sleep(for: reading.now.duration(to: until))
            case .heartbeat:
                let grant = lease.grant
                do {
                    let renewed = try await heartbeat(grant, budget: .zero)
                    if renewed.token != grant.token { remember(renewed) }
                    lease.update { ((), $0.renewed(renewed)) }
                } catch let error as LicenseCallError {
                    let now = serverTime().now
                    lease.update { ((), $0.failed(.heartbeat, error, now: now)) }
                }
            case .reacquire:
                do {
                    let fresh = try await acquire(licenseID: lease.licenseID, clientInfo: options.clientInfo, budget: .zero)
                    remember(fresh)
                    lease.update { ((), $0.reacquired(fresh)) }
                } catch let error as LicenseCallError {
                    let now = serverTime().now
                    lease.update { ((), $0.failed(.reacquire, error, now: now)) }
                }
            }
        }
    }

    /// Releases the seat (one attempt, bounded by `releaseTimeout`), forgets the stored lease and
    /// reports `released`. Does nothing when the lease already ended.
    private func finish(_ lease: Lease, options: LeaseOptions) async {
        let releasing = lease.update { ($0.release(), []) }
        guard releasing else { return }
        let sessionID = lease.grant.sessionID
        store?.removeLease(lease.licenseID)
        do {
            try await perform(budget: .zero) { connection in
                try await connection.release(sessionID: sessionID, timeout: options.releaseTimeout)
            }
        } catch {
            logger.info("the release did not reach the server; the seat frees itself when its lease lapses", metadata: ["error": "\(error)"])
        }
        lease.emit([.released])
        lease.finishEvents()
    }

    /// Keeps `grant` (and the clock state it was verified with) on disk so a restart during an
    /// outage can run on its grace.
    private func remember(_ grant: LeaseGrant) {
        guard let store else { return }
        persistClock()
        let stored = ClientStateStore.StoredLease(
            sessionID: grant.sessionID, token: grant.token,
            heartbeatIntervalS: UInt32(clamping: grant.heartbeatInterval.wholeSeconds),
            leaseTTLS: UInt32(clamping: grant.leaseExpiresAt.millisecondsSinceEpoch / 1000 - grant.claims.issuedAt)
        )
        do { try store.saveLease(stored, licenseID: grant.licenseID) } catch {
            logger.warning("cannot store the lease", metadata: ["error": "\(error)"])
        }
    }
}
