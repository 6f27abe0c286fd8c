import BackendTestSupport
import LicenseCore
import LicensePostgres
import Logging
import PostgresNIO
import Testing

/// What only the Postgres repository has: row-level security, the cross-replica license cache,
/// and bounded failure when the database is gone.
@Suite("Postgres repository", .timeLimit(.minutes(2)))
struct PostgresRepositoryTests {
    let t0 = Timestamp(millisecondsSinceEpoch: 1_800_000_000_000)

    func audit(_ action: String, _ target: String, tenant: TenantID?) -> AuditEvent {
        AuditEvent(at: t0, tenantID: tenant, actor: "usr-op", action: action, target: target)
    }

    /// A live session of `tenant`'s license and user (as `seedTwoTenants` makes them).
    func liveSession(_ id: String, tenant: String = "acme") -> LeaseSession {
        LeaseSession(id: SessionID(id), tenantID: TenantID(tenant), licenseID: LicenseID("\(tenant)-pro"), userID: UserID("usr-\(tenant)"),
                     hardwareID: "hw-\(id)", idempotencyKey: "k-\(id)", clientInfo: ["os": "linux"], createdAt: t0, leaseExpiresAt: t0.advanced(by: .seconds(360)))
    }

    func seedTwoTenants(_ repository: any LicenseRepository) async throws {
        for tenant in ["acme", "globex"] {
            try await repository.createTenant(Tenant(id: TenantID(tenant), name: tenant, createdAt: t0), audit: audit("tenant.create", tenant, tenant: TenantID(tenant)))
            try await repository.createLicense(License(id: LicenseID("\(tenant)-pro"), tenantID: TenantID(tenant), name: "Pro", seats: 5, createdAt: t0),
                                               audit: audit("license.create", "\(tenant)-pro", tenant: TenantID(tenant)))
            try await repository.createUser(User(id: UserID("usr-\(tenant)"), tenantID: TenantID(tenant), name: "u", role: .tenantUser, createdAt: t0),
                                            apiKey: nil, audit: audit("user.create", "usr-\(tenant)", tenant: TenantID(tenant)))
        }
        try await repository.insertSession(
            LeaseSession(id: "ses-globex", tenantID: "globex", licenseID: "globex-pro", userID: "usr-globex", hardwareID: "hw",
                         idempotencyKey: "", createdAt: t0, leaseExpiresAt: t0.advanced(by: .seconds(360))),
            audit: audit("session.acquire", "ses-globex", tenant: "globex"))
    }

    /// Concurrent session writes are combined into one statement per batch; a duplicate, a
    /// second end, an ended session or another tenant's row in the batch fails (or answers)
    /// only its own caller, and every write has exactly one audit row.
    @Test func concurrentSessionWritesAreCombinedAndFailAlone() async throws {
        let settings = try await PostgresTestServer.shared().createDatabase()
        try await PostgresTestServer.withRepository(settings) { root in
            try await root.migrate()
            try await seedTwoTenants(root)
            let acme = root.scoped(to: "acme")
            let ids = (0..<300).map { "ses-\($0)" }
            // 300 inserts at once, plus a duplicate of one of them and a row of another tenant.
            let results = await withTaskGroup(of: (String, Bool).self) { group in
                for id in ids {
                    group.addTask { ((try? await acme.insertSession(liveSession(id), audit: audit("session.acquire", id, tenant: "acme"))) != nil ? id : "failed:" + id, true) }
                }
                group.addTask { ((try? await acme.insertSession(liveSession("ses-7"), audit: audit("session.acquire", "ses-7", tenant: "acme"))) != nil ? "dup-ok" : "dup-refused", true) }
                group.addTask { ((try? await acme.insertSession(liveSession("ses-x", tenant: "globex"), audit: audit("session.acquire", "ses-x", tenant: "globex"))) != nil ? "foreign-ok" : "foreign-refused", true) }
                var all: [String] = []
                for await (result, _) in group { all.append(result) }
                return all
            }
            #expect(Set(results).isSuperset(of: ids.filter { $0 != "ses-7" }), "every distinct insert succeeded")
            #expect(results.contains("ses-7") != results.contains("dup-ok"), "exactly one of the two ses-7 inserts succeeded")
            #expect(results.contains("foreign-refused"))
            #expect(try await root.session("ses-x") == nil)
            #expect(try await root.sessions(license: "acme-pro", includeEnded: false).count == 300)

            // Ends at once: each session twice, plus one already ended and one unknown.
            _ = try await acme.endSession("ses-0", at: t0, reason: .released, audit: audit("session.release", "ses-0", tenant: "acme"))
            let ended = await withTaskGroup(of: Bool.self) { group in
                for id in ids + ids + ["ses-missing"] {
                    group.addTask { (try? await acme.endSession(SessionID(id), at: t0.advanced(by: .seconds(5)), reason: .released, audit: audit("session.release", id, tenant: "acme"))) ?? false }
                }
                var count = 0
                for await wasLive in group where wasLive { count += 1 }
                return count
            }
            #expect(ended == 299, "each live session ended exactly once")
            #expect(try await root.sessions(license: "acme-pro", includeEnded: false).isEmpty)
            #expect(try await root.session("ses-5")?.endReason == .released)
            let audits = try await root.auditEvents(AuditQuery(tenantID: "acme", limit: 5_000))
            #expect(audits.filter { $0.action == "session.acquire" }.count == 300)
            #expect(audits.filter { $0.action == "session.release" }.count == 300)
            #expect(Set(audits.filter { $0.action == "session.release" }.map(\.target)).count == 300)
        }
    }

    /// Acquires and releases arriving together share one statement (inserts and ends in one
    /// round trip and one commit); a duplicate insert among them fails only its own caller, and
    /// the ends beside it still happen, each with its audit row.
    @Test func mixedInsertsAndEndsInOneBatchFailAlone() async throws {
        let settings = try await PostgresTestServer.shared().createDatabase()
        try await PostgresTestServer.withRepository(settings) { root in
            try await root.migrate()
            try await seedTwoTenants(root)
            let acme = root.scoped(to: "acme")
            let old = (0..<100).map { "ses-old-\($0)" }
            for id in old { try await acme.insertSession(liveSession(id), audit: audit("session.acquire", id, tenant: "acme")) }
            let new = (0..<100).map { "ses-new-\($0)" }
            let results = await withTaskGroup(of: String.self) { group in
                for id in new {
                    group.addTask { (try? await acme.insertSession(liveSession(id), audit: audit("session.acquire", id, tenant: "acme"))) != nil ? "inserted" : "refused" }
                }
                for id in old {
                    group.addTask { (try? await acme.endSession(SessionID(id), at: t0, reason: .released, audit: audit("session.release", id, tenant: "acme"))) == true ? "ended" : "not ended" }
                }
                // An insert of a session that exists already: refused, without failing the others.
                group.addTask { (try? await acme.insertSession(liveSession("ses-old-3"), audit: audit("session.acquire", "ses-old-3", tenant: "acme"))) != nil ? "duplicate inserted" : "duplicate refused" }
                var all: [String: Int] = [:]
                for await result in group { all[result, default: 0] += 1 }
                return all
            }
            #expect(results == ["inserted": 100, "ended": 100, "duplicate refused": 1])
            #expect(try await root.sessions(license: "acme-pro", includeEnded: false).map(\.id.rawValue).sorted() == new.sorted())
            let audits = try await root.auditEvents(AuditQuery(tenantID: "acme", limit: 5_000))
            #expect(audits.filter { $0.action == "session.acquire" }.count == 200)
            #expect(Set(audits.filter { $0.action == "session.release" }.map(\.target)) == Set(old))
            #expect(audits.filter { $0.action == "session.release" }.count == 100)
        }
    }

    @Test func rowLevelSecurityHidesAndProtectsOtherTenantsRows() async throws {
        let settings = try await PostgresTestServer.shared().createDatabase()
        try await PostgresTestServer.withRepository(settings) { root in
            try await root.migrate()
            #expect(try await !root.roleBypassesRowLevelSecurity())
            try await seedTwoTenants(root)
            let acme = root.scoped(to: "acme")
            // Reads: the database itself returns nothing of globex's.
            #expect(try await acme.tenants().map(\.id) == ["acme"])
            #expect(try await acme.license("globex-pro") == nil)
            #expect(try await acme.licenses(tenant: nil).map(\.id) == ["acme-pro"])
            #expect(try await acme.session("ses-globex") == nil)
            #expect(try await acme.sessions(license: "globex-pro", includeEnded: true).isEmpty)
            #expect(try await acme.user("usr-globex") == nil)
            #expect(try await acme.auditEvents(AuditQuery(limit: 100)).allSatisfy { $0.tenantID == "acme" })
            #expect(try await acme.users(tenant: nil).map(\.id).allSatisfy { $0 != "usr-globex" })
            #expect(try await acme.apiKeys(user: nil, tenant: nil).allSatisfy { $0.tenantID == "acme" })
            var globex = try #require(try await root.tenant("globex"))
            globex.emailDomains = ["globex.com"]
            try await root.updateTenant(globex, audit: audit("tenant.update", "globex", tenant: "globex"))
            #expect(try await root.tenants(emailDomain: "globex.com").map(\.id) == ["globex"])
            #expect(try await acme.tenants(emailDomain: "globex.com").isEmpty)
            // Signing keys are the daemon's alone: a tenant-scoped statement sees none and cannot add one.
            try await root.rotateSigningKey(to: StoredSigningKey(keyID: "k1", algorithm: "EdDSA", privateKeyPEM: "pem", createdAt: t0),
                                            publishRetiredUntil: t0, audit: audit("signing_key.import", "k1", tenant: nil))
            #expect(try await root.signingKeys().count == 1)
            #expect(try await acme.signingKeys().isEmpty)
            await #expect(throws: LicenseError.self) {
                try await acme.rotateSigningKey(to: StoredSigningKey(keyID: "k2", algorithm: "EdDSA", privateKeyPEM: "evil", createdAt: t0),
                                                publishRetiredUntil: t0, audit: audit("signing_key.rotate", "k2", tenant: "acme"))
            }
            #expect(try await root.signingKeys().map(\.keyID) == ["k1"])
            // Writes: ending or moving globex's session changes nothing; inserting into globex is refused.
            #expect(try await !acme.endSession("ses-globex", at: t0, reason: .revoked, audit: audit("session.revoke", "ses-globex", tenant: "acme")))
            try await acme.updateLease(session: "ses-globex", expiresAt: t0)
            #expect(try await root.session("ses-globex")?.endedAt == nil)
            #expect(try await root.session("ses-globex")?.leaseExpiresAt == t0.advanced(by: .seconds(360)))
            await #expect(throws: LicenseError.self) {
                try await acme.insertSession(
                    LeaseSession(id: "ses-x", tenantID: "globex", licenseID: "globex-pro", userID: "usr-globex", hardwareID: "hw",
                                 idempotencyKey: "", createdAt: t0, leaseExpiresAt: t0),
                    audit: audit("session.acquire", "ses-x", tenant: "globex"))
            }
            await #expect(throws: LicenseError.self) {
                try await acme.createLicense(License(id: "sneaky", tenantID: "globex", name: "x", seats: 1, createdAt: t0),
                                             audit: audit("license.create", "sneaky", tenant: "globex"))
            }
            #expect(try await root.license("sneaky") == nil)
            #expect(try await root.session("ses-x") == nil)
        }
        // With no tenant set at all, a connection sees nothing (the policy fails closed).
        let server = try await PostgresTestServer.shared()
        let rows = try await server.superuser("SELECT count(*) FROM licenses", database: settings.database, user: PostgresTestServer.daemonRole)
        let visible = try rows.first?.decode(Int64.self)
        #expect(visible == 0)
        let all = try await server.superuser("SELECT count(*) FROM licenses", database: settings.database).first?.decode(Int64.self)
        #expect(all == 2)
    }

    @Test func aLicenseChangedByAnotherReplicaIsSeenAtOnce() async throws {
        let settings = try await PostgresTestServer.shared().createDatabase()
        try await PostgresTestServer.withRepository(settings) { first in
            try await first.migrate()
            try await seedTwoTenants(first)
            try await PostgresTestServer.withRepository(settings) { second in
                // Wait for both subscriptions, then warm both caches.
                let ready = ContinuousClock.now + .seconds(10)
                while !(first.licenseCacheIsLive && second.licenseCacheIsLive), ContinuousClock.now < ready {
                    try await Task.sleep(for: .milliseconds(20))
                }
                #expect(first.licenseCacheIsLive && second.licenseCacheIsLive)
                #expect(try await first.license("acme-pro")?.seats == 5)
                #expect(try await second.license("acme-pro")?.seats == 5)
                // An administrator changes the license through another path (here: SQL).
                try await PostgresTestServer.shared().superuser("UPDATE licenses SET seats = 9 WHERE id = 'acme-pro'", database: settings.database)
                let deadline = ContinuousClock.now + .seconds(5)
                var seen = (0, 0)
                while seen != (9, 9), ContinuousClock.now < deadline {
                    seen = (try await first.license("acme-pro")?.seats ?? 0, try await second.license("acme-pro")?.seats ?? 0)
                    if seen != (9, 9) { try await Task.sleep(for: .milliseconds(10)) }
                }
                // Well under the cache's 30-second safety age: the notification did it.
                #expect(seen == (9, 9))
            }
        }
    }

    @Test func aStoppedDatabaseFailsCallsWithinTheirDeadline() async throws {
        let server = try await PostgresTestServer.start()
        defer { server.stop() }
        var settings = try await server.createDatabase()
        settings.operationTimeout = .milliseconds(800)
        settings.connectTimeout = .milliseconds(300)
        try await PostgresTestServer.withRepository(settings) { repository in
            try await repository.migrate()
            try await seedTwoTenants(repository)
            server.stop()
            for call in 0..<3 {
                let started = ContinuousClock.now
                await #expect(throws: LicenseError.self, "call \(call)") {
                    try await repository.insertSession(
                        LeaseSession(id: SessionID("ses-down-\(call)"), tenantID: "acme", licenseID: "acme-pro", userID: "usr-acme", hardwareID: "hw",
                                     idempotencyKey: "", createdAt: t0, leaseExpiresAt: t0),
                        audit: audit("session.acquire", "ses-down", tenant: "acme"))
                }
                #expect(started.duration(to: .now) < .seconds(2))
            }
            try await server.launch()
            let deadline = ContinuousClock.now + .seconds(20)
            var back = false
            while !back, ContinuousClock.now < deadline {
                back = (try? await repository.tenant("acme")) != nil
                if !back { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(back)
            // Nothing half-written: none of the refused sessions exists.
            #expect(try await repository.sessions(license: "acme-pro", includeEnded: true).isEmpty)
        }
    }

    /// A call its caller gives up on (here a ping past the caller's deadline while it waits for
    /// the pool, as a readiness probe's does during a burst) does not mark Postgres down: the
    /// calls after it are not refused. New connections of the daemon's role are refused meanwhile,
    /// so a breaker tripped by it would stay open (its probes fail) and refuse the next call.
    @Test func aCallItsCallerGaveUpOnDoesNotMarkPostgresDown() async throws {
        let server = try await PostgresTestServer.start()
        defer { server.stop() }
        var settings = try await server.createDatabase()
        // One connection for the license-change subscription, one for calls.
        settings.maximumConnections = 2
        let database = settings.database
        try await PostgresTestServer.withRepository(settings) { repository in
            try await repository.migrate()
            try await seedTwoTenants(repository)
            // Another session locks the audit log, so the next write waits, holding the pool's
            // other connection.
            let logger = Logger(label: "test.lock")
            let locker = try await server.holdLock(on: "audit_log", mode: "EXCLUSIVE", database: database)
            do {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await repository.appendAudit(audit("tenant.note", "acme", tenant: "acme")) }
                    try await Polling.waitUntil(within: .seconds(30), every: .milliseconds(20), "the blocked write to wait on its lock") {
                        try await server.superuser("SELECT 1 FROM pg_stat_activity WHERE usename = 'licensed' AND wait_event_type = 'Lock'").count == 1
                    }
                    try await server.superuser("ALTER ROLE licensed CONNECTION LIMIT 2")

                    // Given up on while it waits for the pool.
                    await #expect(throws: GaveUp.self) {
                        try await withDeadline(.milliseconds(200), orThrow: { GaveUp() }) { try await repository.ping() }
                    }
                    // The next call is let through: it waits for the pool and succeeds once the
                    // write it queued behind is done. A tripped breaker would refuse it, since its
                    // probes cannot connect.
                    group.addTask { try await repository.ping() }
                    _ = try await locker.query("COMMIT", logger: logger).collect()
                    try await group.waitForAll()
                }
            } catch {
                try? await locker.close()
                throw error
            }
            try await locker.close()
            #expect(try await repository.auditEvents(AuditQuery(tenantID: "acme", action: "tenant.note")).count == 1)
        }
    }

    private struct GaveUp: Error {}

    @Test func urlsAreParsedAndBadOnesRefused() throws {
        let settings = try PostgresSettings(url: "postgres://licensed:pw@db.internal:6543/licenses?sslmode=require&pool=32&statement_timeout_ms=2000&timeout_ms=3000")
        #expect(settings.host == "db.internal")
        #expect(settings.port == 6543)
        #expect(settings.username == "licensed")
        #expect(settings.password == "pw")
        #expect(settings.database == "licenses")
        #expect(settings.tls == .require)
        #expect(settings.maximumConnections == 32)
        #expect(settings.statementTimeout == .seconds(2))
        #expect(settings.operationTimeout == .seconds(3))
        for bad in ["mysql://u@h/db", "postgres://h/db", "postgres://u@h", "postgres://u@h/db?sslmode=maybe", "postgres://u@h/db?pool=0", "postgres://u@h/db?x=1"] {
            #expect(throws: LicenseError.self, "\(bad)") { try PostgresSettings(url: bad) }
        }
    }
}
