import BackendTestSupport
import Foundation
import LicenseCore
import LicensePostgres
@testable import LicenseServer
import LicenseTokens
import Logging
import Testing

/// Scheduled rotation of the lease-signing key (`--signing-key-rotation`), on a real Postgres
/// shared by two replicas.
@Suite("Scheduled signing-key rotation", .serialized, .timeLimit(.minutes(2)))
struct SigningKeyRotationTests {
    @Test func twoReplicasRotateAnOldKeyExactlyOnceAndBothSignWithTheNewOne() async throws {
        let postgres = try await PostgresTestServer.shared()
        let settings = try await postgres.createDatabase()
        try await PostgresTestServer.withRepository(settings) { repository in
            try await repository.migrate()
            let clock = ManualWallClock(start: SystemWallClock().now())
            let first = SigningKey.stored(try SigningKey.generate(.edDSA), at: clock.now())
            try await repository.rotateSigningKey(to: first, publishRetiredUntil: clock.now(), audit: AuditEvent(at: clock.now(), tenantID: nil, actor: nil, action: "signing_key.import", target: first.keyID))
            var logger = Logger(label: "test.rotation")
            logger.logLevel = .critical
            let replicas = try (0..<2).map { _ in
                SigningKeyRefresher(
                    repository: repository, signer: try KeyRing(issuer: "coditect-licensed", keys: [first], now: clock.now()),
                    clock: clock, logger: logger, rotationPeriod: .seconds(90 * 86_400)
                )
            }
            // Younger than the period: nothing to do.
            clock.advance(by: .seconds(89 * 86_400))
            let early = (try await replicas[0].rotateIfDue(), try await replicas[1].rotateIfDue())
            #expect(early.0 == nil && early.1 == nil)
            // Older: both replicas find it due at once, and exactly one rotates.
            clock.advance(by: .seconds(2 * 86_400))
            let outcomes = try await withThrowingTaskGroup(of: String?.self) { group in
                for replica in replicas { group.addTask { try await replica.rotateIfDue() } }
                return try await group.reduce(into: [String?]()) { $0.append($1) }
            }
            let rotated = outcomes.compactMap { $0 }
            #expect(rotated.count == 1, "\(outcomes)")
            let keys = try await repository.signingKeys()
            #expect(keys.count == 2 && keys[0].keyID == rotated.first && keys[0].retiredAt == nil && keys[0].algorithm == "EdDSA")
            #expect(keys[1].keyID == first.keyID && keys[1].retiredAt != nil, "the old key is retired…")
            #expect((keys[1].publishUntil ?? clock.now()) > clock.now().advanced(by: LicenseService.maxOfflineGrace), "…and published for the longest offline grace")
            // The other replica signs with the new key after its next refresh; both publish both keys.
            for replica in replicas {
                try await replica.refresh()
                #expect((replica.signer as? KeyRing)?.currentKey.keyID == rotated.first)
                let jwks = try JWKS.decode(replica.signer.jwksJSON())
                #expect(Set(jwks.map(\.keyID)) == [first.keyID, rotated[0]])
            }
            let audit = try await repository.auditEvents(AuditQuery(action: "signing_key.rotate", limit: 10))
            #expect(audit.count == 1 && audit[0].actor == nil && audit[0].target == rotated[0], "one rotation, by the server")
            // The new key is young: nothing is due again.
            let again = try await replicas[0].rotateIfDue()
            #expect(again == nil)
        }
    }

    @Test func rotationPeriodsAreParsedWithTheirUnitAndBadOnesRefused() async throws {
        let run = try await CommandRun.run(LicensedBinaryTests.binary, ["--data-dir", "/nonexistent", "--signing-key-rotation", "90x"])
        #expect(run.status == 64 && run.output.contains("--signing-key-rotation"), "\(run.output)")
    }
}
