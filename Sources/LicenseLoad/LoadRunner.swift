import Atomics
import Foundation
import LicenseClient
import LicenseWire
import Synchronization

/// How a replay runs.
public struct LoadOptions: Sendable {
    /// How calls are paced.
    public enum Pacing: Sendable, Equatable {
        /// Each virtual user sends its next call as soon as the previous one is answered.
        case closedLoop
        /// Calls are sent on a fixed schedule at this total rate, whatever the answers' delay.
        /// Latency is measured from the scheduled send time, which corrects for coordinated
        /// omission (a slow answer delays the calls behind it; their wait is counted).
        case openLoop(callsPerSecond: Double)
    }

    public var endpoint: LicenseServerEndpoint
    /// API keys to sign connections in with, used in turn (one user per connection).
    public var credentials: [String]
    public var virtualUsers: Int
    public var connections: Int
    public var pacing: Pacing = .closedLoop
    /// The loop phase ends after this long…
    public var duration: Duration = .seconds(10)
    /// …or after this many calls, whichever comes first.
    public var maxCalls: Int = 1_000_000
    /// Replaces the license id of recorded acquires.
    public var license: String?
    /// Makes hardware ids and idempotency keys unique to this run.
    public var runID: String
    /// Where in its loop each user starts.
    public var phases: Phases = .spread

    /// Where in its loop each virtual user starts when the loop's clock starts.
    public enum Phases: String, Sendable, CaseIterable {
        /// User *i* starts at loop entry *i mod n* (it replays the entries before that one as
        /// setup, unmeasured): the loop's calls are mixed in their recorded proportions at every
        /// moment, as in a fleet whose users started at different times.
        case spread
        /// Every user starts at the loop's first entry. With an open-loop rate the users' first
        /// calls are staggered over one call interval only, so the whole fleet moves through the
        /// loop in step: for `plan`, all acquires for a while, then all heartbeats, then all releases.
        case aligned
    }

    public init(endpoint: LicenseServerEndpoint, credentials: [String], virtualUsers: Int, connections: Int, runID: String) {
        self.endpoint = endpoint
        self.credentials = credentials
        self.virtualUsers = virtualUsers
        self.connections = connections
        self.runID = runID
    }
}

/// A snapshot while a replay runs.
public struct LoadProgress: Sendable {
    public var elapsed: Duration
    public var calls: Int
    public var errors: Int
    /// Calls answered in the last interval, per second.
    public var callsPerSecond: Double
}

/// What a replay measured.
public struct LoadResult: Sendable {
    /// By call: `connect` (TCP + TLS), `hello`, `acquire`, `heartbeat`, `release`, …
    public var calls: [String: CallStats]
    /// The measured phase: from the moment every virtual user finished its setup to the end of
    /// the last user's loop; for a recording with no loop (a storm), from the first call after
    /// the connections were open to the end of the last setup. Teardown is not counted.
    public var elapsed: Duration
    public var connectionsOpened: Int
    /// Sessions still held when the run ended (0 unless releases failed).
    public var sessionsLeft: Int
}

/// Replays a recording with many virtual users over many TLS connections.
public enum LoadRunner {
    public static func run(_ recording: Recording, options: LoadOptions, progress: (@Sendable (LoadProgress) -> Void)? = nil) async throws -> LoadResult {
        guard options.virtualUsers >= 1, options.connections >= 1, !options.credentials.isEmpty else {
            throw RecordingError("need at least one virtual user, one connection and one credential")
        }
        let shards = (0..<min(64, options.virtualUsers + 1)).map { _ in StatsShard() }
        let totals = Totals()

        // Connect and sign in, all at once (for the storm scenario, this is the storm).
        let opened = await withTaskGroup(of: (Int, LicenseConnection?).self) { group in
            for index in 0..<options.connections {
                group.addTask {
                    let shard = shards[index % shards.count]
                    let started = ContinuousClock.now
                    let connection: LicenseConnection
                    do {
                        connection = try await LicenseConnection.connect(to: options.endpoint)
                    } catch {
                        shard.record("connect", since: started, error: Self.reason(error), totals: totals)
                        return (index, nil)
                    }
                    shard.record("connect", since: started, error: nil, totals: totals)
                    let signIn = ContinuousClock.now
                    do {
                        try await connection.hello(apiKey: options.credentials[index % options.credentials.count], clientName: "license-load")
                        shard.record("hello", since: signIn, error: nil, totals: totals)
                        return (index, connection)
                    } catch {
                        shard.record("hello", since: signIn, error: Self.reason(error), totals: totals)
                        await connection.close()
                        return (index, nil)
                    }
                }
            }
            var connections = [LicenseConnection?](repeating: nil, count: options.connections)
            for await (index, connection) in group { connections[index] = connection }
            return connections
        }
        let live = opened.compactMap { $0 }
        guard !live.isEmpty else {
            return LoadResult(calls: merge(shards), elapsed: .zero, connectionsOpened: 0, sessionsLeft: 0)
        }

        let start = ContinuousClock.now
        let loopEnd = ManagedAtomic<Int64>(0)
        // The loop's clock (duration, open-loop schedule, throughput) starts when every user
        // has finished its setup, so that a long setup (10,000 acquires) is not counted as loop time.
        let barrier = SetupBarrier(count: options.virtualUsers)
        let hasLoop = recording.entries.contains { $0.phase == .loop }
        let sessionsLeft = ManagedAtomic<Int>(0)
        let interval: Duration? = {
            guard case .openLoop(let rate) = options.pacing, rate > 0 else { return nil }
            return .nanoseconds(Int64(Double(options.virtualUsers) / rate * 1e9))
        }()

        await withTaskGroup(of: Void.self) { group in
            if let progress {
                group.addTask {
                    var last = 0
                    var lastAt = ContinuousClock.now
                    while !Task.isCancelled {
                        try? await Task.sleep(for: .seconds(1))
                        let now = ContinuousClock.now
                        let calls = totals.calls.load(ordering: .relaxed)
                        let seconds = Double((now - lastAt).components.seconds) + Double((now - lastAt).components.attoseconds) / 1e18
                        progress(LoadProgress(elapsed: now - start, calls: calls, errors: totals.errors.load(ordering: .relaxed),
                                              callsPerSecond: seconds > 0 ? Double(calls - last) / seconds : 0))
                        (last, lastAt) = (calls, now)
                    }
                }
            }
            await withTaskGroup(of: Void.self) { users in
                for user in 0..<options.virtualUsers {
                    users.addTask {
                        let script = recording.script(user: user % recording.users)
                        var virtualUser = VirtualUser(
                            index: user, connection: live[user % live.count], script: script,
                            options: options, shard: shards[user % shards.count], totals: totals,
                            startEntry: options.phases == .spread && !script.loop.isEmpty ? user % script.loop.count : 0
                        )
                        await virtualUser.run(
                            setupDone: {
                                let loopStart = await barrier.arrive()
                                if let interval {
                                    return (loopStart + options.duration, (loopStart + interval * (Double(user) / Double(options.virtualUsers)), interval))
                                }
                                return (loopStart + options.duration, nil)
                            },
                            loopEnded: { loopEnd.max(Int64((ContinuousClock.now - (hasLoop ? barrier.released ?? start : start)).nanoseconds)) }
                        )
                        sessionsLeft.wrappingIncrement(by: virtualUser.sessions.count, ordering: .relaxed)
                    }
                }
            }
            group.cancelAll()
        }
        for connection in live { await connection.close() }
        return LoadResult(
            calls: merge(shards), elapsed: .nanoseconds(loopEnd.load(ordering: .relaxed)),
            connectionsOpened: live.count, sessionsLeft: sessionsLeft.load(ordering: .relaxed)
        )
    }

    static func reason(_ error: any Error) -> String {
        (error as? LicenseCallError)?.reason ?? "\(type(of: error))"
    }

    private static func merge(_ shards: [StatsShard]) -> [String: CallStats] {
        var all: [String: CallStats] = [:]
        for shard in shards {
            for (call, stats) in shard.snapshot() { all[call, default: CallStats()].add(stats) }
        }
        return all
    }
}

/// Holds every virtual user until all have finished their setup, then releases them at one instant.
final class SetupBarrier: Sendable {
    private struct State {
        var remaining: Int
        var waiters: [CheckedContinuation<ContinuousClock.Instant, Never>] = []
        var released: ContinuousClock.Instant?
    }

    private let state: Mutex<State>

    init(count: Int) { state = Mutex(State(remaining: count)) }

    /// The instant the last user arrived.
    var released: ContinuousClock.Instant? { state.withLock { $0.released } }

    /// Waits for every user to arrive; returns the instant the last one did.
    func arrive() async -> ContinuousClock.Instant {
        await withCheckedContinuation { continuation in
            let wake: ([CheckedContinuation<ContinuousClock.Instant, Never>], ContinuousClock.Instant)? = state.withLock { state in
                state.remaining -= 1
                state.waiters.append(continuation)
                guard state.remaining <= 0 else { return nil }
                let now = ContinuousClock.now
                state.released = now
                defer { state.waiters.removeAll() }
                return (state.waiters, now)
            }
            if let (waiters, now) = wake { for waiter in waiters { waiter.resume(returning: now) } }
        }
    }
}

/// Counters the progress line reads.
final class Totals: Sendable {
    let calls = ManagedAtomic<Int>(0)
    let errors = ManagedAtomic<Int>(0)
}

/// Statistics shared by the virtual users of one shard (so thousands of users do not each hold
/// histograms, and do not all contend on one lock).
final class StatsShard: Sendable {
    private let stats = Mutex<[String: CallStats]>([:])

    func record(_ call: String, since start: ContinuousClock.Instant, error: String?, totals: Totals) {
        let micros = UInt64(max(0, (ContinuousClock.now - start).nanoseconds / 1000))
        stats.withLock { $0[call, default: CallStats()].record(microseconds: micros, error: error) }
        totals.calls.wrappingIncrement(ordering: .relaxed)
        if error != nil { totals.errors.wrappingIncrement(ordering: .relaxed) }
    }

    func snapshot() -> [String: CallStats] { stats.withLock { $0 } }
}

extension ManagedAtomic where Value == Int64 {
    func max(_ value: Int64) {
        var current = load(ordering: .relaxed)
        while value > current {
            let (exchanged, original) = compareExchange(expected: current, desired: value, ordering: .relaxed)
            if exchanged { return }
            current = original
        }
    }
}

extension Duration {
    var nanoseconds: Int64 { components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000 }
}
