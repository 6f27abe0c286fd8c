/// Waiting for a condition that another process makes true (a replica in sync, a session waiting
/// on a lock), bounded so that a test that never sees it fails with its name instead of hanging.
public enum Polling {
    /// Checks `condition` every `interval` until it holds; throws a `TestServerError` naming
    /// `what` (and `detail`, such as where the servers' logs are) once `limit` has passed.
    public static func waitUntil(
        within limit: Duration, every interval: Duration = .milliseconds(100), _ what: String, detail: String? = nil,
        _ condition: () async throws -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: interval)
        }
        throw TestServerError("timed out after \(limit) waiting for \(what)" + (detail.map { "; \($0)" } ?? ""))
    }
}
