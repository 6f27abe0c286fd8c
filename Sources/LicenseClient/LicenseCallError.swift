import LicenseWire

/// A call that did not succeed: the server's status, or a transport failure expressed the same
/// way (`UNAVAILABLE`/`CONNECTION_CLOSED`, `DEADLINE_EXCEEDED`/`TIMEOUT`).
public struct LicenseCallError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The gRPC-style status code.
    public var code: WireStatus.Code
    /// The machine-readable reason, e.g. `NO_SEATS`.
    public var reason: String
    /// The server's human-readable message.
    public var message: String
    /// When non-zero, the server's hint for when a retry may succeed.
    public var retryAfterMs: UInt64

    public init(code: WireStatus.Code, reason: String, message: String, retryAfterMs: UInt64 = 0) {
        self.code = code
        self.reason = reason
        self.message = message
        self.retryAfterMs = retryAfterMs
    }

    init(_ status: WireStatus) {
        self.init(code: status.code, reason: status.reason, message: status.message, retryAfterMs: status.retryAfterMs)
    }

    /// The code's gRPC name.
    public var codeName: String { WireStatus.name(of: code) }

    public var description: String { "\(codeName) \(reason): \(message)" }

    static func connectionClosed() -> LicenseCallError {
        LicenseCallError(code: .unavailable, reason: "CONNECTION_CLOSED", message: "the connection to the license server closed")
    }

    static func timeout() -> LicenseCallError {
        LicenseCallError(code: .deadlineExceeded, reason: "TIMEOUT", message: "the license server did not answer in time")
    }
}
