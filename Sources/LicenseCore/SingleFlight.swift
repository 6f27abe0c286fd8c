import Synchronization

/// Concurrent requests for the same key share one run of the work: the first caller runs it and
/// every caller that asks meanwhile gets its outcome.
///
/// For reads that many calls miss at once, such as a license after a restart or once its cache
/// entry aged out: a thousand acquires arriving together then make one Postgres read, not a
/// thousand that queue for the pool (docs/benchmarks.md, "One license read for a burst").
///
/// A caller that joins gets the outcome of a run that began before it asked, so the key must
/// include whatever makes an older answer unacceptable (e.g. the cache generation a caller saw).
/// When the work failed and the running caller's own task was cancelled, the failure is its
/// caller's only: the others start again, and one of them runs the work. A waiting caller is not
/// woken by its own cancellation, so the work must end by itself (a repository read has its
/// deadline).
public final class SingleFlight<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private typealias Waiter = CheckedContinuation<Outcome?, Never>

    private enum Outcome {
        case finished(Result<Value, any Error>)
        /// The work failed with its caller cancelled: try again.
        case abandoned
    }

    private let flights = Mutex<[Key: [Waiter]]>([:])

    public init() {}

    /// Runs `work`, or waits for the run already under way for `key` and returns its outcome.
    public func run(_ key: Key, _ work: () async throws -> Value) async throws -> Value {
        while true {
            let joined: Outcome? = await withCheckedContinuation { (waiter: Waiter) in
                let leads = flights.withLock { flights in
                    guard flights[key] != nil else {
                        flights[key] = []
                        return true
                    }
                    flights[key]!.append(waiter)
                    return false
                }
                if leads { waiter.resume(returning: nil) }
            }
            switch joined {
            case .finished(let result):
                return try result.get()
            case .abandoned:
                continue
            case nil:
                return try await lead(key, work)
            }
        }
    }

    /// Callers waiting for a run under way (for tests).
    public var waiting: Int {
        flights.withLock { $0.values.reduce(0) { $0 + $1.count } }
    }

    private func lead(_ key: Key, _ work: () async throws -> Value) async throws -> Value {
        let result: Result<Value, any Error>
        do {
            result = .success(try await work())
        } catch {
            result = .failure(error)
        }
        let outcome: Outcome = if case .failure = result, Task.isCancelled { .abandoned } else { .finished(result) }
        let waiters = flights.withLock { $0.removeValue(forKey: key) ?? [] }
        for waiter in waiters { waiter.resume(returning: outcome) }
        return try result.get()
    }
}
