import LicenseCore

/// The life of one lease as a plain value: given what happened (a call's outcome, a notice, the
/// time), it says what happens next and which events to report. ``Lease`` executes it.
///
/// All times are server times (``ServerClock``). Offline grace ends at the lease token's expiry,
/// the horizon the server signed, never later.
struct LeaseStateMachine: Sendable {
    enum State: Hashable, Sendable {
        /// Heartbeats succeed.
        case active
        /// The server cannot be reached; retrying until the grace horizon.
        case offline(failures: Int)
        /// The lease is over.
        case ended(LicenseCallError)
    }

    /// What the executor should do now.
    enum Step: Hashable, Sendable {
        case heartbeat
        case reacquire
        case wait(until: Timestamp)
        case finished(LicenseCallError)
    }

    /// Which call failed.
    enum Call: Sendable { case heartbeat, reacquire }

    private(set) var grant: LeaseGrant
    private(set) var state: State
    private var nextAttemptAt: Timestamp
    private var mustReacquire = false
    private let backoff: Backoff

    /// A lease just acquired.
    init(acquired grant: LeaseGrant, backoff: Backoff) {
        self.grant = grant
        self.state = .active
        self.nextAttemptAt = grant.nextHeartbeatAt
        self.backoff = backoff
    }

    /// A lease restored from disk while the server is unreachable: it runs on grace and tries to
    /// renew at once.
    init(restored grant: LeaseGrant, now: Timestamp, backoff: Backoff) {
        self.grant = grant
        self.state = .offline(failures: 1)
        self.nextAttemptAt = now
        self.backoff = backoff
    }

    static let graceExpired = LicenseCallError(
        code: .unavailable, reason: "GRACE_EXPIRED",
        message: "the license server could not be reached before the offline grace period ended"
    )
    static let revoked = LicenseCallError(code: .failedPrecondition, reason: "SESSION_REVOKED", message: "the session was revoked by an administrator")
    static let released = LicenseCallError(code: .cancelled, reason: "RELEASED", message: "the lease was released")

    var isEnded: Bool { if case .ended = state { true } else { false } }

    /// What to do at `now`. Checks the grace horizon first.
    mutating func step(now: Timestamp) -> (Step, [LeaseEvent]) {
        if case .ended(let why) = state { return (.finished(why), []) }
        if now >= grant.graceUntil {
            state = .ended(Self.graceExpired)
            return (.finished(Self.graceExpired), [.graceExpired])
        }
        guard now >= nextAttemptAt else { return (.wait(until: min(nextAttemptAt, grant.graceUntil)), []) }
        return (mustReacquire ? .reacquire : .heartbeat, [])
    }

    /// A heartbeat succeeded.
    mutating func renewed(_ renewed: LeaseGrant) -> [LeaseEvent] {
        guard !isEnded else { return [] }
        grant = renewed
        state = .active
        nextAttemptAt = renewed.nextHeartbeatAt
        return [.renewed(renewed)]
    }

    /// A new seat was acquired after the old lease lapsed.
    mutating func reacquired(_ fresh: LeaseGrant) -> [LeaseEvent] {
        guard !isEnded else { return [] }
        grant = fresh
        state = .active
        mustReacquire = false
        nextAttemptAt = fresh.nextHeartbeatAt
        return [.reacquired(fresh)]
    }

    /// A call failed with `error` at `now`; `random` draws the backoff jitter.
    mutating func failed(_ call: Call, _ error: LicenseCallError, now: Timestamp, random: () -> Double = { Double.random(in: 0...1) }) -> [LeaseEvent] {
        guard !isEnded else { return [] }
        if error.isTransient {
            let failures: Int
            var events: [LeaseEvent] = []
            switch state {
            case .offline(let previous):
                failures = previous + 1
            default:
                failures = 1
                events.append(.serverUnreachable(graceUntil: grant.graceUntil, error: error))
            }
            state = .offline(failures: failures)
            // Retry with backoff, no later than the next regular heartbeat, and as the server asks.
            var wait = min(backoff.delay(afterFailures: failures, random: random), grant.heartbeatInterval)
            wait = max(wait, .milliseconds(Int64(clamping: error.retryAfterMs)))
            nextAttemptAt = now.advanced(by: wait)
            return events
        }
        if error.reason == "SESSION_REVOKED" {
            state = .ended(Self.revoked)
            return [.revoked]
        }
        if call == .heartbeat, ["LEASE_LAPSED", "SESSION_ENDED", "SESSION_UNKNOWN"].contains(error.reason) {
            // The seat is gone (lapsed while unreachable, or the server lost the session): ask again.
            mustReacquire = true
            nextAttemptAt = now
            return []
        }
        state = .ended(error)
        return [.lost(error)]
    }

    /// The server said a session was revoked.
    mutating func revokedNotice(sessionID: String) -> [LeaseEvent] {
        guard !isEnded, sessionID == grant.sessionID else { return [] }
        state = .ended(Self.revoked)
        return [.revoked]
    }

    /// The holder is done with the lease.
    mutating func release() -> Bool {
        guard !isEnded else { return false }
        state = .ended(Self.released)
        return true
    }
}
