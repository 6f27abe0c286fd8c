/// Runs `body`, throwing `timeout()` (and cancelling `body`) when it takes longer than `limit`.
///
/// `sleep` waits out the limit (throwing when cancelled); the default is `Task.sleep`. A caller
/// on a hot path can pass a cheaper timer: each `Task.sleep` is a dispatch timer that fires even
/// after it was cancelled (docs/benchmarks.md, "Deadlines on the event loop's timers").
public func withDeadline<T: Sendable>(
    _ limit: Duration, orThrow timeout: @escaping @Sendable () -> any Error,
    sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) },
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await sleep(limit)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else { throw timeout() }
        return value
    }
}
