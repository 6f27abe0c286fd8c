/// How ``LicenseClient/withLease(licenseID:options:_:)`` acquires and keeps a seat.
public struct LeaseOptions: Sendable {
    /// The idempotency key of the acquire (default: a new UUID; retries reuse it).
    public var idempotencyKey: String?
    /// Shown to administrators with the session (e.g. `["app": "coditect", "version": "2.3"]`).
    public var clientInfo: [String: String] = [:]
    /// When the server is unreachable at start, run on the lease stored by the previous run on
    /// this machine (after verifying its token offline) until its grace horizon. Default true.
    public var startOffline = true
    /// How long the first acquire retries transient failures (default: the client's retry budget).
    public var acquireBudget: Duration?
    /// How long the release on exit may take (default 3 s); if it fails, the seat frees itself
    /// when its lease lapses.
    public var releaseTimeout: Duration = .seconds(3)

    /// Default options.
    public init() {}
}
