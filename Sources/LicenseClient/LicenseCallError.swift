import LicenseWire

/// A call that did not succeed: the server's status, or a failure on this side expressed the same
/// way (`UNAVAILABLE`/`CONNECTION_CLOSED`, `DEADLINE_EXCEEDED`/`TIMEOUT`, `UNAUTHENTICATED`/`INVALID_TOKEN`).
///
/// The message never contains a credential, token or key.
public struct LicenseCallError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The gRPC-style status code.
    public var code: WireStatus.Code
    /// The machine-readable reason, e.g. `NO_SEATS`.
    public var reason: String
    /// The server's human-readable message.
    public var message: String
    /// When non-zero, the server's hint for when a retry may succeed.
    public var retryAfterMs: UInt64
    /// Machine-readable facts about the failure, e.g. `seats_total` with `NO_SEATS`.
    public var details: [String: String]

    public init(code: WireStatus.Code, reason: String, message: String, retryAfterMs: UInt64 = 0, details: [String: String] = [:]) {
        self.code = code
        self.reason = reason
        self.message = message
        self.retryAfterMs = retryAfterMs
        self.details = details
    }

    init(_ status: WireStatus) {
        self.init(code: status.code, reason: status.reason, message: status.message, retryAfterMs: status.retryAfterMs, details: status.details)
    }

    /// The code's gRPC name.
    public var codeName: String { WireStatus.name(of: code) }

    public var description: String { "\(codeName) \(reason): \(message)" }

    /// With `NO_SEATS` and `LEASE_LAPSED`: how many seats the license has.
    public var seatsTotal: Int? { details["seats_total"].flatMap { Int($0) } }

    /// Whether the license has no free seat (`RESOURCE_EXHAUSTED`/`NO_SEATS`). Not retried.
    public var isNoSeats: Bool { code == .resourceExhausted && reason == "NO_SEATS" }

    /// Whether the same call may succeed later: the server or the network is unavailable, the
    /// call timed out, or the server asked to slow down. `NO_SEATS` is not retryable.
    public var isTransient: Bool {
        switch code {
        case .unavailable, .deadlineExceeded, .aborted: true
        // Limits that lift by themselves; `retry_after_ms` says when.
        case .resourceExhausted: ["TOO_MANY_IN_FLIGHT", "SIGN_IN_THROTTLED", "TOO_MANY_CONNECTIONS"].contains(reason)
        default: false
        }
    }

    static func connectionClosed() -> LicenseCallError {
        LicenseCallError(code: .unavailable, reason: "CONNECTION_CLOSED", message: "the connection to the license server closed")
    }

    static func timeout() -> LicenseCallError {
        LicenseCallError(code: .deadlineExceeded, reason: "TIMEOUT", message: "the license server did not answer in time")
    }

    static func invalidToken(_ message: String) -> LicenseCallError {
        LicenseCallError(code: .unauthenticated, reason: "INVALID_TOKEN", message: message)
    }
}
