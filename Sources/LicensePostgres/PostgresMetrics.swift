import LicenseCore
import Metrics
import PostgresNIO

/// The repository's Postgres metrics (`docs/metrics.md`).
enum PostgresMetrics {
    /// `licensed_postgres_connections_in_use`: pooled connections lent out right now.
    static let connectionsInUse = Meter(label: "licensed_postgres_connections_in_use")
    /// `licensed_postgres_pool_size`: the pool's configured size.
    static let poolSize = Gauge(label: "licensed_postgres_pool_size")
    /// `licensed_postgres_operation_duration_seconds{operation}`: a read (one pooled connection
    /// use) or a write (queueing for and taking part in a group commit), failures included.
    static let durations = Dictionary(uniqueKeysWithValues: ["read", "write", "migrate"].map {
        ($0, Metrics.Timer(label: "licensed_postgres_operation_duration_seconds", dimensions: [("operation", $0)], preferredDisplayUnit: .seconds))
    })

    /// `licensed_postgres_errors_total{operation,kind}`: `unavailable` (refused while the
    /// repository is marked down), `connection` (no connection, or it broke), `timeout` (the
    /// deadline or `statement_timeout`), `server` (another error from Postgres), `cancelled` (the
    /// caller gave up first: a readiness probe past its deadline, shutdown). Refusals that are
    /// answers (a duplicate id, a row of another tenant) are not errors.
    static func failed(_ operation: String, kind: String) {
        Counter(label: "licensed_postgres_errors_total", dimensions: [("operation", operation), ("kind", kind)]).increment()
    }

    static let kinds = ["unavailable", "connection", "timeout", "server", "cancelled"]

    /// Makes every error series at 0, so rates and alerts see the first error.
    static func createErrorSeries() {
        for operation in durations.keys {
            for kind in kinds {
                Counter(label: "licensed_postgres_errors_total", dimensions: [("operation", operation), ("kind", kind)]).increment(by: 0)
            }
        }
    }

    /// The `kind` of an error from a repository call.
    static func kind(of error: any Error) -> String {
        if let error = error as? PSQLError, let lost = error.connectionLost {
            if error.serverInfo?[.sqlState] == "57014" { return "timeout" }
            return lost ? "connection" : "server"
        }
        if error is PostgresTimeout || error is GroupCommitTimeout { return "timeout" }
        return "connection"
    }
}

extension PSQLError {
    /// Whether the error's state says the connection or the server went away (class 08,
    /// connection exception, or 57P, operator intervention such as a shutdown) rather than that a
    /// statement was refused; `nil` when the error carries no state (it never reached a server).
    var connectionLost: Bool? {
        serverInfo?[.sqlState].map { $0.hasPrefix("08") || $0.hasPrefix("57P") }
    }
}
