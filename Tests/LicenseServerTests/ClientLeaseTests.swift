import BackendTestSupport
import Foundation
@testable import LicenseClient
import LicenseCore
import LicenseTokens
import LicenseWire
import Synchronization
import Testing

/// The client library against a real `licensed`: leases kept on schedule, through outages,
/// crashes and restarts, and tokens that do not survive tampering. Time is simulated on both
/// sides (manual clocks); nothing sleeps.
@Suite("Client leases", .serialized, .timeLimit(.minutes(2)))
struct ClientLeaseTests {
    func sessions(_ server: TestServer) async throws -> [Coditect_License_V1_SessionInfo] {
        let admin = try await server.connect()
        var request = Coditect_License_V1_ListSessionsRequest()
        request.licenseID = "acme-pro"
        request.includeEnded = true
        let answer = await Result { try await admin.call(.listSessions(request)).sessions.sessions }
        await admin.close()
        return try answer.get()
    }

    func isRenewed(_ event: LeaseEvent) -> Bool { if case .renewed = event { true } else { false } }
    func isUnreachable(_ event: LeaseEvent) -> Bool { if case .serverUnreachable = event { true } else { false } }

    @Test func heartbeatsOnScheduleAndReleasesOnExit() async throws {
        let driver = LeaseDriver()
        let state = temporaryPath("client-state")
        defer { try? FileManager.default.removeItem(atPath: state) }
        try await TestServer.run(clock: driver.serverClock) { server in
            let keys = try await server.setUpLicense(seats: 1, users: 1)
            let client = try driver.client([server.endpoint], key: keys[0], state: state)
            try await withThrowingTaskGroup(of: Void.self) { group in
                let run = try await driver.start(client, in: &group)
                let (acquired, _) = try await driver.next("acquired") { if case .acquired = $0 { true } else { false } }
                guard case .acquired(let grant) = acquired else { return }
                #expect(grant.graceUntil == driver.serverClock.now().advanced(by: .seconds(86_400)))
                #expect(run.lease.features == grant.features)

                // The heartbeat is due after exactly the license's interval, not a moment before.
                let (renewed, advanced) = try await driver.next("renewed", where: isRenewed)
                #expect(advanced == .seconds(300))
                guard case .renewed(let fresh) = renewed else { return }
                #expect(fresh.leaseExpiresAt == driver.serverClock.now().advanced(by: .seconds(360)))
                // The row follows at the lease writer's next flush (at most a second behind).
                try await server.service.leaseWriter?.flush()
                #expect(try await sessions(server).first?.leaseExpiresAtMs == UInt64(fresh.leaseExpiresAt.millisecondsSinceEpoch))
                let (_, second) = try await driver.next("second renewal", where: isRenewed)
                #expect(second == .seconds(300))
                #expect(run.lease.status == .active)

                run.finish()
                guard case .success = await run.outcome() else { Issue.record("withLease failed"); return }
                try await group.waitForAll()
            }
            #expect(driver.all.last == .released)
            let ended = try await sessions(server)
            #expect(ended.count == 1)
            #expect(ended.first?.endReason == "released")
            #expect(ClientStateStore(root: state, endpoints: [server.endpoint], issuer: "coditect-licensed").lease("acme-pro") == nil, "a released lease is forgotten")
        }
    }

    @Test func releasesWhenTheBodyThrowsOrIsCancelled() async throws {
        let driver = LeaseDriver()
        try await TestServer.run(clock: driver.serverClock) { server in
            let keys = try await server.setUpLicense(seats: 1, users: 1)
            let client = try driver.client([server.endpoint], key: keys[0], state: nil)
            struct Failure: Error {}
            await #expect(throws: Failure.self) {
                try await client.withLease(licenseID: "acme-pro") { _ in throw Failure() }
            }
            // A scope that is cancelled while its body waits (on the manual clock, which never moves).
            try await withThrowingTaskGroup(of: Void.self) { group in
                let (holding, held) = AsyncStream.makeStream(of: Void.self)
                group.addTask {
                    await #expect(throws: CancellationError.self) {
                        try await client.withLease(licenseID: "acme-pro") { _ in
                            held.yield()
                            try await driver.clock.sleep(for: .seconds(600))
                        }
                    }
                }
                for await _ in holding { break }
                group.cancelAll()
                try await group.waitForAll()
            }
            let all = try await sessions(server)
            #expect(all.count == 2)
            #expect(all.allSatisfy { $0.endReason == "released" })
            // The seat is free again.
            _ = try await client.acquire(licenseID: "acme-pro")
        }
    }

    @Test func noSeatsIsAClearErrorThatSaysHowManySeatsAndIsNotRetried() async throws {
        let driver = LeaseDriver()
        try await TestServer.run(clock: driver.serverClock) { server in
            let keys = try await server.setUpLicense(seats: 2, users: 3)
            for (index, key) in keys.prefix(2).enumerated() {
                _ = try await driver.client([server.endpoint], key: key, state: nil, hardwareID: "m\(index)").acquire(licenseID: "acme-pro")
            }
            let third = try driver.client([server.endpoint], key: keys[2], state: nil, hardwareID: "m3")
            // A retry would sleep on the manual clock, which nobody advances: this would hang.
            do {
                _ = try await third.withLease(licenseID: "acme-pro") { _ in Issue.record("the body must not run") }
                Issue.record("expected NO_SEATS")
            } catch let error as LicenseCallError {
                #expect(error.isNoSeats)
                #expect(error.seatsTotal == 2)
                #expect(error.details["seats_used"] == "2")
                #expect(error.message.contains("all 2 seats"))
            }
            #expect(driver.clock.nextWake == nil)
        }
    }

    @Test func aServerStoppedMidLeaseLeavesTheClientOnGraceUntilItIsBack() async throws {
        let driver = LeaseDriver()
        let data = temporaryPath("licensed-data")
        let state = temporaryPath("client-state")
        defer { for path in [data, state] { try? FileManager.default.removeItem(atPath: path) } }
        try await withThrowingTaskGroup(of: Void.self) { group in
            let first = try await BackgroundServer.start(in: &group, clock: driver.serverClock, dataDirectory: data)
            let keys = try await first.server.setUpLicense(seats: 1, users: 1)
            let endpoint = first.server.endpoint
            let client = try driver.client([endpoint], key: keys[0], state: state)
            let run = try await driver.start(client, in: &group)
            let (acquired, _) = try await driver.next("acquired") { if case .acquired = $0 { true } else { false } }
            guard case .acquired(let grant) = acquired else { return }

            await first.stop()
            let (unreachable, advanced) = try await driver.next("server unreachable", where: isUnreachable)
            #expect(unreachable == .serverUnreachable(graceUntil: grant.graceUntil, error: LicenseCallError(code: .unavailable, reason: "CONNECTION_REFUSED", message: "nothing accepts connections at 127.0.0.1:\(endpoint.port); is licensed running on 127.0.0.1:\(endpoint.port)?")))
            #expect(advanced >= .seconds(300) && advanced < .seconds(310), "noticed at the first missed heartbeat (plus the server's reconnect delay)")
            #expect(run.lease.status == .offline(graceUntil: grant.graceUntil))
            // It keeps trying and keeps running; one more minute offline changes nothing.
            try await driver.pass(.seconds(60))
            #expect(run.lease.status == .offline(graceUntil: grant.graceUntil))

            let second = try await BackgroundServer.start(in: &group, clock: driver.serverClock, dataDirectory: data, port: endpoint.port)
            let (renewed, _) = try await driver.next("renewed after the outage", where: isRenewed)
            guard case .renewed(let resumed) = renewed else { return }
            #expect(resumed.sessionID == grant.sessionID, "the same session resumes")
            #expect(run.lease.status == .active)
            run.finish()
            guard case .success = await run.outcome() else { Issue.record("withLease failed"); return }
            #expect(try await sessions(second.server).map(\.endReason) == ["released"])
            await second.stop()
            try await group.waitForAll()
        }
    }

    @Test func graceEndsOnTimeEvenWhenTheClockIsTurnedBack() async throws {
        let driver = LeaseDriver()
        let data = temporaryPath("licensed-data")
        defer { try? FileManager.default.removeItem(atPath: data) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            let server = try await BackgroundServer.start(in: &group, clock: driver.serverClock, dataDirectory: data)
            let keys = try await server.server.setUpLicense(seats: 1, users: 1, offlineGrace: 1800)
            let client = try driver.client([server.server.endpoint], key: keys[0], state: nil)
            let run = try await driver.start(client, in: &group)
            let start = driver.serverClock.now()
            await server.stop()
            _ = try await driver.next("server unreachable", where: isUnreachable)
            // Turn the wall clock back two hours: reported, and the grace horizon does not move.
            driver.clock.setWall(driver.clock.wallTime().advanced(by: .seconds(-7200)))
            _ = try await driver.next("clock turned back") { $0 == .clockTurnedBack }
            _ = try await driver.next("grace expired") { $0 == .graceExpired }
            let expiredAt = driver.serverClock.now()
            #expect(expiredAt >= start.advanced(by: .seconds(1800)) && expiredAt < start.advanced(by: .seconds(1800 + 31)))
            guard case .failure(let error as LicenseCallError) = await run.outcome() else {
                Issue.record("withLease should throw GRACE_EXPIRED")
                return
            }
            #expect(error.reason == "GRACE_EXPIRED")
            if case .ended(let why) = run.lease.status { #expect(why.reason == "GRACE_EXPIRED") } else { Issue.record("not ended") }
            try await group.waitForAll()
        }
    }

    @Test func aRestartDuringAnOutageRunsOnTheStoredLeaseAndRejoinsItsSession() async throws {
        let driver = LeaseDriver()
        let data = temporaryPath("licensed-data")
        let state = temporaryPath("client-state")
        defer { for path in [data, state] { try? FileManager.default.removeItem(atPath: path) } }
        try await withThrowingTaskGroup(of: Void.self) { group in
            let first = try await BackgroundServer.start(in: &group, clock: driver.serverClock, dataDirectory: data)
            let keys = try await first.server.setUpLicense(seats: 1, users: 1)
            let endpoint = first.server.endpoint
            // The first run "crashes": it acquires (the lease is stored) and never releases.
            let crashed = try driver.client([endpoint], key: keys[0], state: state)
            let grant = try await crashed.startLease(licenseID: "acme-pro", options: LeaseOptions()).grant
            await first.stop()
            driver.advance(by: .seconds(120))

            // The restarted program, wall clock turned back an hour, finds no server.
            driver.clock.setWall(driver.clock.wallTime().advanced(by: .seconds(-3600)))
            let restarted = try driver.client([endpoint], key: keys[0], state: state)
            var options = LeaseOptions()
            options.acquireBudget = .zero
            let run = try await driver.start(restarted, options: options, in: &group)
            let (unreachable, _) = try await driver.next("running on grace", where: isUnreachable)
            #expect(unreachable == .serverUnreachable(graceUntil: grant.graceUntil, error: LicenseCallError(code: .unavailable, reason: "CONNECTION_REFUSED", message: "nothing accepts connections at 127.0.0.1:\(endpoint.port); is licensed running on 127.0.0.1:\(endpoint.port)?")))
            _ = try await driver.next("clock turned back") { $0 == .clockTurnedBack }
            let seenBeforeTheCrash = Timestamp(millisecondsSinceEpoch: grant.claims.issuedAt * 1000)
            #expect(restarted.serverTime().now >= seenBeforeTheCrash, "the stored high-water mark keeps server time from going back")
            #expect(driver.clock.wallTime() < seenBeforeTheCrash)

            let second = try await BackgroundServer.start(in: &group, clock: driver.serverClock, dataDirectory: data, port: endpoint.port)
            let (renewed, _) = try await driver.next("renewed", where: isRenewed)
            guard case .renewed(let resumed) = renewed else { return }
            #expect(resumed.sessionID == grant.sessionID)
            #expect(try await sessions(second.server).count == 1, "no second seat was taken")
            run.finish()
            _ = await run.outcome()
            await second.stop()
            try await group.waitForAll()
        }
    }

    @Test func tamperedExpiredForeignAndUnknownKeyTokensAreRejected() async throws {
        let driver = LeaseDriver()
        let state = temporaryPath("client-state")
        defer { try? FileManager.default.removeItem(atPath: state) }
        try await TestServer.run(clock: driver.serverClock) { server in
            let keys = try await server.setUpLicense(seats: 2, users: 1)
            let client = try driver.client([server.endpoint], key: keys[0], state: state)
            let grant = try await client.acquire(licenseID: "acme-pro")
            func rejected(_ token: String, by verifier: LicenseClient? = nil, _ reason: String, sourceLocation: SourceLocation = #_sourceLocation) async {
                do {
                    _ = try await (verifier ?? client).verifyToken(token, licenseID: "acme-pro", online: false)
                    Issue.record("accepted a token that should fail with \(reason)", sourceLocation: sourceLocation)
                } catch let error as LicenseCallError {
                    #expect(error.reason == reason, "\(error)", sourceLocation: sourceLocation)
                } catch {
                    Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
                }
            }
            #expect(try await client.verifyToken(grant.token, licenseID: "acme-pro", online: false).sessionID == grant.sessionID)

            // Tampered: one claim changed (a longer expiry), the signature kept.
            let parts = grant.token.split(separator: ".").map(String.init)
            var claims = try JSONSerialization.jsonObject(with: Base64URL.decode(parts[1][...])!) as! [String: Any]
            claims["exp"] = (claims["exp"] as! Int) + 86_400
            let forged = [parts[0], Base64URL.encode(try JSONSerialization.data(withJSONObject: claims)), parts[2]].joined(separator: ".")
            await rejected(forged, "INVALID_TOKEN")
            // A changed signature byte (the tenth character of the signature, never the last,
            // whose low bits base64url does not carry).
            var signature = Array(parts[2])
            signature[10] = signature[10] == "A" ? "B" : "A"
            await rejected([parts[0], parts[1], String(signature)].joined(separator: "."), "INVALID_TOKEN")

            // Another machine's copy of the token.
            let elsewhere = try driver.client([server.endpoint], key: keys[0], state: state, hardwareID: "machine-2")
            await rejected(grant.token, by: elsewhere, "HARDWARE_MISMATCH")

            // Signed by a key the server never published, with its own kid or the server's.
            let stranger = try SigningKey.generate(.edDSA)
            let strangerClaims = LeaseClaims(
                issuer: "coditect-licensed", userID: grant.claims.userID, tenantID: grant.claims.tenantID, licenseID: "acme-pro",
                sessionID: grant.sessionID, hardwareHash: grant.claims.hardwareHash, features: [], issuedAt: grant.claims.issuedAt,
                notBefore: grant.claims.notBefore, expiresAt: grant.claims.expiresAt, tokenID: "x"
            )
            let strangerSigned = try await LeaseToken.sign(strangerClaims, with: stranger)
            await rejected(strangerSigned, "UNKNOWN_SIGNING_KEY")
            let strangerToken = strangerSigned.split(separator: ".").map(String.init)
            let header = String(decoding: Base64URL.decode(parts[0][...])!, as: UTF8.self)
            await rejected([Base64URL.encode(Data(header.utf8)), strangerToken[1], strangerToken[2]].joined(separator: "."), "INVALID_TOKEN")

            // Expired: past the grace horizon (plus the verifier's one-minute leeway).
            driver.advance(by: .seconds(86_400 + 61))
            await rejected(grant.token, "TOKEN_EXPIRED")

            // Keys cached longer than their lifetime (7 days) are not trusted offline; online they
            // are fetched again.
            driver.advance(by: .seconds(7 * 86_400))
            await rejected(grant.token, "KEYS_UNAVAILABLE")
            let reloaded = try driver.client([server.endpoint], key: keys[0], state: state)
            await rejected(grant.token, by: reloaded, "KEYS_UNAVAILABLE")
            try await reloaded.refreshKeys()
            await rejected(grant.token, by: reloaded, "TOKEN_EXPIRED")
        }
    }

    @Test func failsOverToTheNextEndpointAndRefreshesARefusedCredentialOnce() async throws {
        let driver = LeaseDriver()
        try await TestServer.run(clock: driver.serverClock) { server in
            let keys = try await server.setUpLicense(seats: 1, users: 1)
            let dead = LicenseServerEndpoint(host: "127.0.0.1", port: try FreePort.next(), caFile: server.caFile)
            let calls = Mutex<[Bool]>([])
            var configuration = LicenseClientConfiguration(endpoints: [dead, server.endpoint], credentials: LicenseCredentialProvider { refresh in
                calls.withLock { $0.append(refresh) }
                return .apiKey(refresh ? keys[0] : "lk_expired_key_000000000000000000")
            })
            configuration.clock = driver.clock
            configuration.stateDirectory = nil
            configuration.hardwareID = "machine-1"
            let client = try LicenseClient(configuration: configuration)
            let grant = try await client.acquire(licenseID: "acme-pro")
            #expect(!grant.sessionID.isEmpty)
            #expect(calls.withLock { $0 } == [false, true], "refused once, refreshed once")
            // One shared connection: more calls make no new Hello.
            _ = try await client.heartbeat(grant)
            try await client.release(sessionID: grant.sessionID)
            #expect(calls.withLock { $0 }.count == 2)

            // A credential that stays refused is an error, not a retry loop.
            var bad = configuration
            bad.credentials = .apiKey("lk_wrong_key_000000000000000000000")
            await #expect(throws: LicenseCallError.self) { _ = try await LicenseClient(configuration: bad).acquire(licenseID: "acme-pro") }
        }
    }

    @Test func aRevokedSessionIsNoticedAtOnceAndEndsTheLeaseAndTheBody() async throws {
        let driver = LeaseDriver()
        try await TestServer.run(clock: driver.serverClock) { server in
            let keys = try await server.setUpLicense(seats: 1, users: 1)
            let client = try driver.client([server.endpoint], key: keys[0], state: nil)
            try await withThrowingTaskGroup(of: Void.self) { group in
                let run = try await driver.start(client, in: &group)
                let admin = try await server.connect()
                var revoke = Coditect_License_V1_RevokeSessionRequest()
                revoke.sessionID = run.lease.grant.sessionID
                _ = try await admin.call(.revokeSession(revoke))
                await admin.close()
                // The notice ends the lease at once: no time passes, no heartbeat is needed.
                _ = try await driver.next("revoked", advancing: false) { $0 == .revoked }
                guard case .failure(let error as LicenseCallError) = await run.outcome() else {
                    Issue.record("withLease should throw SESSION_REVOKED")
                    return
                }
                #expect(error.reason == "SESSION_REVOKED")
                #expect(!driver.all.contains(.released), "a revoked seat is not released again")
                #expect(driver.clock.monotonicTime() == .zero)
                try await group.waitForAll()
            }
        }
    }

    @Test func aLeaseThatLapsedWhileAwayIsAskedForAgainAndEndsWhenTheSeatIsTaken() async throws {
        let driver = LeaseDriver()
        try await TestServer.run(clock: driver.serverClock) { server in
            let keys = try await server.setUpLicense(seats: 1, users: 2)
            let client = try driver.client([server.endpoint], key: keys[0], state: nil)
            try await withThrowingTaskGroup(of: Void.self) { group in
                let run = try await driver.start(client, in: &group)
                // The client's process is suspended (a laptop lid closed) past the lease TTL; another
                // user takes the freed seat meanwhile.
                driver.serverClock.advance(by: .seconds(400))
                _ = try await driver.client([server.endpoint], key: keys[1], state: nil, hardwareID: "other").acquire(licenseID: "acme-pro")
                let (lost, _) = try await driver.next("lost") { if case .lost = $0 { true } else { false } }
                guard case .lost(let error) = lost else { return }
                #expect(error.isNoSeats)
                #expect(error.seatsTotal == 1)
                guard case .failure(let thrown as LicenseCallError) = await run.outcome() else {
                    Issue.record("withLease should throw NO_SEATS")
                    return
                }
                #expect(thrown.isNoSeats)
                try await group.waitForAll()
            }
        }
    }

    @Test func aGoingAwayServerHandsTheLeaseToTheNextOneWithoutAnOutage() async throws {
        let redis = try await RedisTestServer.start()
        defer { redis.stop() }
        let postgresServer = try await PostgresTestServer.start()
        defer { postgresServer.stop() }
        let postgres = try await postgresServer.createDatabase()
        // The Redis seat store reads Redis's clock, so simulated time starts at the real time.
        let driver = LeaseDriver(start: SystemWallClock().now())
        let dataA = temporaryPath("licensed-a")
        let dataB = temporaryPath("licensed-b")
        defer { for path in [dataA, dataB] { try? FileManager.default.removeItem(atPath: path) } }
        try await withThrowingTaskGroup(of: Void.self) { group in
            let a = try await BackgroundServer.start(in: &group, clock: driver.serverClock, dataDirectory: dataA, redis: redis.configuration, postgres: postgres)
            let b = try await BackgroundServer.start(in: &group, clock: driver.serverClock, dataDirectory: dataB, redis: redis.configuration, postgres: postgres)
            let keys = try await a.server.setUpLicense(seats: 1, users: 1)
            let client = try driver.client([a.server.endpoint, b.server.endpoint], key: keys[0], state: nil)
            let run = try await driver.start(client, in: &group)
            await a.stop()
            let (renewed, advanced) = try await driver.next("renewed by the other server", where: isRenewed)
            // The server's reconnect delay (1 s, up to 25 % jitter) was honoured. On a loaded machine
            // the first reconnect may still reach the stopping server and be refused; the client's
            // next attempt (one backoff step, ≤ 1.25 s later) reaches the other, still with no outage.
            #expect(advanced >= .seconds(301) && advanced <= .milliseconds(303_000), "advanced \(advanced), events \(driver.all)")
            guard case .renewed(let grant) = renewed else { return }
            #expect(grant.sessionID == run.lease.grant.sessionID)
            #expect(!driver.all.contains(where: isUnreachable), "no outage was reported")
            run.finish()
            guard case .success = await run.outcome() else { Issue.record("withLease failed"); return }
            let admin = try await b.server.connect()
            var request = Coditect_License_V1_ListSessionsRequest()
            request.licenseID = "acme-pro"
            request.includeEnded = true
            #expect(try await admin.call(.listSessions(request)).sessions.sessions.map(\.endReason) == ["released"])
            await admin.close()
            await b.stop()
            try await group.waitForAll()
        }
    }

    @Test func unavailableServersAreRetriedWithGrowingBackoffWithinTheBudget() async throws {
        let driver = LeaseDriver()
        let dead = [try FreePort.next(), try FreePort.next()].map { LicenseServerEndpoint(host: "127.0.0.1", port: $0) }
        var configuration = LicenseClientConfiguration(endpoints: dead, credentials: .apiKey("lk_unused_key_0000000000000000000"))
        configuration.clock = driver.clock
        configuration.stateDirectory = nil
        configuration.hardwareID = "machine-1"
        configuration.retryBudget = .seconds(10)
        configuration.backoff = Backoff(initial: .seconds(1), maximum: .seconds(4))
        let client = try LicenseClient(configuration: configuration)
        try await withThrowingTaskGroup(of: Void.self) { group in
            let (sleeps, sleeping) = AsyncStream.makeStream(of: Void.self)
            driver.clock.observeSleeps { sleeping.yield() }
            let (outcomes, outcome) = AsyncStream.makeStream(of: LicenseCallError?.self)
            group.addTask {
                do {
                    _ = try await client.acquire(licenseID: "acme-pro")
                    outcome.yield(nil)
                } catch let error as LicenseCallError {
                    outcome.yield(error)
                }
                outcome.finish()
                sleeping.finish()
            }
            var waits: [Duration] = []
            for await _ in sleeps {
                guard let wake = driver.clock.nextWake else { continue }
                waits.append(wake)
                driver.clock.advance(by: wake)
            }
            var results = outcomes.makeAsyncIterator()
            let error = try #require(await results.next() ?? nil)
            #expect(error.code == .unavailable)
            #expect(error.reason == "CONNECTION_REFUSED")
            // 1 s, 2 s, 4 s (each jittered to 50–100%), capped at 4 s, and never past the 10 s budget.
            #expect(waits.count >= 2)
            #expect(waits.reduce(.zero, +) <= .seconds(10))
            for (index, wait) in waits.enumerated() {
                let ceiling = min(Duration.seconds(1) * Double(1 << index), .seconds(4))
                #expect(wait >= ceiling / 2 && wait <= ceiling, "wait \(index): \(wait)")
            }
        }
    }
}
