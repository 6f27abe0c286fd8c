import Foundation
import LicenseCore
import Metrics
import Synchronization

/// What `GET /ready` answers, as plain data: ready only while the listener accepts and is not
/// draining, the latest probe of the repository and of the seat store each answered within its
/// deadline (and not longer ago than `freshness`), and a signing key is loaded. Times are
/// passed in.
public struct ReadinessState: Sendable {
    /// How long a backend's last successful probe counts as recent.
    public let freshness: Duration
    private(set) var listening = false
    private(set) var draining = false
    private(set) var signingKeyLoaded = false
    private(set) var lastAnswer: [String: ContinuousClock.Instant] = [:]
    private(set) var lastFailure: [String: String] = [:]

    /// The backends probed: `repository` and `seat_store`.
    public static let backends = ["repository", "seat_store"]

    public init(freshness: Duration = .seconds(15)) {
        self.freshness = freshness
    }

    public mutating func listenerStarted() { listening = true }
    /// Graceful shutdown began: not ready from now on, whatever else holds.
    public mutating func drainStarted() { draining = true }
    public mutating func signingKey(loaded: Bool) { signingKeyLoaded = loaded }

    /// A probe of `backend` answered in time (`failure` nil) or did not (its reason).
    public mutating func probed(_ backend: String, at now: ContinuousClock.Instant, failure: String?) {
        if let failure {
            lastFailure[backend] = failure
        } else {
            lastAnswer[backend] = now
            lastFailure[backend] = nil
        }
    }

    /// The failing checks and why; empty when ready.
    public func failing(at now: ContinuousClock.Instant) -> [String: String] {
        var failing: [String: String] = [:]
        if !listening { failing["listener"] = "not listening yet" }
        if draining { failing["listener"] = "draining: the server is shutting down" }
        if !signingKeyLoaded { failing["signing_key"] = "no signing key loaded" }
        for backend in Self.backends {
            // The latest probe failed, or no probe has answered for a while (one still running).
            if let failure = lastFailure[backend] {
                failing[backend] = failure
            } else if lastAnswer[backend].map({ $0.duration(to: now) > freshness }) ?? true {
                failing[backend] = "no answer to a probe within the last \(freshness)"
            }
        }
        return failing
    }
}

/// `ReadinessState` shared by the listener, the probes and the ops port.
public final class Readiness: Sendable {
    private let state: Mutex<ReadinessState>

    public init(freshness: Duration = .seconds(15)) {
        state = Mutex(ReadinessState(freshness: freshness))
    }

    public func update(_ change: (inout ReadinessState) -> Void) {
        state.withLock { change(&$0) }
    }

    /// The failing checks and why; empty when ready.
    public func failing() -> [String: String] {
        state.withLock { $0.failing(at: .now) }
    }

    /// Probes the repository and the seat store of `service` (each within `deadline`), and
    /// whether its signer publishes a key; records the outcomes.
    public func probe(_ service: LicenseService, deadline: Duration) async {
        async let repository = Self.attempt(deadline) { try await service.repository.ping() }
        async let seats = Self.attempt(deadline) { try await service.seats.ping() }
        let outcomes = await [("repository", repository), ("seat_store", seats)]
        let keys = (try? JSONSerialization.jsonObject(with: Data(service.signer.jwksJSON().utf8)) as? [String: Any])?["keys"] as? [Any]
        let now = ContinuousClock.now
        update { state in
            for (backend, failure) in outcomes { state.probed(backend, at: now, failure: failure) }
            state.signingKey(loaded: !(keys ?? []).isEmpty)
        }
        for (backend, failure) in outcomes {
            Gauge(label: "licensed_backend_up", dimensions: [("backend", backend)]).record(failure == nil ? 1 : 0)
        }
    }

    /// `nil` when `body` succeeds within `deadline`, otherwise a short reason (no error text:
    /// it could name a host or a user).
    private static func attempt(_ deadline: Duration, _ body: @escaping @Sendable () async throws -> Void) async -> String? {
        do {
            try await withDeadline(deadline, orThrow: { ProbeTimeout() }, body)
            return nil
        } catch is ProbeTimeout {
            return "no answer within \(deadline)"
        } catch let error as LicenseError {
            return "probe failed: \(error.reason.rawValue)"
        } catch {
            return "probe failed: \(type(of: error))"
        }
    }

    private struct ProbeTimeout: Error {}
}
