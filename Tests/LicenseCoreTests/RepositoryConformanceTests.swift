import Foundation
import LicenseCore
import BackendTestSupport
import LicenseEmbedded
import LicensePostgres
import Testing

/// The behaviour every `LicenseRepository` must have, run against each implementation.
@Suite("LicenseRepository conformance")
struct RepositoryConformanceTests {
    struct Backend: CustomStringConvertible, Sendable {
        var description: String
        /// Runs `body` with an empty, migrated repository, then cleans up.
        var run: @Sendable (@Sendable (any LicenseRepository) async throws -> Void) async throws -> Void
    }

    static let backends: [Backend] = [
        Backend(description: "in-memory") { body in try await body(InMemoryLicenseRepository()) },
        Backend(description: "sqlite") { body in
            let dir = try makeTemporaryDirectory("repo")
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let repository = try await SQLiteLicenseRepository.open(path: dir + "/test.sqlite")
            do {
                try await repository.migrate()
                try await body(repository)
            } catch {
                try? await repository.close()
                throw error
            }
            try await repository.close()
        },
        Backend(description: "postgres") { body in
            let settings = try await PostgresTestServer.shared().createDatabase()
            try await PostgresTestServer.withRepository(settings) { repository in
                try await repository.migrate()
                try await body(repository)
            }
        },
    ]

    let t0 = Timestamp(millisecondsSinceEpoch: 1_800_000_000_000)

    func withRepository(_ backend: Backend, _ body: @Sendable (any LicenseRepository) async throws -> Void) async throws {
        try await backend.run(body)
    }

    func audit(_ action: String, _ target: String, tenant: TenantID? = "acme") -> AuditEvent {
        AuditEvent(at: t0, tenantID: tenant, actor: "usr-op", action: action, target: target)
    }

    func seed(_ repository: any LicenseRepository) async throws {
        try await repository.createTenant(Tenant(id: "acme", name: "Acme", createdAt: t0), audit: audit("tenant.create", "acme"))
        try await repository.createLicense(
            License(id: "acme-pro", tenantID: "acme", name: "Pro", seats: 5, validUntil: t0.advanced(by: .seconds(86_400)), features: ["ai", "sync"], createdAt: t0),
            audit: audit("license.create", "acme-pro"))
        try await repository.createUser(User(id: "usr-a", tenantID: "acme", name: "alice", role: .tenantUser, createdAt: t0),
                                        apiKey: APIKeyRecord(hash: "hash-a", userID: "usr-a", tenantID: "acme", createdAt: t0), audit: audit("user.create", "usr-a"))
    }

    func session(_ id: String, at offset: Int64 = 0) -> LeaseSession {
        LeaseSession(id: SessionID(id), tenantID: "acme", licenseID: "acme-pro", userID: "usr-a", hardwareID: "hw", idempotencyKey: "k-\(id)",
                     clientInfo: ["os": "linux"], createdAt: t0.advanced(by: .seconds(offset)), leaseExpiresAt: t0.advanced(by: .seconds(offset + 360)))
    }

    @Test(arguments: backends)
    func storesAndReadsEntities(_ backend: Backend) async throws {
        try await withRepository(backend) { repository in
            try await seed(repository)
            #expect(try await repository.tenant("acme")?.name == "Acme")
            #expect(try await repository.tenants().map(\.id) == ["acme"])
            let license = try #require(try await repository.license("acme-pro"))
            #expect(license.seats == 5)
            #expect(license.features == ["ai", "sync"])
            #expect(license.validUntil == t0.advanced(by: .seconds(86_400)))
            #expect(license.validFrom == nil)
            #expect(license.policy == .default)
            #expect(try await repository.licenses(tenant: "acme").map(\.id) == ["acme-pro"])
            #expect(try await repository.licenses(tenant: "other").isEmpty)
            #expect(try await repository.user(apiKeyHash: "hash-a")?.id == "usr-a")
            #expect(try await repository.user(apiKeyHash: "nope") == nil)
            #expect(try await repository.userCount(role: .tenantUser) == 1)
            #expect(try await repository.userCount(role: .platformOperator) == 0)
        }
    }

    @Test(arguments: backends)
    func duplicatesAndDanglingReferencesAreRefused(_ backend: Backend) async throws {
        try await withRepository(backend) { repository in
            try await seed(repository)
            await #expect(throws: LicenseError.self) {
                try await repository.createTenant(Tenant(id: "acme", name: "Again", createdAt: t0), audit: audit("tenant.create", "acme"))
            }
            let error = await #expect(throws: LicenseError.self) {
                try await repository.createLicense(License(id: "x", tenantID: "missing", name: "X", seats: 1, createdAt: t0), audit: audit("license.create", "x"))
            }
            #expect(error?.code == .notFound)
            // The failed writes left nothing behind, not even their audit rows.
            #expect(try await repository.tenant("acme")?.name == "Acme")
            #expect(try await repository.license("x") == nil)
            #expect(try await repository.auditEvents(AuditQuery(limit: 100)).count == 3)
        }
    }

    @Test(arguments: backends)
    func sessionLifecycle(_ backend: Backend) async throws {
        try await withRepository(backend) { repository in
            try await seed(repository)
            try await repository.insertSession(session("s1"), audit: audit("session.acquire", "s1"))
            try await repository.insertSession(session("s2", at: 10), audit: audit("session.acquire", "s2"))
            #expect(try await repository.session("s1") == session("s1"))
            try await repository.updateLease(session: "s1", expiresAt: t0.advanced(by: .seconds(700)))
            #expect(try await repository.session("s1")?.leaseExpiresAt == t0.advanced(by: .seconds(700)))
            #expect(try await repository.sessions(license: "acme-pro", includeEnded: false).map(\.id) == ["s2", "s1"])

            #expect(try await repository.endSession("s1", at: t0.advanced(by: .seconds(20)), reason: .released, audit: audit("session.release", "s1")))
            #expect(try await !repository.endSession("s1", at: t0.advanced(by: .seconds(30)), reason: .revoked, audit: audit("session.revoke", "s1")))
            let ended = try #require(try await repository.session("s1"))
            #expect(ended.endReason == .released)
            #expect(ended.endedAt == t0.advanced(by: .seconds(20)))
            // An ended session's lease does not move any more.
            try await repository.updateLease(session: "s1", expiresAt: t0.advanced(by: .seconds(9_999)))
            #expect(try await repository.session("s1")?.leaseExpiresAt == t0.advanced(by: .seconds(700)))
            #expect(try await repository.sessions(license: "acme-pro", includeEnded: false).map(\.id) == ["s2"])
            #expect(try await repository.sessions(license: "acme-pro", includeEnded: true).map(\.id) == ["s2", "s1"])
            // A batch moves the live sessions it names and skips ended and unknown ones.
            try await repository.insertSession(session("s3", at: 20), audit: audit("session.acquire", "s3"))
            try await repository.updateLeases([
                "s1": t0.advanced(by: .seconds(5_000)), "s2": t0.advanced(by: .seconds(800)),
                "s3": t0.advanced(by: .seconds(900)), "missing": t0.advanced(by: .seconds(900)),
            ])
            #expect(try await repository.session("s1")?.leaseExpiresAt == t0.advanced(by: .seconds(700)))
            #expect(try await repository.session("s2")?.leaseExpiresAt == t0.advanced(by: .seconds(800)))
            #expect(try await repository.session("s3")?.leaseExpiresAt == t0.advanced(by: .seconds(900)))
            #expect(try await repository.session("missing") == nil)
            try await repository.updateLeases([:])
            #expect(try await !repository.endSession("missing", at: t0, reason: .released, audit: audit("session.release", "missing")))
        }
    }

    @Test(arguments: backends)
    func auditLogIsNewestFirstAndScopedByTenant(_ backend: Backend) async throws {
        try await withRepository(backend) { repository in
            try await seed(repository)
            try await repository.appendAudit(audit("platform.note", "x", tenant: nil))
            let all = try await repository.auditEvents(AuditQuery(limit: 10))
            #expect(all.map(\.action) == ["platform.note", "user.create", "license.create", "tenant.create"])
            #expect(try await repository.auditEvents(AuditQuery(tenantID: "acme", limit: 2)).map(\.action) == ["user.create", "license.create"])
        }
    }

    @Test(arguments: backends)
    func auditPagesResumeBeforeTheLastSequenceAndKeepCounts(_ backend: Backend) async throws {
        try await withRepository(backend) { repository in
            try await seed(repository)
            var burst = audit("hello", "api_key from 192.0.2.7", tenant: nil)
            burst.count = 250
            try await repository.appendAudit(burst)
            for index in 0..<7 { try await repository.appendAudit(audit("note.\(index)", "x")) }
            // Pages of three, newest first, each resuming before the last one's sequence.
            var seen: [String] = []
            var before: Int64?
            repeat {
                let page = try await repository.auditEvents(AuditQuery(limit: 3, before: before))
                #expect(page.count <= 3)
                let sequences = page.compactMap(\.sequence)
                #expect(sequences.count == page.count && sequences == sequences.sorted(by: >))
                seen += page.map(\.action)
                before = page.count == 3 ? page.last?.sequence : nil
            } while before != nil
            #expect(seen == (0..<7).reversed().map { "note.\($0)" } + ["hello", "user.create", "license.create", "tenant.create"])
            let hello = try await repository.auditEvents(AuditQuery(action: "hello", limit: 10))
            #expect(hello.map(\.count) == [250])
            // A filter and a position together.
            let acme = try await repository.auditEvents(AuditQuery(tenantID: "acme", limit: 100, before: hello.first?.sequence))
            #expect(acme.map(\.action) == ["user.create", "license.create", "tenant.create"])
        }
    }

    @Test(arguments: backends)
    func sessionPagesFilterAndResumeAfterTheirCursor(_ backend: Backend) async throws {
        try await withRepository(backend) { repository in
            try await seed(repository)
            try await repository.createUser(User(id: "usr-b", tenantID: "acme", name: "bob", role: .tenantUser, createdAt: t0),
                                            apiKey: nil, audit: nil)
            // Twelve sessions, two at each instant (same creation time: ordered by id), some ended.
            for index in 0..<12 {
                var row = session(String(format: "p%02d", index), at: Int64(index / 2))
                if index % 3 == 0 { row.userID = "usr-b" }
                try await repository.insertSession(row, audit: audit("session.acquire", row.id.rawValue))
            }
            _ = try await repository.endSession("p04", at: t0.advanced(by: .seconds(10)), reason: .released, audit: audit("session.release", "p04"))
            let newestFirst = (0..<12).reversed().map { String(format: "p%02d", $0) }

            func all(_ filter: SessionFilter, size: Int) async throws -> [String] {
                var ids: [String] = []
                var cursor: SessionCursor?
                while true {
                    let page = try await repository.sessions(filter, after: cursor, limit: size)
                    #expect(page.count <= size)
                    ids += page.map(\.id.rawValue)
                    guard page.count == size, let last = page.last else { return ids }
                    cursor = SessionCursor(after: last)
                }
            }
            #expect(try await all(SessionFilter(), size: 5) == newestFirst)
            #expect(try await all(SessionFilter(tenantID: "acme", licenseID: "acme-pro"), size: 4) == newestFirst)
            #expect(try await all(SessionFilter(tenantID: "globex"), size: 4).isEmpty)
            #expect(try await all(SessionFilter(userID: "usr-b"), size: 2) == ["p09", "p06", "p03", "p00"])
            // Live at t0 + 5 s: not ended, lease (360 s from creation) not expired.
            #expect(try await all(SessionFilter(liveAt: t0.advanced(by: .seconds(5))), size: 3) == newestFirst.filter { $0 != "p04" })
            #expect(try await all(SessionFilter(liveAt: t0.advanced(by: .seconds(363))), size: 3) == ["p11", "p10", "p09", "p08"])
        }
    }

    @Test(arguments: backends)
    func migrateIsRepeatable(_ backend: Backend) async throws {
        try await withRepository(backend) { repository in
            try await seed(repository)
            try await repository.migrate()
            #expect(try await repository.tenant("acme") != nil)
        }
    }

    @Test(arguments: backends)
    func concurrentWritesShareCommitsAndAllLand(_ backend: Backend) async throws {
        try await withRepository(backend) { repository in
        try await seed(repository)
        try await repository.insertSession(session("c0"), audit: audit("session.acquire", "c0"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 1..<100 {
                group.addTask { try await repository.insertSession(session("c\(i)", at: Int64(i)), audit: audit("session.acquire", "c\(i)")) }
            }
            // One duplicate among them fails alone without undoing the others.
            group.addTask {
                await #expect(throws: LicenseError.self) {
                    try await repository.insertSession(session("c0"), audit: audit("session.acquire", "dup"))
                }
            }
            try await group.waitForAll()
        }
        #expect(try await repository.sessions(license: "acme-pro", includeEnded: false).count == 100)
        #expect(try await repository.auditEvents(AuditQuery(tenantID: "acme", limit: 1000)).count == 103)
        }
    }
}
