#if canImport(Glibc)
import Glibc
#endif
import BackendTestSupport
import Foundation
import LicenseClient
import LicensePostgres
import LicenseRedis
import LicenseWire
import NIOConcurrencyHelpers
import PostgresNIO
import Testing

/// The seat ledger under faults, proved on real processes: two `licensed` daemons (the debug
/// build) on one `redis-server` (or a primary, a replica and three Sentinels) and one Postgres 15.
/// Faults are injected into the processes themselves (SIGSTOP, SIGKILL, a lock held by another
/// session, a stopped server). After each fault the ledger is read directly from Redis and
/// Postgres and must satisfy:
///
/// - seats held ≤ the license's seats;
/// - every OK answer's session has a row, and the token names that session (no token for an
///   unrecorded session);
/// - within one lease TTL (much sooner in practice): every held seat has a live row and every
///   live row has a seat, and no claim is left pending.
@Suite("Seat ledger under faults (real processes)", .serialized, .timeLimit(.minutes(5)))
struct LedgerFaultTests {
    static let license = "fault-pro"
    static let leaseTTL: UInt32 = 30
    /// The Postgres write deadline the daemons get (`timeout_ms`); claims wait this + 2 s for their row.
    static let writeTimeoutMs = 2_000

    struct Fixture: Sendable {
        let daemons: [LicensedProcess]
        let keys: [String]
        let ledger: SeatLedger
        let postgres: PostgresTestServer
        let settings: PostgresSettings
    }

    /// Postgres, the given Redis URL, two daemons, and a license of `seats` seats with 10 users.
    func withDaemons(
        redisURL: String, redis: @escaping @Sendable () -> RedisConfiguration, seats: UInt32, daemons count: Int = 2,
        _ body: @Sendable (Fixture) async throws -> Void
    ) async throws {
        let postgres = try await PostgresTestServer.start()
        defer { postgres.stop() }
        let settings = try await postgres.createDatabase()
        let url = PostgresTestServer.url(settings) + "&timeout_ms=\(Self.writeTimeoutMs)"
        var daemons: [LicensedProcess] = []
        for i in 0..<count {
            var arguments = ["--redis-url", redisURL, "--postgres-url", url, "--sweep-interval", "1", "--drain-timeout", "2"]
            if i == 0 { arguments.append("--migrate") }
            daemons.append(try await LicensedProcess.start(arguments))
        }
        let keys = try await daemons[0].setUpLicense(Self.license, seats: seats, users: 10, leaseTTL: Self.leaseTTL, heartbeat: 10)
        let ledger = SeatLedger(license: Self.license, postgres: postgres, database: settings.database, redis: redis)
        try await body(Fixture(daemons: daemons, keys: keys, ledger: ledger, postgres: postgres, settings: settings))
        for daemon in daemons { await daemon.stop(signal: SIGKILL) }
    }

    /// `count` acquires spread over the daemons and the ten users, each for its own machine.
    static func attempts(_ count: Int, daemons: Int, tag: String) -> [AcquireAttempt] {
        (0..<count).map { i in
            AcquireAttempt(daemon: i % daemons, user: i % 10, hardwareID: "\(tag)-hw-\(i)", idempotencyKey: "\(tag)-key-\(i)")
        }
    }

    /// The invariants every answer and the ledger must meet; waits for convergence first.
    func expectExactLedger(_ fixture: Fixture, seats: Int, answers: [AcquireAnswer], sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let (ledger, took) = try await fixture.ledger.converged(within: .seconds(Int64(Self.leaseTTL)))
        #expect(ledger.converged, "not converged within one lease TTL: \(ledger.summary)", sourceLocation: sourceLocation)
        #expect(ledger.seatsHeld <= seats, "\(ledger.summary)", sourceLocation: sourceLocation)
        for answer in answers {
            guard case .ok(let session, let tokenSession, _) = answer else { continue }
            #expect(ledger.rows.contains(session), "OK answered for session \(session), which has no row", sourceLocation: sourceLocation)
            #expect(tokenSession == session, "a token names \(tokenSession), not the session \(session)", sourceLocation: sourceLocation)
        }
        print("ledger converged in \(took): \(ledger.summary)")
    }

    // MARK: - Redis frozen

    @Test func claimsStuckInAFrozenRedisNeverTakeEffectAfterTheirCallersWereAnswered() async throws {
        let redis = try await RedisTestServer.start()
        defer { redis.stop() }
        try await withDaemons(redisURL: redis.url, redis: { redis.configuration }, seats: 50) { fixture in
            let attempts = Self.attempts(300, daemons: 2, tag: "freeze")
            let pid = try #require(redis.pid)
            // The storm starts; once its first seat is confirmed, Redis stops for 3 s (six command
            // timeouts), catching claims and confirms in flight. (Waiting for five confirmed seats,
            // polled every 5 ms, let a fast daemon answer the whole storm before the freeze.)
            let frozenAt = NIOLockedValueBox<Int64>(0)
            @Sendable func confirmed() async -> Int64 {
                let handles = (try? await redis.command("ZCARD", "coditect:lic:{\(Self.license)}:handles"))?.int64 ?? 0
                let pending = (try? await redis.command("SCARD", "coditect:lic:{\(Self.license)}:pending"))?.int64 ?? 0
                return handles - pending
            }
            let answers = try await AcquireStorm.run(attempts, daemons: fixture.daemons, keys: fixture.keys, license: Self.license) {
                let started = ContinuousClock.now
                while await confirmed() < 1, started.duration(to: .now) < .seconds(20) {
                    try await Task.sleep(for: .milliseconds(1))
                }
                guard case .array(let time) = try await redis.command("TIME"), let seconds = time[0].string.flatMap(Int64.init) else {
                    throw TestServerError("TIME answered oddly")
                }
                frozenAt.withLockedValue { $0 = seconds * 1000 }
                kill(pid, SIGSTOP)
                try await Task.sleep(for: .seconds(3))
                kill(pid, SIGCONT)
            }
            let frozenAtMs = frozenAt.withLockedValue { $0 }
            let granted = answers.values.compactMap(\.session)
            let unavailable = answers.values.filter(\.isRetryable).count
            print("frozen Redis: \(granted.count) granted, \(answers.values.filter(\.isNoSeats).count) NO_SEATS, \(unavailable) unavailable or lost")
            #expect(unavailable > 0, "the freeze should have failed some acquires")
            #expect(granted.count <= 50)

            // Every call has been answered: a claim that was still pending now was made after
            // the freeze began and never confirmed, i.e. it ran after its caller gave up.
            let after = try await fixture.ledger.snapshot()
            let pendingTTL = Int64(Self.writeTimeoutMs + 2_000)
            let late = after.handles.filter { $0.value.pending && $0.value.expiresAt > frozenAtMs + 1_000 + pendingTTL }
            #expect(late.isEmpty, "claims took effect after their callers were answered: \(late.count)")
            try await expectExactLedger(fixture, seats: 50, answers: Array(answers.values))

            // Every caller that was not answered for good retries with its idempotency key.
            let retried = try await AcquireStorm.retry(attempts.filter { answers[$0]!.isRetryable }, on: fixture.daemons[0], keys: fixture.keys, license: Self.license)
            #expect(retried.values.allSatisfy { !$0.isRetryable }, "a retry stayed unanswered")
            try await expectExactLedger(fixture, seats: 50, answers: Array(answers.values) + Array(retried.values))
            let final = try await fixture.ledger.snapshot()
            #expect(final.seatsHeld == 50, "every seat should be held after the retries: \(final.summary)")
            #expect(final.acquireAudits == final.rows.count)
        }
    }

    // MARK: - Daemon killed

    @Test func aDaemonKilledMidStormLeavesNoSeatWithoutARowAndRetriesResumeOnlyRecordedSessions() async throws {
        let redis = try await RedisTestServer.start()
        defer { redis.stop() }
        try await withDaemons(redisURL: redis.url, redis: { redis.configuration }, seats: 50) { fixture in
            let attempts = Self.attempts(300, daemons: 2, tag: "kill")
            let killedAt = NIOLockedValueBox(ContinuousClock.now)
            let answers = try await AcquireStorm.run(attempts, daemons: fixture.daemons, keys: fixture.keys, license: Self.license) {
                try await Task.sleep(for: .milliseconds(100))
                await fixture.daemons[0].stop(signal: SIGKILL)
                killedAt.withLockedValue { $0 = .now }
            }
            let lost = attempts.filter { answers[$0]!.isRetryable }
            print("killed daemon: \(answers.values.compactMap(\.session).count) granted, \(lost.count) unanswered or unavailable")

            // Claims the dead daemon made but never recorded free their seats within seconds.
            let (ledger, _) = try await fixture.ledger.converged(within: .seconds(Int64(Self.leaseTTL)))
            let freedAfter = killedAt.withLockedValue { $0 }.duration(to: .now)
            #expect(ledger.converged, "\(ledger.summary)")
            #expect(freedAfter < .seconds(15), "seats of unrecorded claims took \(freedAfter) to free")
            print("unrecorded claims freed \(freedAfter) after the kill")
            try await expectExactLedger(fixture, seats: 50, answers: Array(answers.values))

            // The daemon comes back; every unanswered acquire is retried with its key.
            try await fixture.daemons[0].launch()
            let retried = try await AcquireStorm.retry(lost, on: fixture.daemons[0], keys: fixture.keys, license: Self.license)
            #expect(retried.values.allSatisfy { !$0.isRetryable }, "a retry stayed unanswered")
            try await expectExactLedger(fixture, seats: 50, answers: Array(answers.values) + Array(retried.values))
            let final = try await fixture.ledger.snapshot()
            #expect(final.seatsHeld == 50, "\(final.summary)")
        }
    }

    // MARK: - Failover to a lagging replica

    @Test func aFailoverToAReplicaThatMissedTheLastAcquiresDoesNotOverAllocate() async throws {
        let group = try await RedisSentinelGroup.start()
        defer { group.stop() }
        let current = NIOLockedValueBox(group.primary.configuration)
        try await withDaemons(redisURL: group.url, redis: { current.withLockedValue { $0 } }, seats: 10) { fixture in
            // Six holders reach the replica.
            var holders: [(LicenseConnection, String)] = []
            for i in 0..<6 {
                let connection = try await fixture.daemons[i % 2].connect(apiKey: fixture.keys[i])
                holders.append((connection, try await connection.acquire(licenseID: Self.license, hardwareID: "early-\(i)").sessionID))
            }
            try await group.waitUntil(within: .seconds(10), "the replica to catch up") {
                (try? await group.replica.command("HLEN", "coditect:lic:{\(Self.license)}:machines"))?.int64 == 6
            }
            // The replica stops, and the primary drops its link (else the kernel would still take
            // in what the primary sends): the last four acquires reach only the primary.
            let replicaPid = try #require(group.replica.pid)
            kill(replicaPid, SIGSTOP)
            _ = try await group.primary.command("CLIENT", "KILL", "TYPE", "replica")
            for i in 6..<10 {
                let connection = try await fixture.daemons[i % 2].connect(apiKey: fixture.keys[i])
                holders.append((connection, try await connection.acquire(licenseID: Self.license, hardwareID: "late-\(i)").sessionID))
            }
            // The primary dies (SIGKILL: a graceful shutdown would wait for the replica to catch
            // up); the replica, four acquires behind, is promoted.
            let primaryPid = try #require(group.primary.pid)
            kill(primaryPid, SIGKILL)
            group.primary.stop()
            kill(replicaPid, SIGCONT)
            let replicaSeats = try await group.replica.command("HLEN", "coditect:lic:{\(Self.license)}:machines").int64
            #expect(replicaSeats == 6)
            _ = try await group.sentinel(group.sentinelPorts[0], "SENTINEL", "FAILOVER", RedisSentinelGroup.service)
            try await group.waitUntil(within: .seconds(30), "the sentinels to promote the replica") {
                let named = try? await group.primaryPort()
                let role = try? await group.replica.command("ROLE")
                return named == group.replica.port && Self.isPrimary(role)
            }
            current.withLockedValue { $0 = group.replica.configuration }

            // Both daemons follow without a restart; the license is rebuilt before any grant.
            var refusals: [AcquireAnswer] = []
            let deadline = ContinuousClock.now + .seconds(30)
            for daemon in fixture.daemons {
                let latecomer = try await daemon.connect(apiKey: fixture.keys[0])
                var answer = AcquireAnswer.lost
                repeat {
                    answer = await AcquireStorm.answer { try await latecomer.acquire(licenseID: Self.license, hardwareID: "after-failover") }
                    if answer.isRetryable { try await Task.sleep(for: .milliseconds(200)) }
                } while answer.isRetryable && ContinuousClock.now < deadline
                refusals.append(answer)
                await latecomer.close()
            }
            #expect(refusals.allSatisfy { $0.isNoSeats }, "a full license must stay full after the failover: \(refusals)")
            let ledger = try await fixture.ledger.snapshot()
            #expect(ledger.seatsHeld == 10, "\(ledger.summary)")
            #expect(Set(holders.map(\.1)).isSubset(of: Set(ledger.handles.keys)), "every holder answered OK holds its seat")
            // Every holder keeps heartbeating, on whichever daemon it is connected to.
            for (connection, session) in holders {
                _ = try await connection.heartbeat(sessionID: session)
                await connection.close()
            }
            try await expectExactLedger(fixture, seats: 10, answers: [])
        }
    }

    static func isPrimary(_ role: RESPValue?) -> Bool {
        guard case .array(let parts)? = role else { return false }
        return parts.first?.string == "master"
    }

    // MARK: - Postgres slow

    @Test func aLockedSessionsTableFailsCallsAtTheirDeadlineAndLeavesNoGhostRows() async throws {
        let redis = try await RedisTestServer.start()
        defer { redis.stop() }
        try await withDaemons(redisURL: redis.url, redis: { redis.configuration }, seats: 50) { fixture in
            let before = try await AcquireStorm.run(Self.attempts(10, daemons: 2, tag: "before"), daemons: fixture.daemons, keys: fixture.keys, license: Self.license)
            #expect(before.values.allSatisfy { $0.session != nil })
            // Another session holds the sessions table for three write deadlines.
            let lock = try await fixture.postgres.holdLock(on: "sessions", mode: "ACCESS EXCLUSIVE", database: fixture.settings.database)
            let lockedAt = ContinuousClock.now
            // Two waves: the second queues behind the first's stuck batch and must still fail at its own deadline.
            let timed = { @Sendable (tag: String) async throws -> [(AcquireAnswer, Duration)] in
                let attempts = Self.attempts(20, daemons: 2, tag: tag)
                var connections: [LicenseConnection] = []
                for daemon in fixture.daemons { connections.append(try await daemon.connect(apiKey: fixture.keys[0])) }
                let ready = connections
                let results = await withTaskGroup(of: (AcquireAnswer, Duration).self) { group in
                    for attempt in attempts {
                        group.addTask {
                            let started = ContinuousClock.now
                            let answer = await AcquireStorm.answer {
                                try await ready[attempt.daemon].acquire(licenseID: Self.license, hardwareID: attempt.hardwareID, idempotencyKey: attempt.idempotencyKey)
                            }
                            return (answer, started.duration(to: .now))
                        }
                    }
                    return await group.reduce(into: []) { $0.append($1) }
                }
                for connection in ready { await connection.close() }
                return results
            }
            async let first = timed("wave1")
            try await Task.sleep(for: .seconds(1))
            async let second = timed("wave2")
            let waves = try await first + second
            let deadline = Duration.milliseconds(Self.writeTimeoutMs)
            for (answer, took) in waves {
                #expect(answer.isRetryable, "\(answer)")
                #expect(took < deadline + .milliseconds(500), "an acquire took \(took) with a \(deadline) write deadline")
            }
            print("locked table: slowest acquire answered after \(waves.map(\.1).max() ?? .zero)")
            // The lock is held on past every deadline, then released.
            try await Task.sleep(until: lockedAt + .seconds(6))
            try await lock.query("COMMIT", logger: .init(label: "test.lock"))
            try await lock.close()
            try await Task.sleep(for: .seconds(1))
            let after = try await fixture.ledger.snapshot()
            #expect(after.rows.count == 10, "rows of refused acquires committed after the lock: \(after.rows.count - 10)")
            #expect(after.acquireAudits == 10, "audit rows of refused acquires committed: \(after.acquireAudits - 10)")
            try await expectExactLedger(fixture, seats: 50, answers: Array(before.values))
        }
    }

    // MARK: - Postgres stopped

    @Test func aStoppedPostgresFailsCallsInMillisecondsWhileLiveSessionsKeepHeartbeating() async throws {
        let redis = try await RedisTestServer.start()
        defer { redis.stop() }
        try await withDaemons(redisURL: redis.url, redis: { redis.configuration }, seats: 50, daemons: 1) { fixture in
            let daemon = fixture.daemons[0]
            let holder = try await daemon.connect(apiKey: fixture.keys[0])
            let lease = try await holder.acquire(licenseID: Self.license, hardwareID: "holder")
            let asker = try await daemon.connect(apiKey: fixture.keys[1])
            fixture.postgres.stop()
            // The first calls find out; then the breaker answers at once.
            for i in 0..<3 { _ = await AcquireStorm.answer { try await asker.acquire(licenseID: Self.license, hardwareID: "probe-\(i)") } }
            try await Task.sleep(for: .milliseconds(500))
            var took: [Duration] = []
            for i in 0..<20 {
                let started = ContinuousClock.now
                let answer = await AcquireStorm.answer { try await asker.acquire(licenseID: Self.license, hardwareID: "down-\(i)") }
                took.append(started.duration(to: .now))
                #expect(answer == .refused(code: .unavailable, reason: "BACKEND_UNAVAILABLE"), "\(answer)")
            }
            let median = took.sorted()[took.count / 2]
            print("Postgres down: acquire refused in median \(median), max \(took.max()!)")
            #expect(median < .milliseconds(100))
            #expect(took.max()! < .seconds(1))
            // A new sign-in fails as fast.
            let started = ContinuousClock.now
            let newcomer = try await daemon.connect()
            await #expect(throws: LicenseCallError.self) { _ = try await newcomer.hello(apiKey: fixture.keys[2]) }
            #expect(started.duration(to: .now) < .seconds(1))
            await newcomer.close()
            // A live session keeps heartbeating: it does not need Postgres.
            for _ in 0..<3 {
                let beat = try await holder.heartbeat(sessionID: lease.sessionID)
                #expect(beat.leaseExpiresAtMs > 0)
            }
            // Postgres comes back: acquires succeed again, without a restart.
            try await fixture.postgres.launch()
            var answer = AcquireAnswer.lost
            let deadline = ContinuousClock.now + .seconds(30)
            repeat {
                answer = await AcquireStorm.answer { try await asker.acquire(licenseID: Self.license, hardwareID: "back") }
                if answer.isRetryable { try await Task.sleep(for: .milliseconds(100)) }
            } while answer.isRetryable && ContinuousClock.now < deadline
            #expect(answer.session != nil, "\(answer)")
            await holder.close()
            await asker.close()
            try await expectExactLedger(fixture, seats: 50, answers: [answer])
        }
    }

    // MARK: - Drain

    @Test func aDrainEndsWithinItsBoundWhateverTheClientsDo() async throws {
        let redis = try await RedisTestServer.start()
        defer { redis.stop() }
        try await withDaemons(redisURL: redis.url, redis: { redis.configuration }, seats: 5, daemons: 1) { fixture in
            let daemon = fixture.daemons[0]
            // Clients that complete the TLS handshake and then neither read, write nor close.
            let script = """
            import socket, ssl, sys, time
            ctx = ssl.create_default_context(cafile=sys.argv[2])
            ctx.set_alpn_protocols(["\(WireProtocol.alpn)"])
            held = []
            for _ in range(5):
                s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="127.0.0.1")
                held.append(s)
            print("connected", flush=True)
            time.sleep(60)
            """
            let log = daemon.folder + "/stubborn.log"
            let stubborn = try ChildProcess(["python3", "-c", script, String(daemon.port), daemon.dataDirectory + "/tls/ca.pem"], logFile: log)
            defer { stubborn.stop(signal: SIGKILL) }
            let ready = ContinuousClock.now + .seconds(10)
            while !((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("connected"), ContinuousClock.now < ready {
                try await Task.sleep(for: .milliseconds(50))
            }
            // A signed-in client that simply stays connected, too.
            let idle = try await daemon.connect(apiKey: fixture.keys[0])
            let took = await daemon.stop(signal: SIGTERM, within: .seconds(20))
            print("drain with stubborn clients took \(took.map { "\($0)" } ?? "too long")")
            // Drain bound 2 s (--drain-timeout 2), plus the TLS close wait and the exit.
            #expect(took != nil && took! < .seconds(4), "\(String(describing: took))")
            await idle.close()
        }
    }
}

