import LicenseCore
import Metrics

/// The per-call metrics (`docs/metrics.md`): `licensed_calls_total{call,code,reason}`,
/// `licensed_call_duration_seconds{call}` and, for acquires,
/// `licensed_acquires_total{outcome,reason}`. The series a call records on success are made
/// once, so the hot path looks nothing up; a refusal looks its counter up by reason (a bounded
/// set: `LicenseError.Reason`).
struct CallMetrics: Sendable {
    /// The wire calls by their metric label, plus `unknown` for a frame without a known call.
    static let callNames = [
        "hello", "acquire", "heartbeat", "release", "get_signing_keys", "create_tenant", "list_tenants", "get_tenant", "update_tenant",
        "create_license", "get_license", "update_license", "list_licenses", "license_status", "create_user", "list_users",
        "set_user_disabled", "create_api_key", "list_api_keys", "rotate_api_key", "revoke_api_key", "list_sessions",
        "revoke_session", "query_audit", "rotate_signing_key", "unknown",
    ]

    /// The reason label of a call answered OK.
    static let okReason = "OK"

    private struct CallSeries: Sendable {
        let duration: Metrics.Timer
        let ok: Counter
    }

    private let series: [String: CallSeries]
    private let acquiresGranted: Counter

    static let shared = CallMetrics()

    private init() {
        series = Dictionary(uniqueKeysWithValues: Self.callNames.map { call in
            (call, CallSeries(
                duration: Metrics.Timer(label: "licensed_call_duration_seconds", dimensions: [("call", call)], preferredDisplayUnit: .seconds),
                ok: Counter(label: "licensed_calls_total", dimensions: [("call", call), ("code", Self.okReason), ("reason", Self.okReason)])
            ))
        })
        acquiresGranted = Counter(label: "licensed_acquires_total", dimensions: [("outcome", "granted"), ("reason", Self.okReason)])
    }

    /// Records one call that took from `start` until now and ended with `error` (`nil`: OK).
    func record(_ call: String, since start: ContinuousClock.Instant, error: LicenseError?) {
        let series = series[call] ?? series["unknown"]!
        series.duration.recordSince(start)
        guard let error else {
            series.ok.increment()
            if call == "acquire" { acquiresGranted.increment() }
            return
        }
        Counter(label: "licensed_calls_total", dimensions: [("call", call), ("code", error.code.name), ("reason", error.reason.rawValue)]).increment()
        if call == "acquire" {
            // A backend outage is not a denial by policy: it is an error, counted apart.
            let outcome = error.reason == .backendUnavailable || error.code == .internal ? "error" : "denied"
            Counter(label: "licensed_acquires_total", dimensions: [("outcome", outcome), ("reason", error.reason.rawValue)]).increment()
        }
    }
}
