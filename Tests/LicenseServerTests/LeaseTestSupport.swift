import Foundation
@testable import LicenseClient
import LicenseCore
import LicensePostgres
import LicenseRedis
import Synchronization
import Testing

/// A test server run in the background of a task group, so a test can stop it and start it again
/// (same data folder, same port) while a client keeps its lease.
struct BackgroundServer: Sendable {
    let server: TestServer
    private let stopSignal: AsyncStream<Void>.Continuation
    private let stopped: AsyncStream<Void>

    static func start(
        in group: inout ThrowingTaskGroup<Void, any Error>, clock: ManualWallClock, dataDirectory: String, port: Int = 0,
        redis: RedisConfiguration? = nil, postgres: PostgresSettings? = nil
    ) async throws -> BackgroundServer {
        let (ready, readyContinuation) = AsyncStream.makeStream(of: TestServer.self)
        let (stopRequests, stopSignal) = AsyncStream.makeStream(of: Void.self)
        let (stopped, stoppedContinuation) = AsyncStream.makeStream(of: Void.self)
        group.addTask {
            defer {
                readyContinuation.finish()
                stoppedContinuation.finish()
            }
            try await TestServer.run(clock: clock, redis: redis, postgres: postgres, dataDirectory: dataDirectory, port: port) { server in
                readyContinuation.yield(server)
                for await _ in stopRequests { break }
            }
        }
        var iterator = ready.makeAsyncIterator()
        guard let server = await iterator.next() else {
            throw LicenseCallError(code: .unavailable, reason: "TEST_SERVER", message: "the test server did not start")
        }
        return BackgroundServer(server: server, stopSignal: stopSignal, stopped: stopped)
    }

    /// Shuts the server down (going-away notice, drain) and waits until it has stopped.
    func stop() async {
        stopSignal.yield()
        for await _ in stopped {}
    }
}

/// A `withLease` running in the background: its lease, a way to end its body, and its outcome.
final class LeaseRun: Sendable {
    let lease: Lease
    private let done: AsyncStream<Void>.Continuation
    private let outcomes: AsyncStream<Result<Void, any Error>>

    private init(lease: Lease, done: AsyncStream<Void>.Continuation, outcomes: AsyncStream<Result<Void, any Error>>) {
        self.lease = lease
        self.done = done
        self.outcomes = outcomes
    }

    /// Starts `client.withLease` in `group` with a body that waits for ``finish()``; returns once
    /// the body runs. Throws what `withLease` throws before that.
    static func start(_ client: LicenseClient, licenseID: String = "acme-pro", options: LeaseOptions = LeaseOptions(), in group: inout ThrowingTaskGroup<Void, any Error>) async throws -> LeaseRun {
        let (leases, leaseContinuation) = AsyncStream.makeStream(of: Lease.self)
        let (doneSignals, done) = AsyncStream.makeStream(of: Void.self)
        let (outcomes, outcomeContinuation) = AsyncStream.makeStream(of: Result<Void, any Error>.self)
        group.addTask {
            let outcome = await Result {
                try await client.withLease(licenseID: licenseID, options: options) { lease in
                    leaseContinuation.yield(lease)
                    for await _ in doneSignals { break }
                    try Task.checkCancellation()
                }
            }
            leaseContinuation.finish()
            outcomeContinuation.yield(outcome)
            outcomeContinuation.finish()
        }
        var iterator = leases.makeAsyncIterator()
        guard let lease = await iterator.next() else {
            var results = outcomes.makeAsyncIterator()
            if case .failure(let error)? = await results.next() { throw error }
            throw LicenseCallError(code: .internal, reason: "TEST", message: "withLease ended before its body ran")
        }
        return LeaseRun(lease: lease, done: done, outcomes: outcomes)
    }

    /// Lets the body return.
    func finish() { done.yield() }

    /// What `withLease` returned or threw.
    func outcome() async -> Result<Void, any Error> {
        var iterator = outcomes.makeAsyncIterator()
        return await iterator.next() ?? .failure(CancellationError())
    }
}

extension Result where Failure == any Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}

/// Drives a lease through simulated time: collects its events, and moves the client's (and the
/// servers') manual clocks from one sleep to the next until the awaited event arrives. Nothing
/// sleeps for real; calls to the server run at real speed in between.
final class LeaseDriver: Sendable {
    let clock: ManualLeaseClock
    let serverClock: ManualWallClock
    private let events = Mutex<[LeaseEvent]>([])
    private let recorded = Mutex<Lease?>(nil)
    private let consumed = Mutex(0)
    private let changes: AsyncStream<Void>
    private let changed: AsyncStream<Void>.Continuation
    nonisolated(unsafe) private var iterator: AsyncStream<Void>.Iterator

    init(start: Timestamp = Timestamp(millisecondsSinceEpoch: 1_800_000_000_000)) {
        clock = ManualLeaseClock(wall: start)
        serverClock = ManualWallClock(start: start)
        (changes, changed) = AsyncStream.makeStream(of: Void.self)
        iterator = changes.makeAsyncIterator()
        let changed = self.changed
        clock.observeSleeps { changed.yield() }
    }

    /// Starts `client.withLease` in `group` (see ``LeaseRun``) and records its events.
    func start(_ client: LicenseClient, options: LeaseOptions = LeaseOptions(), in group: inout ThrowingTaskGroup<Void, any Error>) async throws -> LeaseRun {
        let run = try await LeaseRun.start(client, options: options, in: &group)
        group.addTask { await self.record(run.lease) }
        return run
    }

    /// Collects `lease`'s events until it ends (run it in a child task).
    private func record(_ lease: Lease) async {
        recorded.withLock { $0 = lease }
        for await event in lease.events {
            events.withLock { $0.append(event) }
            changed.yield()
        }
        changed.yield()
    }

    /// Every event recorded so far.
    var all: [LeaseEvent] { events.withLock { $0 } }

    /// The next event (after those already returned) matching `match`, advancing simulated time
    /// as needed (unless `advancing` is false), at most `limit`. Returns it and how much simulated
    /// time passed.
    @discardableResult
    func next(_ what: String, limit: Duration = .seconds(48 * 3600), advancing: Bool = true, where match: (LeaseEvent) -> Bool) async throws -> (event: LeaseEvent, advanced: Duration) {
        var advanced = Duration.zero
        while true {
            let wake = advancing ? clock.nextWake : nil
            let (found, caughtUp) = look(for: match)
            if let found { return (found, advanced) }
            if caughtUp, let wake {
                guard advanced + wake <= limit else {
                    Issue.record("no \(what) within \(limit) of simulated time; events: \(all)")
                    throw LicenseCallError(code: .deadlineExceeded, reason: "TEST", message: "no \(what)")
                }
                advance(by: wake)
                advanced += wake
            }
            guard await iterator.next() != nil else { throw CancellationError() }
        }
    }

    /// Lets `duration` of simulated time pass, waking every sleeper on the way.
    func pass(_ duration: Duration) async throws {
        var advanced = Duration.zero
        while true {
            let wake = clock.nextWake
            if look(for: { _ in false }).caughtUp, let wake {
                guard advanced + wake <= duration else { break }
                advance(by: wake)
                advanced += wake
            }
            guard await iterator.next() != nil else { throw CancellationError() }
        }
        advance(by: duration - advanced)
    }

    /// The first event not yet returned that matches `match` (consumed), and whether every event
    /// the lease emitted had been recorded when they were searched. Time may move only then: a
    /// lease emits its events before it sleeps, so no event is skipped past.
    ///
    /// Callers read ``ManualLeaseClock/nextWake`` *before* this. A sleeper seen there went to
    /// sleep after emitting, so its events are counted here, and found. Read after, the wake
    /// could belong to a lease that emitted and slept between the search and the read, and
    /// time would jump past an event not yet looked at (a renewal at 301 s reported at 601 s).
    private func look(for match: (LeaseEvent) -> Bool) -> (found: LeaseEvent?, caughtUp: Bool) {
        guard let lease = recorded.withLock({ $0 }) else { return (nil, false) }
        let emitted = lease.emitted.load(ordering: .sequentiallyConsistent)
        return events.withLock { events in
            let found: LeaseEvent? = consumed.withLock { start in
                guard let index = events[start...].firstIndex(where: match) else { return nil }
                start = index + 1
                return events[index]
            }
            return (found, emitted == events.count)
        }
    }

    /// Moves both clocks.
    func advance(by duration: Duration) {
        serverClock.advance(by: duration)
        clock.advance(by: duration)
    }

    /// A client of `endpoints` on this driver's clock, keeping its state in `state`.
    func client(_ endpoints: [LicenseServerEndpoint], key: String, state: String?, hardwareID: String = "machine-1") throws -> LicenseClient {
        var configuration = LicenseClientConfiguration(endpoints: endpoints, credentials: .apiKey(key))
        configuration.clock = clock
        configuration.stateDirectory = state
        configuration.hardwareID = hardwareID
        configuration.backoff = Backoff(initial: .seconds(1), maximum: .seconds(30))
        return try LicenseClient(configuration: configuration)
    }
}

/// A fresh temporary folder path (not created).
func temporaryPath(_ prefix: String) -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)").path
}
