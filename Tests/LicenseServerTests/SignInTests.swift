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
        try await TestServer.run(configure: { $0.signInTimeout = .seconds(3) }) { server in
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
}
