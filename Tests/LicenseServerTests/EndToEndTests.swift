import Foundation
import LicenseClient
import LicenseCore
import LicenseTokens
import LicenseWire
import Testing

/// The daemon end to end: real TLS on loopback, driven by `LicenseClient`.
@Suite("End to end", .serialized)
struct EndToEndTests {
    func expectCallError(_ code: WireStatus.Code, _ reason: String, _ body: () async throws -> Void) async {
        do {
            try await body()
            Issue.record("expected \(reason)")
        } catch let error as LicenseCallError {
            #expect(error.code == code, "\(error)")
            #expect(error.reason == reason, "\(error)")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func acquireHeartbeatReleaseAndVerifyOffline() async throws {
        try await TestServer.run { server in
            let keys = try await server.setUpLicense(seats: 1, users: 2)
            let client = try await server.connect(apiKey: keys[0])
            let hello = try await client.hello(apiKey: keys[0])
            #expect(hello.tenantID == "t-acme-pro")
            #expect(hello.roles == ["user"])
            #expect(hello.heartbeatIntervalS == 300)
            #expect(hello.leaseTtlS == 360)

            let lease = try await client.acquire(licenseID: "acme-pro", hardwareID: "machine-1", clientInfo: ["os": "linux"])
            #expect(lease.heartbeatIntervalS == 300)
            #expect(lease.leaseExpiresAtMs == UInt64(server.clock.now().advanced(by: .seconds(360)).millisecondsSinceEpoch))
            let verifier = try await client.tokenVerifier()
            let claims = try verifier.verify(lease.leaseToken, now: server.clock.now(), hardwareID: "machine-1")
            #expect(claims.sessionID == lease.sessionID)
            #expect(throws: LicenseError.self) { try verifier.verify(lease.leaseToken, now: server.clock.now(), hardwareID: "machine-2") }

            server.clock.advance(by: .seconds(300))
            let beat = try await client.heartbeat(sessionID: lease.sessionID, tokenExpiresAtMs: lease.tokenExpiresAtMs)
            #expect(beat.leaseExpiresAtMs == UInt64(server.clock.now().advanced(by: .seconds(360)).millisecondsSinceEpoch))
            #expect(beat.leaseToken.isEmpty)

            let other = try await server.connect(apiKey: keys[1])
            await expectCallError(.resourceExhausted, "NO_SEATS") { _ = try await other.acquire(licenseID: "acme-pro", hardwareID: "machine-2") }
            try await client.release(sessionID: lease.sessionID)
            _ = try await other.acquire(licenseID: "acme-pro", hardwareID: "machine-2")
            await client.close()
            await other.close()
        }
    }

    @Test func seatsRunOutAndTheNextIsRefused() async throws {
        try await TestServer.run { server in
            let keys = try await server.setUpLicense(seats: 3, users: 4)
            for key in keys.prefix(3) {
                let client = try await server.connect(apiKey: key)
                _ = try await client.acquire(licenseID: "acme-pro", hardwareID: "hw-\(key.suffix(6))")
                await client.close()
            }
            let last = try await server.connect(apiKey: keys[3])
            await expectCallError(.resourceExhausted, "NO_SEATS") { _ = try await last.acquire(licenseID: "acme-pro", hardwareID: "hw-last") }
            let admin = try await server.connect()
            var status = Coditect_License_V1_LicenseStatusRequest()
            status.licenseID = "acme-pro"
            let usage = try await admin.call(.licenseStatus(status)).licenseStatus.licenses
            #expect(usage.first?.seatsUsed == 3)
            #expect(usage.first?.seatsTotal == 3)
            await last.close()
            await admin.close()
        }
    }

    @Test func twoHundredConcurrentAcquiresOverTwentyConnectionsGrantExactlyTen() async throws {
        try await TestServer.run { server in
            let keys = try await server.setUpLicense(seats: 10, users: 20)
            var connections: [LicenseConnection] = []
            for key in keys { connections.append(try await server.connect(apiKey: key)) }
            let all = connections
            let results = try await within {
                try await withThrowingTaskGroup(of: (granted: Bool, session: String, reason: String).self) { group in
                    for (c, connection) in all.enumerated() {
                        for i in 0..<10 {
                            group.addTask {
                                do {
                                    // Distinct hardware per call, so none is an idempotent retry.
                                    let lease = try await connection.acquire(licenseID: "acme-pro", hardwareID: "hw-\(c)-\(i)")
                                    return (true, lease.sessionID, "")
                                } catch let error as LicenseCallError {
                                    return (false, "", error.reason)
                                }
                            }
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
            }
            #expect(results.count == 200)
            #expect(results.filter(\.granted).count == 10)
            #expect(Set(results.filter(\.granted).map(\.session)).count == 10)
            #expect(results.filter { !$0.granted }.allSatisfy { $0.reason == "NO_SEATS" })
            let sessions = try await server.service.repository.sessions(license: "acme-pro", includeEnded: false)
            #expect(sessions.count == 10)
            for connection in all { await connection.close() }
        }
    }

    @Test func aRetriedAcquireReturnsTheSameSession() async throws {
        try await TestServer.run { server in
            let keys = try await server.setUpLicense(seats: 1, users: 1)
            let client = try await server.connect(apiKey: keys[0])
            let first = try await client.acquire(licenseID: "acme-pro", hardwareID: "hw", idempotencyKey: "start-1")
            // The client lost the answer and reconnects: same key, same session, no second seat.
            await client.close()
            let again = try await server.connect(apiKey: keys[0])
            let retry = try await again.acquire(licenseID: "acme-pro", hardwareID: "hw", idempotencyKey: "start-1")
            #expect(retry.sessionID == first.sessionID)
            #expect(retry.resumed)
            await again.close()
        }
    }

    @Test func aLapsedLeaseIsReclaimed() async throws {
        try await TestServer.run { server in
            let keys = try await server.setUpLicense(seats: 1, users: 2)
            let crashed = try await server.connect(apiKey: keys[0])
            let lease = try await crashed.acquire(licenseID: "acme-pro", hardwareID: "hw-1")
            let waiting = try await server.connect(apiKey: keys[1])
            await expectCallError(.resourceExhausted, "NO_SEATS") { _ = try await waiting.acquire(licenseID: "acme-pro", hardwareID: "hw-2") }
            server.clock.advance(by: .seconds(361))
            _ = try await waiting.acquire(licenseID: "acme-pro", hardwareID: "hw-2")
            await expectCallError(.resourceExhausted, "LEASE_LAPSED") { _ = try await crashed.heartbeat(sessionID: lease.sessionID) }
            await crashed.close()
            await waiting.close()
        }
    }

    @Test func manyRequestsInFlightOnOneConnectionAreAnsweredWithTheirIDs() async throws {
        try await TestServer.run { server in
            let keys = try await server.setUpLicense(seats: 500, users: 1)
            let raw = try await RawConnection(port: server.port, caFile: server.caFile)
            try await raw.write(frame: .hello(id: 1, apiKey: keys[0]))
            #expect(try await raw.readFrame()?.status.isOK == true)
            // 300 requests written back to back before reading any answer (more than the in-flight limit).
            var request = Coditect_License_V1_AcquireRequest()
            request.licenseID = "acme-pro"
            for id in 2...301 as ClosedRange<UInt64> {
                request.hardwareID = "hw-\(id)"
                try await raw.write(frame: .make(id: id, .acquire(request)))
            }
            var seen = Set<UInt64>()
            for _ in 0..<300 {
                let answer = try #require(try await raw.readFrame())
                #expect(answer.status.isOK)
                seen.insert(answer.id)
            }
            #expect(seen == Set(2...301))
            await raw.close()
        }
    }

    /// A call on a connection that has closed fails at once. (Its frame handler is gone with the
    /// closed pipeline, so nothing but the failed write can answer it; it used to wait forever,
    /// which hung a test whose server refused the client's certificate after the handshake.)
    @Test func aCallOnAClosedConnectionFailsAtOnce() async throws {
        try await TestServer.run { server in
            let connection = try await LicenseConnection.connect(to: server.endpoint)
            await connection.close()
            #expect(!connection.isActive)
            let started = ContinuousClock.now
            await expectCallError(.unavailable, "CONNECTION_CLOSED") { _ = try await connection.hello(apiKey: TestServer.bootstrapKey) }
            #expect(ContinuousClock.now - started < .seconds(5), "the call waited \(ContinuousClock.now - started) instead of failing at once")
        }
    }

    @Test func signingKeysAreServedAsJWKS() async throws {
        try await TestServer.run { server in
            let client = try await server.connect()
            let jwks = try await client.signingKeysJSON()
            let keys = try JWKS.decode(jwks)
            #expect(keys.count == 1)
            #expect(keys.first?.algorithm == .edDSA)
            #expect(jwks.contains("\"kty\":\"OKP\""))
            await client.close()
        }
    }

    @Test func gracefulShutdownSendsGoingAwayAndFinishesInFlightCalls() async throws {
        try await TestServer.run { server in
            let keys = try await server.setUpLicense(seats: 5, users: 1)
            let client = try await server.connect(apiKey: keys[0])
            async let firstNotice: Coditect_License_V1_Notice? = {
                var iterator = client.notices.makeAsyncIterator()
                return await iterator.next()
            }()
            let lease = try await client.acquire(licenseID: "acme-pro", hardwareID: "hw")
            await server.shutdown()
            let notice = try #require(await firstNotice)
            #expect(notice.goingAway.reconnectAfterMs == 1000)
            // The seat is kept across the shutdown: it is still in the repository.
            #expect(try await server.service.repository.session(SessionID(lease.sessionID))?.endedAt == nil)
        }
    }
}
