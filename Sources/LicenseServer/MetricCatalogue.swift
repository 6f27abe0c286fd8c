/// Every metric `licensed` exports, with its type, labels and help text: the one list that
/// `docs/metrics.md` documents, `/metrics` takes its `# HELP` lines from, and the tests hold
/// the live exposition to.
public enum MetricCatalogue {
    /// One metric family.
    public struct Entry: Sendable {
        public let name: String
        /// `counter`, `gauge` or `histogram`.
        public let type: String
        public let labels: [String]
        public let help: String
    }

    private static func counter(_ name: String, _ labels: [String] = [], _ help: String) -> Entry { Entry(name: name, type: "counter", labels: labels, help: help) }
    private static func gauge(_ name: String, _ labels: [String] = [], _ help: String) -> Entry { Entry(name: name, type: "gauge", labels: labels, help: help) }
    private static func histogram(_ name: String, _ labels: [String] = [], _ help: String) -> Entry { Entry(name: name, type: "histogram", labels: labels, help: help) }

    public static let entries: [Entry] = [
        gauge("licensed_build_info", ["version"], "Always 1; the labels say which build runs."),
        // Calls
        counter("licensed_calls_total", ["call", "code", "reason"], "Calls answered, by call, status code and reason (OK and OK for success)."),
        histogram("licensed_call_duration_seconds", ["call"], "Time from a decoded request to its answer, by call."),
        counter("licensed_acquires_total", ["outcome", "reason"], "Acquires: granted, denied by policy (the reason says why) or failed by an error."),
        gauge("licensed_calls_in_flight", [], "Authenticated calls being served now."),
        // Connections
        gauge("licensed_connections_open", [], "Client connections being served now."),
        counter("licensed_connections_refused_total", [], "Connections refused over the total or per-address cap."),
        counter("licensed_connections_shed_total", [], "Queued connections closed because the process was out of file descriptors."),
        counter("licensed_tls_handshake_failures_total", ["reason"], "Connections that never completed the TLS handshake, by reason."),
        // Health
        gauge("licensed_ready", [], "1 when GET /ready answers 200, else 0."),
        gauge("licensed_backend_up", ["backend"], "1 when the latest probe of the backend (repository, seat_store) answered in time, else 0."),
        // Seats and licenses
        gauge("licensed_seats_in_use", ["tenant", "license"], "Seats held now, per license (licenses past the series cap are left out)."),
        gauge("licensed_seats_capacity", ["tenant", "license"], "Seats the license allows at once."),
        gauge("licensed_license_expiry_timestamp_seconds", ["tenant", "license"], "When the license stops being usable (Unix time); absent for licenses without an end."),
        gauge("licensed_licenses", [], "Licenses in the repository."),
        gauge("licensed_license_series_omitted", [], "Licenses without series of their own (over --metrics-license-series)."),
        // Signing and TLS
        histogram("licensed_signing_duration_seconds", [], "Time to sign one lease token."),
        counter("licensed_signing_errors_total", [], "Lease tokens that could not be signed."),
        gauge("licensed_signing_key_age_seconds", [], "Age of the key that signs lease tokens."),
        gauge("licensed_tls_certificate_expiry_timestamp_seconds", [], "When the server's TLS certificate expires (Unix time)."),
        // Writes
        gauge("licensed_write_behind_lag_seconds", [], "How long the oldest heartbeat expiry not yet written to the repository has waited."),
        histogram("licensed_group_commit_batch_size", [], "Writes combined into one repository commit."),
        histogram("licensed_group_commit_duration_seconds", [], "Time to commit one batch of writes."),
        // Redis
        histogram("licensed_redis_command_duration_seconds", [], "Time from sending a Redis command to its reply or failure (reconnects and redirections included)."),
        gauge("licensed_redis_commands_in_flight", [], "Redis commands sent and not yet answered."),
        gauge("licensed_redis_connections_open", [], "Connections to Redis open now, over every pool."),
        counter("licensed_redis_errors_total", ["code"], "Redis commands that failed, by error code (REDIS_UNREACHABLE, REDIS_TIMEOUT, ...)."),
        // Postgres
        histogram("licensed_postgres_operation_duration_seconds", ["operation"], "Time of one repository operation (read, write through group commit, migrate), waiting for a connection included."),
        counter("licensed_postgres_errors_total", ["operation", "kind"], "Repository operations that failed, by kind (unavailable, connection, timeout, server, cancelled)."),
        gauge("licensed_postgres_connections_in_use", [], "Pooled Postgres connections lent out now."),
        gauge("licensed_postgres_pool_size", [], "The Postgres pool's configured size."),
        // Process
        counter("process_cpu_seconds_total", [], "User and system CPU time spent."),
        gauge("process_resident_memory_bytes", [], "Resident memory size."),
        gauge("process_virtual_memory_bytes", [], "Virtual memory size."),
        gauge("process_open_fds", [], "Open file descriptors."),
        gauge("process_max_fds", [], "The open-file limit (soft)."),
        gauge("process_start_time_seconds", [], "When the process started (Unix time)."),
    ]

    private static let help: [String: String] = Dictionary(uniqueKeysWithValues: entries.map { ($0.name, $0.help) })

    /// The exposition with a `# HELP` line before each family's `# TYPE` line (the metrics
    /// backend writes none).
    public static func addingHelp(to exposition: [UInt8]) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(exposition.count + entries.count * 80)
        let typePrefix = Array("# TYPE ".utf8)
        var lineStart = 0
        while lineStart < exposition.count {
            let lineEnd = exposition[lineStart...].firstIndex(of: 10) ?? exposition.count
            let line = exposition[lineStart..<lineEnd]
            if line.starts(with: typePrefix) {
                let rest = line.dropFirst(typePrefix.count)
                let name = String(decoding: rest.prefix { $0 != 32 }, as: UTF8.self)
                if let text = help[name] { output += Array("# HELP \(name) \(text)\n".utf8) }
            }
            output += line
            output.append(10)
            lineStart = lineEnd + 1
        }
        return output
    }
}
