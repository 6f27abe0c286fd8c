import BackendTestSupport
import Foundation
import LicenseCore
import LicenseEmbedded
import LicenseServer
import Testing

/// `licensed operator-key create`: a new operator key straight into the repository, audited.
@Suite("Operator key recovery")
struct OperatorKeyRecoveryTests {
    func withSQLite(_ body: (SQLiteLicenseRepository) async throws -> Void) async throws {
        let folder = try makeTemporaryDirectory("operator-key")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let repository = try await SQLiteLicenseRepository.open(path: folder + "/licensed.sqlite")
        try await repository.migrate()
        do {
            try await body(repository)
            try await repository.close()
        } catch {
            try? await repository.close()
            throw error
        }
    }

    @Test func aRecoveredKeySignsInAsTheOperatorAndIsAudited() async throws {
        try await withSQLite { repository in
            // No operator yet (or usr_bootstrap removed): it is made again, with the key.
            let first = try await OperatorKeyRecovery.createKey(in: repository)
            #expect(first.createdUser)
            let owner = try #require(try await repository.user(apiKeyHash: APIKey.hash(first.key)))
            #expect(owner.id == OperatorKeyRecovery.defaultOperator && owner.role == .platformOperator)

            // The bootstrap key was lost: a second key for the same operator; both work.
            let second = try await OperatorKeyRecovery.createKey(name: "laptop", in: repository)
            #expect(!second.createdUser && second.key != first.key)
            #expect(try await repository.user(apiKeyHash: APIKey.hash(second.key))?.id == OperatorKeyRecovery.defaultOperator)
            #expect(try await repository.apiKeys(user: OperatorKeyRecovery.defaultOperator, tenant: nil).map(\.name).sorted() == ["laptop", "recovered"])

            let audit = try await repository.auditEvents(AuditQuery(action: "api_key.recover"))
            #expect(Set(audit.map(\.target)) == [first.record.id, second.record.id])
            #expect(audit.allSatisfy { $0.actor == nil })
        }
    }

    @Test func onlyAnExistingEnabledOperatorGetsAKey() async throws {
        try await withSQLite { repository in
            let now = SystemWallClock().now()
            try await repository.createTenant(Tenant(id: "acme", name: "Acme", createdAt: now),
                                              audit: AuditEvent(at: now, tenantID: "acme", actor: nil, action: "tenant.create", target: "acme"))
            try await repository.createUser(User(id: "usr_alice", tenantID: "acme", name: "Alice", role: .tenantUser, createdAt: now), apiKey: nil, audit: nil)
            try await repository.createUser(User(id: "usr_ops", tenantID: nil, name: "Ops", role: .platformOperator, disabled: true, createdAt: now), apiKey: nil, audit: nil)
            let missing = await #expect(throws: LicenseError.self) { try await OperatorKeyRecovery.createKey(for: "usr_nobody", in: repository) }
            #expect(missing?.code == .notFound && missing?.message.contains("user 'usr_nobody' not found") == true)
            let refused = await #expect(throws: LicenseError.self) { try await OperatorKeyRecovery.createKey(for: "usr_alice", in: repository) }
            #expect(refused?.message.contains("not a platform operator") == true)
            let disabled = await #expect(throws: LicenseError.self) { try await OperatorKeyRecovery.createKey(for: "usr_ops", in: repository) }
            #expect(disabled?.message.contains("is disabled") == true)
            #expect(try await repository.apiKeys(user: nil, tenant: nil).isEmpty, "no key was made")
        }
    }
}
