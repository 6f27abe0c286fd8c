import BackendTestSupport
import LicenseCore
import LicenseRedis
import Testing

/// What only the Redis store has: server time, the script cache, rebuild after data loss,
/// failure and recovery of the server, and Redis Cluster.
@Suite("Redis seat store", .timeLimit(.minutes(2)))
struct RedisSeatStoreTests {
    let license = LicenseID("lic-r")

    func request(_ session: String, user: String, limit: Int = 2, license: LicenseID? = nil) -> SeatClaimRequest {
        SeatClaimRequest(licenseID: license ?? self.license, sessionID: SessionID(session),
                         holder: SeatHolder(userID: UserID(user), hardwareID: "hw-\(user)", idempotencyKey: ""),
                         seatLimit: limit, leaseTTL: .seconds(360))
    }

    func redisTime(_ server: RedisTestServer) async throws -> Int64 {
        guard case .array(let parts) = try await server.command("TIME"), parts.count == 2,
              let seconds = parts[0].int64, let micros = parts[1].int64 else { throw TestServerError("TIME answered oddly") }
        return seconds * 1000 + micros / 1000
    }

    @Test func timeComesFromTheRedisServerNotTheDaemon() async throws {
        let server = try await RedisTestServer.start()
        defer { server.stop() }
        let client = RedisClient(configuration: server.configuration)
        defer { client.close() }
        // No clock injected: the production path.
        let store = RedisSeatStore(client: client, seedSource: EmptySeatSeedSource())
        let before = try await redisTime(server)
        guard case .granted(let lease) = try await store.claim(request("s1", user: "u1")) else {
            Issue.record("expected a grant")
            return
        }
        let after = try await redisTime(server)
        #expect(lease.expiresAt.millisecondsSinceEpoch >= before + 360_000)
        #expect(lease.expiresAt.millisecondsSinceEpoch <= after + 360_000)
    }

    @Test func aFlushedScriptCacheIsRefilled() async throws {
        let server = try await RedisTestServer.start()
        defer { server.stop() }
        let client = RedisClient(configuration: server.configuration)
        defer { client.close() }
        let store = RedisSeatStore(client: client, seedSource: EmptySeatSeedSource())
        _ = try await store.claim(request("s1", user: "u1"))
        #expect(try await server.command("SCRIPT", "FLUSH") == .simpleString("OK"))
        #expect(try await server.command("SCRIPT", "EXISTS", RedisSeatStore.scriptSHA) == .array([.integer(0)]))
        guard case .granted = try await store.claim(request("s2", user: "u2")) else {
            Issue.record("the claim after SCRIPT FLUSH should succeed")
            return
        }
        #expect(try await server.command("SCRIPT", "EXISTS", RedisSeatStore.scriptSHA) == .array([.integer(1)]))
    }

    @Test func lostSeatsAreRebuiltFromTheDurableSessionsAndTheLimitHolds() async throws {
        let server = try await RedisTestServer.start()
        defer { server.stop() }
        let client = RedisClient(configuration: server.configuration)
        defer { client.close() }
        let now = SystemWallClock().now()
        let durable = (1...3).map { i in
            LeaseSession(id: SessionID("s\(i)"), tenantID: "t", licenseID: license, userID: UserID("u\(i)"), hardwareID: "hw-u\(i)",
                         idempotencyKey: "", createdAt: now, leaseExpiresAt: now.advanced(by: .seconds(300)))
        }
        let lapsed = LeaseSession(id: "old", tenantID: "t", licenseID: license, userID: "u9", hardwareID: "hw", idempotencyKey: "",
                                  createdAt: now, leaseExpiresAt: now.advanced(by: .seconds(-1)))
        let store = RedisSeatStore(client: client, seedSource: FixedSeatSeedSource(SeatSeed(seatLimit: 3, sessions: durable + [lapsed])))
        // First use of the license rebuilds it: the three live sessions hold all three seats.
        #expect(try await store.claim(request("s4", user: "u4", limit: 3)) == .full(used: 3, limit: 3))
        // Redis loses everything (as after a restart without persistence).
        #expect(try await server.command("FLUSHALL") == .simpleString("OK"))
        #expect(try await store.claim(request("s5", user: "u5", limit: 3)) == .full(used: 3, limit: 3))
        #expect(try await store.leases(licenseID: license).map(\.sessionID) == ["s1", "s2", "s3"])
        // A restored session renews normally.
        guard case .renewed = try await store.renew(licenseID: license, sessionID: "s2", holder: SeatHolder(userID: "u2", hardwareID: "hw-u2", idempotencyKey: ""), seatLimit: 3, leaseTTL: .seconds(360)) else {
            Issue.record("a rebuilt seat should renew")
            return
        }
    }

    @Test func aRebuildCountsTheHandlesOfOneMachineAsOneSeat() async throws {
        let server = try await RedisTestServer.start()
        defer { server.stop() }
        let client = RedisClient(configuration: server.configuration)
        defer { client.close() }
        let now = SystemWallClock().now()
        func row(_ id: String, _ user: String, _ hw: String) -> LeaseSession {
            LeaseSession(id: SessionID(id), tenantID: "t", licenseID: license, userID: UserID(user), hardwareID: hw,
                         idempotencyKey: id, createdAt: now, leaseExpiresAt: now.advanced(by: .seconds(300)))
        }
        // Two processes of u1 on one machine and one of u2: two seats of a two-seat license.
        let durable = [row("a1", "u1", "hw-1"), row("a2", "u1", "hw-1"), row("b1", "u2", "hw-2")]
        let store = RedisSeatStore(client: client, seedSource: FixedSeatSeedSource(SeatSeed(seatLimit: 2, sessions: durable)))
        #expect(try await store.seatsInUse(licenseID: license) == 2)
        #expect(try await store.leases(licenseID: license).map(\.sessionID) == ["a1", "a2", "b1"])
        #expect(try await store.claim(request("c1", user: "u3", limit: 2)) == .full(used: 2, limit: 2))
        // One of u1's processes exits: u1 still holds its seat.
        #expect(try await store.release(licenseID: license, sessionID: "a1"))
        #expect(try await store.claim(request("c1", user: "u3", limit: 2)) == .full(used: 2, limit: 2))
        #expect(try await store.release(licenseID: license, sessionID: "a2"))
        guard case .granted = try await store.claim(request("c1", user: "u3", limit: 2)) else {
            Issue.record("u1's seat should be free once both its processes released")
            return
        }
    }

    @Test func aStoppedServerFailsFastAndServiceResumesWithoutANewClient() async throws {
        let server = try await RedisTestServer.start()
        // Long timeouts, so that "fails fast" means the refused connection is reported at once,
        // not that a timeout ran out (a bound near the 500 ms default flaked on a loaded machine).
        var configuration = server.configuration
        configuration.commandTimeout = .seconds(10)
        configuration.connectTimeout = .seconds(10)
        let client = RedisClient(configuration: configuration)
        defer { client.close() }
        let store = RedisSeatStore(client: client, seedSource: EmptySeatSeedSource())
        _ = try await store.claim(request("s1", user: "u1"))
        server.stop()
        for attempt in 0..<5 {
            let started = ContinuousClock.now
            await #expect(throws: RedisClientError.self) { try await store.claim(request("x\(attempt)", user: "x\(attempt)")) }
            #expect(started.duration(to: .now) < .seconds(5), "failed well before the 10 s timeouts")
        }
        try await server.launch()
        // The reconnect backoff is at most a few hundred ms after these few failures.
        let deadline = ContinuousClock.now + .seconds(10)
        var recovered = false
        while !recovered, ContinuousClock.now < deadline {
            recovered = (try? await store.claim(request("s2", user: "u2"))) != nil
            if !recovered { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(recovered)
        server.stop()
    }

    @Test func anUnansweredCommandTimesOut() async throws {
        let server = try await RedisTestServer.start()
        defer { server.stop() }
        var configuration = server.configuration
        configuration.commandTimeout = .milliseconds(200)
        let client = RedisClient(configuration: configuration)
        defer { client.close() }
        // DEBUG SLEEP stalls the server far longer than the timeout; the call fails well before.
        let started = ContinuousClock.now
        await #expect(throws: RedisClientError.self) { try await client.send(RedisCommand("DEBUG", "SLEEP", "3")) }
        #expect(started.duration(to: .now) < .milliseconds(2_500))
    }

    @Test func repliesOfEveryKindAreParsed() async throws {
        let server = try await RedisTestServer.start()
        defer { server.stop() }
        let client = RedisClient(configuration: server.configuration)
        defer { client.close() }
        #expect(try await client.send(RedisCommand("SET", "k", "v\r\n\u{0}é")) == .simpleString("OK"))
        #expect(try await client.send(RedisCommand("GET", "k")).string == "v\r\n\u{0}é")
        #expect(try await client.send(RedisCommand("GET", "missing")) == .null)
        #expect(try await client.send(RedisCommand("INCRBY", "n", "-5")) == .integer(-5))
        _ = try await client.send(RedisCommand("RPUSH", "l", "a", "", "c"))
        #expect(try await client.send(RedisCommand("LRANGE", "l", "0", "-1")) == .array([.bulkString(Array("a".utf8)), .bulkString([]), .bulkString(Array("c".utf8))]))
        guard case .error(let message) = try await client.send(RedisCommand("NOSUCHCOMMAND")) else {
            Issue.record("expected an error reply")
            return
        }
        #expect(message.hasPrefix("ERR"))
        // Many commands in flight on few connections come back matched to their requests.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<500 {
                group.addTask {
                    let reply = try await client.send(RedisCommand("ECHO", "m\(i)"))
                    #expect(reply.string == "m\(i)")
                }
            }
            try await group.waitForAll()
        }
    }

    @Test func urlsAreParsedAndBadOnesRefused() throws {
        let full = try RedisConfiguration(url: "redis://user:pw@10.0.0.5:6380/2?prefix=prod:&timeout_ms=250&connections=8")
        #expect(full.host == "10.0.0.5")
        #expect(full.port == 6380)
        #expect(full.username == "user")
        #expect(full.password == "pw")
        #expect(full.database == 2)
        #expect(full.keyPrefix == "prod:")
        #expect(full.commandTimeout == .milliseconds(250))
        #expect(full.connectionsPerNode == 8)
        #expect(try RedisConfiguration(url: "redis://h?cluster=true").cluster)
        let sentinel = try RedisConfiguration(url: "redis+sentinel://:pw@10.0.0.1:26380,[fd00::2],s3/seats/3?sentinel_password=sp&timeout_ms=300")
        #expect(sentinel.sentinels == [RedisSentinelAddress(host: "10.0.0.1", port: 26_380), RedisSentinelAddress(host: "fd00::2"), RedisSentinelAddress(host: "s3")])
        #expect(sentinel.sentinelService == "seats")
        #expect(sentinel.database == 3)
        #expect(sentinel.password == "pw")
        #expect(sentinel.sentinelPassword == "sp")
        #expect(sentinel.commandTimeout == .milliseconds(300))
        for bad in ["redis+sentinel://", "redis+sentinel://h:26379", "redis+sentinel://h:0/s", "redis+sentinel://h/s/x", "redis+sentinel://h/s?cluster=true", "redis+sentinel://h/s?bogus=1"] {
            #expect(throws: RedisClientError.self, "\(bad)") { try RedisConfiguration(url: bad) }
        }
        for bad in ["http://h", "redis://", "rediss://h", "redis://h/x", "redis://h?bogus=1", "redis://h/1?cluster=true", "redis://h?prefix={x}", "redis://h:0"] {
            #expect(throws: RedisClientError.self, "\(bad)") { try RedisConfiguration(url: bad) }
        }
    }

    @Test func aClusterFailoverIsFollowedAndThePromotedReplicaIsRebuiltBeforeItGrants() async throws {
        let cluster = try await RedisTestCluster.start(masters: 3, replicas: 1)
        defer { cluster.stop() }
        var configuration = cluster.nodes[0].configuration
        configuration.cluster = true
        let client = RedisClient(configuration: configuration)
        defer { client.close() }
        let now = SystemWallClock().now()
        func row(_ id: String, _ user: String) -> LeaseSession {
            LeaseSession(id: SessionID(id), tenantID: "t", licenseID: license, userID: UserID(user), hardwareID: "hw-\(user)",
                         idempotencyKey: "", createdAt: now, leaseExpiresAt: now.advanced(by: .seconds(300)))
        }
        let rows = RecordedSeatSeedSource(SeatSeed(seatLimit: 3, sessions: [row("s1", "u1")]))
        let store = RedisSeatStore(client: client, seedSource: rows)
        guard case .granted = try await store.claim(request("s2", user: "u2", limit: 3)) else {
            Issue.record("expected a grant")
            return
        }
        rows.record(row("s2", "u2"))
        // The master serving the license's slot dies; the cluster promotes its replica.
        let slot = try #require(try await cluster.nodes[0].command("CLUSTER", "KEYSLOT", "{\(license.rawValue)}").int64)
        func owner() async throws -> Int? {
            guard case .array(let ranges) = try await cluster.nodes.first(where: { $0.pid != nil })!.command("CLUSTER", "SLOTS") else { return nil }
            for case .array(let range) in ranges where range.count >= 3 {
                if let start = range[0].int64, let end = range[1].int64, start...end ~= slot, case .array(let master) = range[2] {
                    return master[1].int64.map(Int.init)
                }
            }
            return nil
        }
        let oldOwner = try #require(try await owner())
        let victim = try #require(cluster.nodes.first { $0.port == oldOwner })
        victim.stop()
        let deadline = ContinuousClock.now + .seconds(30)
        var newOwner: Int?
        while ContinuousClock.now < deadline {
            newOwner = try? await owner()
            if let newOwner, newOwner != oldOwner { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(newOwner != nil && newOwner != oldOwner, "the replica was not promoted")
        // The same client follows (after failing fast while the slot had no master), and the
        // promoted replica's copy is merged with the durable sessions before anything is granted.
        var outcome: SeatClaimOutcome?
        while outcome == nil, ContinuousClock.now < deadline {
            outcome = try? await store.claim(request("s3", user: "u3", limit: 2))
            if outcome == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(outcome == .full(used: 2, limit: 2))
        #expect(try await store.leases(licenseID: license).map(\.sessionID) == ["s1", "s2"])
        // The promoted replica rebuilt the license itself: the marker names its run id, not the old master's.
        let promoted = try #require(cluster.nodes.first { $0.port == newOwner })
        let info = try await promoted.command("INFO", "server").string ?? ""
        let runID = info.split(separator: "\r\n").first { $0.hasPrefix("run_id:") }.map { String($0.dropFirst(7)) }
        let marker = try await promoted.command("GET", "coditect:lic:{\(license.rawValue)}:seeded:2").string
        #expect(runID != nil && marker == runID)
    }

    @Test func theSameScriptRunsOnARedisClusterWithoutCrossSlotErrors() async throws {
        let cluster = try await RedisTestCluster.start(masters: 3)
        defer { cluster.stop() }
        var configuration = cluster.nodes[0].configuration
        configuration.cluster = true
        let client = RedisClient(configuration: configuration)
        defer { client.close() }
        let store = RedisSeatStore(client: client, seedSource: EmptySeatSeedSource())
        // Licenses spread over all three masters; each gets 3 seats and 5 concurrent claimants.
        let licenses = (0..<30).map { LicenseID("cl-\($0)") }
        let granted = try await withThrowingTaskGroup(of: Int.self) { group in
            for license in licenses {
                for user in 0..<5 {
                    group.addTask {
                        guard case .granted = try await store.claim(request("\(license)-s\(user)", user: "u\(user)", limit: 3, license: license)) else { return 0 }
                        return 1
                    }
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(granted == 30 * 3)
        for license in licenses {
            #expect(try await store.leases(licenseID: license).count == 3)
        }
        // Every master holds some licenses: the hash tags really spread them.
        for node in cluster.nodes {
            let keys = try await node.command("DBSIZE").int64 ?? 0
            #expect(keys > 0)
        }
    }
}
