/// A circuit breaker for a backend that can refuse connections: calls fail at once while the
/// backend is known to be down, instead of each waiting out its deadline.
///
/// A plain state machine; its owner runs the probes it asks for and reports how they went.
/// - Closed: calls pass. A call failing in a way that may mean the backend is down (no
///   connection, a timeout) asks for a probe: one fresh connection attempt.
/// - Probing: calls are refused while the probe runs (milliseconds against a backend that
///   refuses, at most the connect timeout against one that does not answer): a call let through
///   would wait out its whole deadline on a dead backend. The probe connecting closes the
///   breaker; the probe failing opens it.
/// - Open: calls are refused at once until the backoff ends (50 ms, doubling to 5 s, with
///   jitter); then the next call asks for another probe and is refused too.
/// - Half-open: that probe runs; calls are still refused until it connects, so only probes
///   touch a backend known to have been down.
public struct BackendBreaker: Sendable {
    public enum State: Hashable, Sendable {
        case closed
        case probing
        case open(until: ContinuousClock.Instant)
        case halfOpen
    }

    /// What to do with a call.
    public enum Admission: Hashable, Sendable {
        case pass
        /// Fail the call now; the backend may be tried again after this long.
        case refuse(retryAfter: Duration)
        /// Fail the call now and start a probe.
        case refuseAndProbe
    }

    public private(set) var state: State = .closed
    /// Probes failed in a row.
    public private(set) var failures = 0
    public var initialBackoff: Duration = .milliseconds(50)
    public var maximumBackoff: Duration = .seconds(5)

    public init() {}

    /// Decides a call's fate at `now`.
    public mutating func admit(at now: ContinuousClock.Instant) -> Admission {
        switch state {
        case .closed:
            return .pass
        case .probing, .halfOpen:
            return .refuse(retryAfter: initialBackoff)
        case .open(let until):
            if now < until { return .refuse(retryAfter: now.duration(to: until)) }
            state = .halfOpen
            return .refuseAndProbe
        }
    }

    /// A call failed in a way that may mean the backend is down. Returns whether to probe.
    public mutating func callFailed() -> Bool {
        guard state == .closed else { return false }
        state = .probing
        return true
    }

    /// A probe ended. `jitter` in 0...1 picks the point between half and all of the backoff.
    public mutating func probeFinished(connected: Bool, at now: ContinuousClock.Instant, jitter: Double = 1) {
        guard !connected else {
            state = .closed
            failures = 0
            return
        }
        failures += 1
        let exponent = min(failures - 1, 16)
        let full = min(initialBackoff * (1 << exponent), maximumBackoff)
        state = .open(until: now.advanced(by: full * (0.5 + 0.5 * min(max(jitter, 0), 1))))
    }
}
