#if canImport(Glibc)
import Glibc
#endif
import BackendTestSupport
import Foundation
import LicenseClient
import LicensePostgres
import Testing

/// A rolling update runs two releases on one schema: the new release's migration Job moves the
/// schema to N while N−1 daemons still serve, and a rollback (or a crash) starts an N−1 daemon on
/// the N schema. This build plays N−1; the tests write schema N+1 themselves, as a later
/// release's migration would, and watch a real daemon on a real Postgres.
@Suite("Schema compatibility across releases (real Postgres)", .serialized, .timeLimit(.minutes(3)))
struct SchemaCompatibilityTests {
    static let build = PostgresLicenseRepository.requiredSchemaVersion

    /// Applies what a later release's migration does: its changes and its schema_migrations row.
    static func applyLaterMigration(_ postgres: PostgresTestServer, database: String, version: Int, readableFrom: Int, _ changes: [String]) async throws {
        for change in changes {
            _ = try await postgres.superuser(change, database: database)
        }
        _ = try await postgres.superuser("""
            INSERT INTO schema_migrations (version, applied_at_ms, readable_from)
              VALUES (\(version), (extract(epoch from now()) * 1000)::bigint, \(readableFrom))
            """, database: database)
    }

    /// A user's lease taken, heartbeated and released on `daemon`.
    static func leaseRoundTrip(_ daemon: LicensedProcess, apiKey: String, machine: String) async throws {
        let connection = try await daemon.connect(apiKey: apiKey)
        let lease = try await connection.acquire(licenseID: "compat-pro", hardwareID: machine)
        _ = try await connection.heartbeat(sessionID: lease.sessionID)
        try await connection.release(sessionID: lease.sessionID)
        await connection.close()
    }

    @Test func anOlderDaemonKeepsServingAndRestartsOnANewerAdditiveSchemaButNotOnABreakingOne() async throws {
        let postgres = try await PostgresTestServer.start()
        defer { postgres.stop() }
        let settings = try await postgres.createDatabase()
        let url = PostgresTestServer.url(settings)
        let daemon = try await LicensedProcess.start(["--postgres-url", url, "--migrate", "--log-level", "notice"])
        let keys = try await daemon.setUpLicense("compat-pro", seats: 2, users: 2, leaseTTL: 60, heartbeat: 20)
        try await Self.leaseRoundTrip(daemon, apiKey: keys[0], machine: "before")

        // The next release's migration runs (its pre-upgrade Job) while this daemon serves: an
        // additive change, readable by this build's schema.
        try await Self.applyLaterMigration(postgres, database: settings.database, version: Self.build + 1, readableFrom: Self.build,
                                           ["ALTER TABLE sessions ADD COLUMN client_region text", "CREATE TABLE license_notes (license_id text PRIMARY KEY, note text)"])
        try await Self.leaseRoundTrip(daemon, apiKey: keys[1], machine: "during")

        // A rollback or a crash restarts this build on the newer schema: it starts, says so, and serves.
        #expect(await daemon.stop(signal: SIGTERM) != nil)
        try await daemon.launch()
        #expect(daemon.log().contains("the Postgres schema is newer than this build's; it stays compatible"), "\(daemon.log().suffix(2000))")
        try await Self.leaseRoundTrip(daemon, apiKey: keys[0], machine: "after-restart")

        // A later release that breaks older builds (it marks its migration readable only from
        // itself) stops this build's start with one line naming both versions.
        #expect(await daemon.stop(signal: SIGTERM) != nil)
        try await Self.applyLaterMigration(postgres, database: settings.database, version: Self.build + 2, readableFrom: Self.build + 2,
                                           ["ALTER TABLE sessions DROP COLUMN client_region"])
        let offset = daemon.log().utf8.count
        await #expect(throws: (any Error).self) { try await daemon.launch() }
        let refusal = daemon.log(from: offset)
        #expect(refusal.contains("the Postgres schema is at version \(Self.build + 2), which builds of schema \(Self.build + 2) or newer need; this build is at \(Self.build)"),
                "\(refusal.suffix(2000))")
    }
}
