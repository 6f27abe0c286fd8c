import Foundation
import LicenseClient
import LicenseCore
import LicenseWire
import Testing

/// Connections must sign in soon after connecting, and a connection that keeps offering bad
/// credentials is closed: idle unauthenticated connections cannot pile up.
@Suite("Sign-in limits", .serialized, .timeLimit(.minutes(3)))
struct SignInTests {
    @Test func twoThousandConnectionsThatNeverSignInAreClosedWithinTheSignInTime() async throws {
        try await TestServer.run(configure: { $0.signInTimeout = .seconds(3); $0.maxConnectionsPerAddress = 5_000 }) { server in
            let started = ContinuousClock.now
            var connections: [RawConnection] = []
            for _ in 0..<2_000 {
                connections.append(try await RawConnection(port: server.port, caFile: server.caFile))
            }
            let connected = started.duration(to: .now)
            // Each gets SIGN_IN_TIMEOUT, and then the server closes it.
            for connection in connections {
                let answer = try #require(try await connection.readFrame())
                #expect(answer.id == 0 && answer.status.code == .unauthenticated && answer.status.reason == "SIGN_IN_TIMEOUT")
                #expect(await connection.readsUntilClosed())
            }
            // All closed within the sign-in time after the last one connected, with slack for a loaded machine.
            #expect(started.duration(to: .now) < connected + .seconds(3) + .seconds(15), "connecting took \(connected)")
            // A client that signs in is served.
            let client = try await server.connect()
            _ = try await client.signingKeysJSON()
            await client.close()
        }
    }

    @Test func aSignedInConnectionOutlivesTheSignInTime() async throws {
        try await TestServer.run(configure: { $0.signInTimeout = .milliseconds(500) }) { server in
            let client = try await server.connect()
            try await Task.sleep(for: .seconds(1))
            _ = try await client.signingKeysJSON()
            await client.close()
        }
    }

    @Test func theThirdRefusedHelloIsAnsweredAndTheConnectionClosed() async throws {
        try await TestServer.run { server in
            let raw = try await RawConnection(port: server.port, caFile: server.caFile)
            for id in UInt64(1)...3 {
                try await raw.write(frame: .hello(id: id, apiKey: "lk_not_a_real_key_00000000000"))
                let answer = try #require(try await raw.readFrame())
                #expect(answer.id == id && answer.status.code == .unauthenticated && answer.status.reason == "INVALID_CREDENTIAL")
            }
            let last = try #require(try await raw.readFrame())
            #expect(last.id == 0 && last.status.reason == "TOO_MANY_REFUSED_HELLOS")
            #expect(await raw.readsUntilClosed())
            // A good Hello on a new connection still works.
            let client = try await server.connect()
            _ = try await client.signingKeysJSON()
            await client.close()
        }
    }

    /// Sends bad `Hello`s from `source` until `count` have been answered (the server closes a
    /// connection after three refusals; a new one is opened); returns the answers' statuses.
    static func refusedHellos(_ count: Int, from source: String, server: TestServer) async throws -> [Coditect_License_V1_Status] {
        var statuses: [Coditect_License_V1_Status] = []
        while statuses.count < count {
            let raw = try await RawConnection(port: server.port, caFile: server.caFile, source: source)
            for id in UInt64(1)...3 where statuses.count < count {
                try await raw.write(frame: .hello(id: id, apiKey: "lk_not_a_real_key_00000000000"))
                guard let answer = try await raw.readFrame(), answer.id == id else { break }
                statuses.append(answer.status)
            }
            await raw.close()
        }
        return statuses
    }

    @Test func refusedSignInsFromOneAddressWaitEverLongerWhileOtherAddressesSignIn() async throws {
        try await TestServer.run { server in
            let statuses = try await Self.refusedHellos(10, from: "127.0.0.3", server: server)
            // Five are refused plainly; the sixth says to wait a second; later ones are throttled
            // before their credential is looked at, each wait twice the one before.
            #expect(statuses.prefix(5).allSatisfy { $0.reason == "INVALID_CREDENTIAL" && $0.retryAfterMs == 0 })
            #expect(statuses[5].reason == "INVALID_CREDENTIAL" && statuses[5].retryAfterMs == 1000)
            #expect(statuses.dropFirst(6).allSatisfy { $0.code == .resourceExhausted && $0.reason == "SIGN_IN_THROTTLED" })
            #expect(statuses.dropFirst(5).map(\.retryAfterMs) == [1000, 2000, 4000, 8000, 16000])
            // A good key from the same address waits too...
            let neighbour = try await RawConnection(port: server.port, caFile: server.caFile, source: "127.0.0.3")
            try await neighbour.write(frame: .hello(id: 1, apiKey: TestServer.bootstrapKey))
            #expect(try await neighbour.readFrame()?.status.reason == "SIGN_IN_THROTTLED")
            await neighbour.close()
            // ...and another address is served at once.
            let good = try await server.connect()
            _ = try await good.signingKeysJSON()
            await good.close()
            // After the wait (server time), the address may try again.
            server.clock.advance(by: .seconds(61))
            let again = try await RawConnection(port: server.port, caFile: server.caFile, source: "127.0.0.3")
            try await again.write(frame: .hello(id: 1, apiKey: TestServer.bootstrapKey))
            #expect(try await again.readFrame()?.status.code == .ok)
            await again.close()
        }
    }

    @Test func aClientLibraryHonoursTheThrottlesWait() async throws {
        try await TestServer.run { server in
            _ = try await Self.refusedHellos(6, from: "127.0.0.1", server: server)
            // The next sign-in from this address must wait a second: the client waits and retries.
            var endpoint = server.endpoint
            endpoint.connectTimeout = .seconds(5)
            var configuration = LicenseClientConfiguration(endpoints: [endpoint], credentials: .apiKey(TestServer.bootstrapKey))
            configuration.stateDirectory = nil
            let client = try LicenseClient(configuration: configuration)
            // The server's clock follows real time meanwhile.
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    while true {
                        try await Task.sleep(for: .milliseconds(50))
                        server.clock.advance(by: .milliseconds(50))
                    }
                }
                let started = ContinuousClock.now
                try await client.refreshKeys()
                #expect(started.duration(to: .now) >= .milliseconds(900))
                group.cancelAll()
            }
            await client.close()
        }
    }

    @Test func aBurstOfRefusalsIsOneAuditRowWithItsCount() async throws {
        try await TestServer.run { server in
            _ = try await Self.refusedHellos(40, from: "127.0.0.4", server: server)
            let op = try await server.connect()
            func rows() async throws -> [Coditect_License_V1_AuditEvent] {
                try await op.call(.queryAudit(.with { $0.action = "hello"; $0.limit = 1000 })).auditEvents.events
                    .filter { $0.target.hasSuffix("from 127.0.0.4") }
            }
            // The first refusal is recorded at once; the other 39 are counted.
            #expect(try await rows().map(\.count) == [1])
            // When the interval has passed (server time), the next refusal records the count.
            server.clock.advance(by: .seconds(61))
            _ = try await Self.refusedHellos(1, from: "127.0.0.4", server: server)
            let recorded = try await rows()
            #expect(recorded.count == 3)
            #expect(recorded.map(\.count).reduce(0, +) == 41)
            #expect(recorded.contains { $0.count == 39 && $0.outcome == "SIGN_IN_THROTTLED" })
            await op.close()
        }
    }
}
