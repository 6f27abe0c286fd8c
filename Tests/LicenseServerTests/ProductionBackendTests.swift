import BackendTestSupport
import Foundation
import LicenseClient
import LicenseCore
import LicensePostgres
import LicenseRedis
import LicenseWire
import Testing

/// The proofs of the production backends: `licensed` on real Redis and real Postgres, under
/// contention and faults.
@Suite("Production backends (Redis + Postgres)", .serialized, .timeLimit(.minutes(2)))
struct ProductionBackendTests {
    struct Backends: Sendable {
        let redis: RedisTestServer
        let postgresServer: PostgresTestServer
        let postgres: PostgresSettings

        /// Redis's seats held (machines), Postgres's live session rows (one per machine in these tests).
        func counts(_ license: String) async throws -> (redis: Int, postgres: Int) {
            let redisCount = try await redis.command("HLEN", "coditect:lic:{\(license)}:machines").int64 ?? -1
            let rows = try await postgresServer.superuser(
                "SELECT count(*) FROM sessions WHERE license_id = '\(license)' AND ended_at_ms IS NULL", database: postgres.database)
            return (Int(redisCount), Int(try rows.first?.decode(Int64.self) ?? -1))
        }
    }

    /// A Redis of its own and a Postgres of its own (tests stop them), both stopped afterwards.
    func withBackends(operationTimeout: Duration = .seconds(5), _ body: @Sendable (Backends) async throws -> Void) async throws {
        let redis = try await RedisTestServer.start()
        defer { redis.stop() }
        let postgresServer = try await PostgresTestServer.start()
        defer { postgresServer.stop() }
        var postgres = try await postgresServer.createDatabase()
        postgres.operationTimeout = operationTimeout
        postgres.connectTimeout = .milliseconds(500)
        try await body(Backends(redis: redis, postgresServer: postgresServer, postgres: postgres))
    }

    func expectUnavailable(within limit: Duration, _ body: () async throws -> Void) async {
        let started = ContinuousClock.now
        do {
            try await body()
            Issue.record("expected UNAVAILABLE")
        } catch let error as LicenseCallError {
            #expect(error.code == .unavailable, "\(error)")
        } catch {
            Issue.record("unexpected \(error)")
        }
        #expect(started.duration(to: .now) < limit)
    }

    static let operatorPrincipal = Principal(userID: "usr_bootstrap", tenantID: nil, role: .platformOperator, name: "op")

    /// `per` acquires on each of `connections` connections, each for its own hardware id.
    func acquireConcurrently(_ server: TestServer, keys: [String], per: Int) async throws -> (granted: [String], refused: Int) {
        try await withThrowingTaskGroup(of: ([String], Int).self) { group in
            for (c, key) in keys.enumerated() {
                group.addTask {
                    let client = try await server.connect(apiKey: key)
                    let results = try await withThrowingTaskGroup(of: String?.self) { calls in
                        for i in 0..<per {
                            calls.addTask {
                                do {
                                    return try await client.acquire(licenseID: "acme-pro", hardwareID: "hw-\(c)-\(i)").sessionID
                                } catch let error as LicenseCallError where error.reason == "NO_SEATS" {
                                    return nil
                                }
                            }
                        }
                        return try await calls.reduce(into: [String?]()) { $0.append($1) }
                    }
                    await client.close()
                    return (results.compactMap { $0 }, results.filter { $0 == nil }.count)
                }
            }
            return try await group.reduce(into: ([String](), 0)) { $0.0 += $1.0; $0.1 += $1.1 }
        }
    }

    @Test func fiveHundredConcurrentAcquiresForFiftySeatsGrantExactlyFiftyAndEveryCountAgrees() async throws {
        try await withBackends { backends in
            try await TestServer.run(redis: backends.redis.configuration, postgres: backends.postgres) { server in
                let keys = try await server.setUpLicense(seats: 50, users: 20)
                let (granted, refused) = try await within(.seconds(60)) { try await acquireConcurrently(server, keys: keys, per: 25) }
                #expect(granted.count == 50)
                #expect(Set(granted).count == 50)
                #expect(refused == 450)
                let counts = try await backends.counts("acme-pro")
                #expect(counts.redis == 50)
                #expect(counts.postgres == 50)
                let status = try await server.service.licenseStatus(tenant: nil, license: "acme-pro", by: Self.operatorPrincipal)
                #expect(status.map(\.seatsUsed) == [50])
            }
        }
    }

    @Test func twoDaemonsSharingRedisAndPostgresNeverOverAllocate() async throws {
        try await withBackends { backends in
            try await TestServer.run(redis: backends.redis.configuration, postgres: backends.postgres) { first in
                let keys = try await first.setUpLicense(seats: 50, users: 20)
                try await TestServer.run(redis: backends.redis.configuration, postgres: backends.postgres) { second in
                    // Half the clients on each daemon, all at once.
                    let (fromFirst, fromSecond) = try await within(.seconds(60)) {
                        async let a = acquireConcurrently(first, keys: Array(keys.prefix(10)), per: 25)
                        async let b = acquireConcurrently(second, keys: Array(keys.suffix(10)), per: 25)
                        return try await (a, b)
                    }
                    #expect(fromFirst.granted.count + fromSecond.granted.count == 50)
                    #expect(fromFirst.refused + fromSecond.refused == 450)
                    let counts = try await backends.counts("acme-pro")
                    #expect(counts.redis == 50)
                    #expect(counts.postgres == 50)
                }
            }
        }
    }

    @Test func redisDownFailsFastAndServiceResumesWithoutARestart() async throws {
        try await withBackends { backends in
            try await TestServer.run(redis: backends.redis.configuration, postgres: backends.postgres) { server in
                let keys = try await server.setUpLicense(seats: 5, users: 2)
                let client = try await server.connect(apiKey: keys[0])
                let lease = try await client.acquire(licenseID: "acme-pro", hardwareID: "m1")
                backends.redis.stop()
                for attempt in 0..<5 {
                    await expectUnavailable(within: .seconds(1)) { _ = try await client.acquire(licenseID: "acme-pro", hardwareID: "m-\(attempt)") }
                }
                await expectUnavailable(within: .seconds(1)) { _ = try await client.heartbeat(sessionID: lease.sessionID) }
                // Redis comes back (empty): the same daemon serves again, rebuilding the seats from Postgres.
                try await backends.redis.launch()
                let deadline = ContinuousClock.now + .seconds(10)
                var beat: Coditect_License_V1_HeartbeatResult?
                while beat == nil, ContinuousClock.now < deadline {
                    beat = try? await client.heartbeat(sessionID: lease.sessionID)
                    if beat == nil { try await Task.sleep(for: .milliseconds(50)) }
                }
                #expect(beat != nil)
                _ = try await client.acquire(licenseID: "acme-pro", hardwareID: "m2")
                let counts = try await backends.counts("acme-pro")
                #expect(counts.redis == 2)
                #expect(counts.postgres == 2)
                await client.close()
            }
        }
    }

    @Test func redisRestartedEmptyIsRebuiltSoAFullLicenseStaysFull() async throws {
        try await withBackends { backends in
            try await TestServer.run(redis: backends.redis.configuration, postgres: backends.postgres) { server in
                let keys = try await server.setUpLicense(seats: 3, users: 4)
                var holders: [(LicenseConnection, String)] = []
                for key in keys.prefix(3) {
                    let client = try await server.connect(apiKey: key)
                    holders.append((client, try await client.acquire(licenseID: "acme-pro", hardwareID: "hw-\(key.suffix(4))").sessionID))
                }
                backends.redis.stop()
                try await backends.redis.launch()
                #expect(try await backends.redis.command("DBSIZE") == .integer(0))
                // The script cache is empty too; the seats come back from Postgres on first use.
                let latecomer = try await server.connect(apiKey: keys[3])
                do {
                    _ = try await latecomer.acquire(licenseID: "acme-pro", hardwareID: "late")
                    Issue.record("the rebuilt license must still be full")
                } catch let error as LicenseCallError {
                    #expect(error.reason == "NO_SEATS")
                }
                #expect(try await backends.counts("acme-pro") == (3, 3))
                for (client, session) in holders {
                    _ = try await client.heartbeat(sessionID: session)
                    try await client.release(sessionID: session)
                    await client.close()
                }
                _ = try await latecomer.acquire(licenseID: "acme-pro", hardwareID: "late")
                #expect(try await backends.counts("acme-pro") == (1, 1))
                await latecomer.close()
            }
        }
    }

    @Test func noSeatIsGrantedThatCannotBeRecorded() async throws {
        try await withBackends(operationTimeout: .seconds(1)) { backends in
            try await TestServer.run(redis: backends.redis.configuration, postgres: backends.postgres) { server in
                let keys = try await server.setUpLicense(seats: 5, users: 1)
                let client = try await server.connect(apiKey: keys[0])
                _ = try await client.acquire(licenseID: "acme-pro", hardwareID: "m1")
                // Session rows can no longer be written (as on a full disk): Redis grants, the commit fails.
                try await backends.postgresServer.superuser("""
                    CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$
                    """, database: backends.postgres.database)
                try await backends.postgresServer.superuser(
                    "CREATE TRIGGER refuse BEFORE INSERT ON sessions FOR EACH ROW EXECUTE FUNCTION refuse()", database: backends.postgres.database)
                for i in 0..<3 {
                    await expectUnavailable(within: .seconds(2)) { _ = try await client.acquire(licenseID: "acme-pro", hardwareID: "w\(i)") }
                }
                #expect(try await backends.counts("acme-pro") == (1, 1))
                try await backends.postgresServer.superuser("DROP TRIGGER refuse ON sessions", database: backends.postgres.database)

                // Postgres stopped altogether.
                backends.postgresServer.stop()
                for i in 0..<3 {
                    await expectUnavailable(within: .seconds(2)) { _ = try await client.acquire(licenseID: "acme-pro", hardwareID: "d\(i)") }
                }
                #expect(try await backends.redis.command("HLEN", "coditect:lic:{acme-pro}:machines") == .integer(1))
                try await backends.postgresServer.launch()
                let deadline = ContinuousClock.now + .seconds(20)
                var lease: Coditect_License_V1_AcquireResult?
                while lease == nil, ContinuousClock.now < deadline {
                    lease = try? await client.acquire(licenseID: "acme-pro", hardwareID: "after")
                    if lease == nil { try await Task.sleep(for: .milliseconds(100)) }
                }
                #expect(lease != nil)
                #expect(try await backends.counts("acme-pro") == (2, 2))
                await client.close()
            }
        }
    }
}
