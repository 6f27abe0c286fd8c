/// Runs an async start-up once; concurrent callers wait for the first one's result (an actor
/// alone would let every caller that arrives during the first `await` start its own).
actor AsyncOnce<Value: Sendable> {
    private enum State {
        case idle
        case running([CheckedContinuation<Value, any Error>])
        case done(Result<Value, any Error>)
    }

    private var state = State.idle
    private let make: @Sendable () async throws -> Value

    init(_ make: @escaping @Sendable () async throws -> Value) {
        self.make = make
    }

    func value() async throws -> Value {
        switch state {
        case .done(let result):
            return try result.get()
        case .running(var waiters):
            return try await withCheckedThrowingContinuation { continuation in
                waiters.append(continuation)
                state = .running(waiters)
            }
        case .idle:
            state = .running([])
            let result: Result<Value, any Error>
            do { result = .success(try await make()) } catch { result = .failure(error) }
            if case .running(let waiters) = state {
                for waiter in waiters { waiter.resume(with: result) }
            }
            state = .done(result)
            return try result.get()
        }
    }
}
