/// Runs `body`, throwing `timeout()` (and cancelling `body`) when it takes longer than `limit`.
public func withDeadline<T: Sendable>(
    _ limit: Duration, orThrow timeout: @escaping @Sendable () -> any Error, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else { throw timeout() }
        return value
    }
}
