import Logging
import Synchronization

/// Writes session lease expiries to the repository behind the calls that extend them.
///
/// A heartbeat's new expiry is authoritative in the seat store at once; the session row's copy
/// only serves to rebuild seats after a restart and to show administrators when a lease runs
/// out. So heartbeats record their expiry here and answer without waiting for a commit, and
/// `run()` writes every pending expiry (the latest per session) in one batch per `interval`.
/// After a crash the rows lag by at most one interval plus one write, so seats rebuilt from
/// them expire that much early at worst, far inside any lease time. Ended sessions are never
/// changed (the repository skips them).
public final class LeaseWriteBehind: Sendable {
    private let pending = Mutex<[SessionID: Timestamp]>([:])
    /// When the oldest expiry not yet written was recorded (`nil`: everything is written).
    private let oldestUnwritten = Mutex<ContinuousClock.Instant?>(nil)
    private struct Control {
        var stopping = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let control = Mutex(Control())
    let repository: any LicenseRepository
    let logger: Logger
    /// How often pending expiries are written (1 s).
    public let interval: Duration
    /// The most expiries written in one statement (default 100). Each statement holds its rows'
    /// locks until it commits, and a release or an acquire batch ending one of those sessions
    /// waits for it: 600 rows took 17–24 ms, and that wait was the p99 of acquires and releases
    /// (docs/benchmarks.md, issue 19); 100 rows take about 3 ms.
    public let batchSize: Int

    /// A writer for `repository` (unscoped: it writes sessions of every tenant).
    public init(repository: any LicenseRepository, interval: Duration = .seconds(1), batchSize: Int = 100, logger: Logger = Logger(label: "coditect.license.lease-writer")) {
        precondition(batchSize > 0, "a batch holds at least one lease")
        self.repository = repository
        self.interval = interval
        self.batchSize = batchSize
        self.logger = logger
    }

    /// Records a session's new expiry; a later record for the same session replaces it.
    public func record(_ session: SessionID, expiresAt: Timestamp) {
        let first = pending.withLock { pending in
            if let current = pending[session], current >= expiresAt { return false }
            pending[session] = expiresAt
            return pending.count == 1
        }
        if first { oldestUnwritten.withLock { $0 = $0 ?? .now } }
    }

    /// How long the oldest expiry not yet written has waited (zero when all are written): the
    /// most a session row lags behind its seat. `licensed_write_behind_lag_seconds`.
    public func lag(at now: ContinuousClock.Instant = .now) -> Duration {
        oldestUnwritten.withLock { $0.map { max(.zero, $0.duration(to: now)) } ?? .zero }
    }

    /// Expiries recorded and not yet written.
    public var pendingCount: Int { pending.withLock { $0.count } }

    /// Writes everything recorded so far. On a repository failure the unwritten expiries are
    /// kept for the next flush (unless a newer one was recorded meanwhile) and the error is thrown.
    public func flush() async throws {
        let started = ContinuousClock.now
        let batch = pending.withLock { pending in
            defer { pending.removeAll(keepingCapacity: true) }
            return pending
        }
        guard !batch.isEmpty else { return }
        var remaining = batch[...]
        while !remaining.isEmpty {
            let chunk = Dictionary(uniqueKeysWithValues: remaining.prefix(batchSize).map { ($0.key, $0.value) })
            do {
                try await repository.updateLeases(chunk)
            } catch {
                let unwritten = remaining
                pending.withLock { pending in
                    for (session, expiry) in unwritten where (pending[session] ?? expiry) <= expiry { pending[session] = expiry }
                }
                throw error
            }
            remaining = remaining.dropFirst(chunk.count)
        }
        // Written: what was recorded meanwhile is no older than this flush.
        let more = pending.withLock { !$0.isEmpty }
        oldestUnwritten.withLock { $0 = more ? started : nil }
    }

    /// Flushes every `interval` until `stop()` (or cancellation), then flushes once more.
    /// Failures are logged and retried at the next interval.
    public func run() async {
        while await pause() {
            await flushLogging()
        }
        await flushLogging()
    }

    /// Makes `run()` flush once more and return at once (graceful shutdown, after the server
    /// has stopped taking calls).
    public func stop() {
        let waiter = control.withLock { control in
            control.stopping = true
            defer { control.waiter = nil }
            return control.waiter
        }
        waiter?.resume()
    }

    /// Waits one interval; `false` when stopped or cancelled first.
    private func pause() async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask { [interval] in (try? await Task.sleep(for: interval)) != nil }
            group.addTask { await self.stopped() }
            let elapsed = await group.next() ?? false
            group.cancelAll()
            return elapsed && !control.withLock(\.stopping)
        }
    }

    /// Returns once `stop()` is called or the task is cancelled.
    private func stopped() async -> Bool {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = control.withLock { control in
                    if control.stopping || Task.isCancelled { return true }
                    control.waiter = continuation
                    return false
                }
                if now { continuation.resume() }
            }
            return false
        } onCancel: {
            let waiter = control.withLock { control in
                defer { control.waiter = nil }
                return control.waiter
            }
            waiter?.resume()
        }
    }

    private func flushLogging() async {
        do {
            try await flush()
        } catch {
            logger.warning("could not write lease expiries; retrying", metadata: [
                "pending": "\(pendingCount)", "error": "\((error as? LicenseError)?.message ?? "\(type(of: error))")",
            ])
        }
    }
}
