@testable import LicenseClient
import LicenseCore
import Testing

/// The lease's decisions, without a server or a clock: every transition the lease loop executes.
@Suite("Lease state machine")
struct LeaseStateMachineTests {
    let start = Timestamp(millisecondsSinceEpoch: 1_800_000_000_000)
    let backoff = Backoff(initial: .seconds(1), maximum: .seconds(30))

    func grant(at now: Timestamp, session: String = "ses_1", grace: Duration = .seconds(86_400)) -> LeaseGrant {
        let claims = LeaseClaims(
            issuer: "coditect-licensed", userID: "usr_1", tenantID: "t1", licenseID: "lic", sessionID: session,
            hardwareHash: "h", features: ["pro"], issuedAt: now.secondsSinceEpoch, notBefore: now.secondsSinceEpoch - 60,
            expiresAt: now.advanced(by: grace).secondsSinceEpoch, tokenID: "jti"
        )
        return LeaseGrant(
            licenseID: "lic", sessionID: session, token: "token-\(session)-\(now.millisecondsSinceEpoch)", claims: claims,
            leaseExpiresAt: now.advanced(by: .seconds(360)), nextHeartbeatAt: now.advanced(by: .seconds(300)),
            heartbeatInterval: .seconds(300), resumed: false
        )
    }

    let unavailable = LicenseCallError(code: .unavailable, reason: "CONNECT_FAILED", message: "down")

    @Test func waitsUntilTheHeartbeatIsDueThenHeartbeats() {
        var machine = LeaseStateMachine(acquired: grant(at: start), backoff: backoff)
        #expect(machine.step(now: start).0 == .wait(until: start.advanced(by: .seconds(300))))
        #expect(machine.step(now: start.advanced(by: .seconds(299))).0 == .wait(until: start.advanced(by: .seconds(300))))
        #expect(machine.step(now: start.advanced(by: .seconds(300))).0 == .heartbeat)
        let later = start.advanced(by: .seconds(300))
        let renewed = grant(at: later)
        #expect(machine.renewed(renewed) == [.renewed(renewed)])
        #expect(machine.step(now: later).0 == .wait(until: later.advanced(by: .seconds(300))))
    }

    @Test func anUnreachableServerIsReportedOnceAndRetriedWithBackoffUntilTheGraceHorizon() {
        let first = grant(at: start, grace: .seconds(600))
        var machine = LeaseStateMachine(acquired: first, backoff: backoff)
        var now = start.advanced(by: .seconds(300))
        let events = machine.failed(.heartbeat, unavailable, now: now, random: { 1 })
        #expect(events == [.serverUnreachable(graceUntil: first.graceUntil, error: unavailable)])
        #expect(machine.state == .offline(failures: 1))
        #expect(machine.step(now: now).0 == .wait(until: now.advanced(by: .seconds(1))))
        now = now.advanced(by: .seconds(1))
        #expect(machine.step(now: now).0 == .heartbeat)
        #expect(machine.failed(.heartbeat, unavailable, now: now, random: { 1 }).isEmpty, "reported once")
        #expect(machine.step(now: now).0 == .wait(until: now.advanced(by: .seconds(2))))
        // Backoff is capped (30 s here) and never sleeps past the grace horizon.
        for _ in 0..<10 { _ = machine.failed(.heartbeat, unavailable, now: now, random: { 1 }) }
        #expect(machine.step(now: now).0 == .wait(until: now.advanced(by: .seconds(30))))
        let (step, ended) = machine.step(now: first.graceUntil)
        #expect(step == .finished(LeaseStateMachine.graceExpired))
        #expect(ended == [.graceExpired])
        #expect(machine.failed(.heartbeat, unavailable, now: now).isEmpty, "nothing happens after the end")
    }

    @Test func retryAfterIsObeyed() {
        var machine = LeaseStateMachine(acquired: grant(at: start), backoff: backoff)
        var busy = unavailable
        busy.retryAfterMs = 7_000
        _ = machine.failed(.heartbeat, busy, now: start, random: { 0 })
        #expect(machine.step(now: start).0 == .wait(until: start.advanced(by: .seconds(7))))
    }

    @Test func aLapsedLeaseIsReacquiredAndTheNewSessionReplacesTheOld() {
        var machine = LeaseStateMachine(acquired: grant(at: start), backoff: backoff)
        let lapsed = LicenseCallError(code: .resourceExhausted, reason: "LEASE_LAPSED", message: "lapsed")
        #expect(machine.failed(.heartbeat, lapsed, now: start).isEmpty)
        #expect(machine.step(now: start).0 == .reacquire)
        // Unreachable while re-acquiring: on grace, then a retry of the re-acquire.
        #expect(machine.failed(.reacquire, unavailable, now: start, random: { 0 }).count == 1)
        #expect(machine.step(now: start.advanced(by: .seconds(1))).0 == .reacquire)
        let fresh = grant(at: start.advanced(by: .seconds(1)), session: "ses_2")
        #expect(machine.reacquired(fresh) == [.reacquired(fresh)])
        #expect(machine.grant.sessionID == "ses_2")
        #expect(machine.state == .active)
    }

    @Test func noSeatsOnReacquireEndsTheLease() {
        var machine = LeaseStateMachine(acquired: grant(at: start), backoff: backoff)
        _ = machine.failed(.heartbeat, LicenseCallError(code: .failedPrecondition, reason: "SESSION_ENDED", message: "ended"), now: start)
        let full = LicenseCallError(code: .resourceExhausted, reason: "NO_SEATS", message: "full", details: ["seats_total": "1"])
        #expect(machine.failed(.reacquire, full, now: start) == [.lost(full)])
        #expect(machine.step(now: start).0 == .finished(full))
    }

    @Test func revocationByAnswerOrByNoticeEndsTheLease() {
        var byAnswer = LeaseStateMachine(acquired: grant(at: start), backoff: backoff)
        let revoked = LicenseCallError(code: .failedPrecondition, reason: "SESSION_REVOKED", message: "revoked")
        #expect(byAnswer.failed(.heartbeat, revoked, now: start) == [.revoked])
        var byNotice = LeaseStateMachine(acquired: grant(at: start), backoff: backoff)
        #expect(byNotice.revokedNotice(sessionID: "ses_other").isEmpty, "another session's notice is ignored")
        #expect(byNotice.revokedNotice(sessionID: "ses_1") == [.revoked])
        #expect(byNotice.release() == false, "an ended lease has nothing to release")
    }

    @Test func aRefusalEndsTheLeaseWithTheServersReason() {
        var machine = LeaseStateMachine(acquired: grant(at: start), backoff: backoff)
        let suspended = LicenseCallError(code: .failedPrecondition, reason: "LICENSE_SUSPENDED", message: "suspended")
        #expect(machine.failed(.heartbeat, suspended, now: start) == [.lost(suspended)])
    }

    @Test func aRestoredLeaseTriesAtOnceAndDoesNotReportTwice() {
        var machine = LeaseStateMachine(restored: grant(at: start), now: start, backoff: backoff)
        #expect(machine.step(now: start).0 == .heartbeat)
        #expect(machine.failed(.heartbeat, unavailable, now: start).isEmpty)
    }
}
