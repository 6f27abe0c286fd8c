import LicenseCore
import Testing

/// The sweeper's decision, from its three reads; no store, no clock.
@Suite("Session sweep")
struct SessionSweepTests {
    let now = Timestamp(millisecondsSinceEpoch: 1_000_000)

    func row(_ id: String) -> LeaseSession {
        LeaseSession(id: SessionID(id), tenantID: "t", licenseID: "l", userID: "u", hardwareID: "hw-\(id)", idempotencyKey: "",
                     createdAt: now, leaseExpiresAt: now.advanced(by: .seconds(60)))
    }

    func handle(_ id: String, pending: Bool = false) -> SeatLease {
        SeatLease(sessionID: SessionID(id), expiresAt: now.advanced(by: .seconds(60)), isPending: pending)
    }

    @Test func aLiveRowWithoutASeatIsEndedAndASeatWithoutARowIsReleased() {
        let sweep = SessionSweep(before: [row("a"), row("b")], handles: [handle("a"), handle("x")], after: [row("a"), row("b")])
        #expect(sweep.lapsed.map(\.id) == ["b"])
        #expect(sweep.orphanHandles == ["x"])
    }

    @Test func rowsCommittedDuringTheReadsAreLeftForTheNextSweep() {
        // "c" committed between the handle read and the second row read: its handle (made
        // before its commit) is pending or already read; it must not be ended.
        let sweep = SessionSweep(before: [row("a")], handles: [handle("a")], after: [row("a"), row("c")])
        #expect(sweep.isEmpty)
    }

    @Test func aHandleConfirmedDuringTheReadsIsNotReleased() {
        // "d" was confirmed before the handle read, so its row committed before the second row read.
        let sweep = SessionSweep(before: [], handles: [handle("d")], after: [row("d")])
        #expect(sweep.isEmpty)
    }

    @Test func pendingHandlesAreLeftToConfirmOrLapse() {
        let sweep = SessionSweep(before: [], handles: [handle("p", pending: true)], after: [])
        #expect(sweep.isEmpty)
    }

    @Test func aRowEndedDuringTheReadsIsNotEndedAgain() {
        let sweep = SessionSweep(before: [row("e")], handles: [], after: [])
        #expect(sweep.isEmpty)
    }
}

/// The breaker's transitions, with instants computed, not waited for.
@Suite("Backend breaker")
struct BackendBreakerTests {
    let start = ContinuousClock.now

    @Test func aFailedCallStartsAProbeAndCallsWaitForNoDeadlineUntilItConnects() {
        var breaker = BackendBreaker()
        let first = breaker.admit(at: start)
        #expect(first == .pass)
        let probe = breaker.callFailed()
        let second = breaker.callFailed()
        #expect(probe)
        #expect(!second, "one probe at a time")
        let admission1 = breaker.admit(at: start)
        #expect(admission1 == .refuse(retryAfter: .milliseconds(50)), "refused while the probe runs")
        breaker.probeFinished(connected: false, at: start, jitter: 1)
        #expect(breaker.state == .open(until: start.advanced(by: .milliseconds(50))))
        let admission2 = breaker.admit(at: start.advanced(by: .milliseconds(10)))
        #expect(admission2 == .refuse(retryAfter: .milliseconds(40)))
        // The backoff ended: one probe, and calls stay refused until it connects.
        let admission3 = breaker.admit(at: start.advanced(by: .milliseconds(50)))
        #expect(admission3 == .refuseAndProbe)
        let admission4 = breaker.admit(at: start.advanced(by: .milliseconds(51)))
        #expect(admission4 == .refuse(retryAfter: .milliseconds(50)))
        breaker.probeFinished(connected: false, at: start.advanced(by: .milliseconds(52)), jitter: 1)
        #expect(breaker.state == .open(until: start.advanced(by: .milliseconds(152))), "the backoff doubles")
        let admission5 = breaker.admit(at: start.advanced(by: .milliseconds(152)))
        #expect(admission5 == .refuseAndProbe)
        breaker.probeFinished(connected: true, at: start.advanced(by: .milliseconds(153)))
        #expect(breaker.state == .closed)
        #expect(breaker.failures == 0)
        let admission6 = breaker.admit(at: start.advanced(by: .milliseconds(154)))
        #expect(admission6 == .pass)
    }

    @Test func theBackoffIsCappedAndJittered() {
        var breaker = BackendBreaker()
        _ = breaker.callFailed()
        for _ in 0..<20 { breaker.probeFinished(connected: false, at: start, jitter: 1) }
        #expect(breaker.state == .open(until: start.advanced(by: .seconds(5))))
        breaker.probeFinished(connected: false, at: start, jitter: 0)
        #expect(breaker.state == .open(until: start.advanced(by: .milliseconds(2_500))))
    }
}
