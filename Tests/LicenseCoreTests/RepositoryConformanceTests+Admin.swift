import Foundation
import LicenseCore
import Testing

/// The administrative and identity operations of `LicenseRepository`, on every backend.
extension RepositoryConformanceTests {
    @Test(arguments: backends)
    func tenantSettingsLicenseTermsAndUsersCanBeChanged(_ backend: Backend) async throws {
        try await withRepository(backend) { repository in
            try await seed(repository)
            var tenant = try #require(try await repository.tenant("acme"))
            tenant.name = "Acme Corp"
            tenant.provisioning = .emailDomain
            tenant.emailDomains = ["acme.com", "acme.co.uk"]
            tenant.identityTenant = "gip-acme"
            try await repository.updateTenant(tenant, audit: audit("tenant.update", "acme"))
            #expect(try await repository.tenant("acme") == tenant)
            #expect(try await repository.tenants(emailDomain: "acme.co.uk").map(\.id) == ["acme"])
            #expect(try await repository.tenants(emailDomain: "co.uk").isEmpty)
            #expect(try await repository.tenants(identityTenant: "gip-acme").map(\.id) == ["acme"])
            await #expect(throws: LicenseError.self) {
                try await repository.updateTenant(Tenant(id: "missing", name: "x", createdAt: t0), audit: audit("tenant.update", "missing"))
            }

            var license = try #require(try await repository.license("acme-pro"))
            license.seats = 9
            license.policy = LeasePolicy(leaseTTL: .seconds(120), heartbeatInterval: .seconds(60), offlineGrace: .seconds(7200))
            license.validUntil = nil
            license.validFrom = t0
            license.features = ["ai"]
            license.status = .suspended
            try await repository.updateLicense(license, audit: audit("license.update", "acme-pro"))
            #expect(try await repository.license("acme-pro") == license)

            var user = try #require(try await repository.user("usr-a"))
            user.email = "alice@acme.com"
            user.identity = ExternalIdentity(issuer: "https://idp.example.com", subject: "sub-1")
            user.disabled = true
            try await repository.updateUser(user, audit: audit("user.disable", "usr-a"))
            #expect(try await repository.user("usr-a") == user)
            #expect(try await repository.user(identity: ExternalIdentity(issuer: "https://idp.example.com", subject: "sub-1"))?.id == "usr-a")
            #expect(try await repository.user(identity: ExternalIdentity(issuer: "https://other.example.com", subject: "sub-1")) == nil)
            #expect(try await repository.users(email: "alice@acme.com").map(\.id) == ["usr-a"])
            // One identity-provider account belongs to one user.
            let bob = User(id: "usr-b", tenantID: "acme", name: "bob", role: .tenantAdmin, createdAt: t0, identity: user.identity)
            await #expect(throws: LicenseError.self) { try await repository.createUser(bob, apiKey: nil, audit: nil) }
            let operatorUser = User(id: "usr-op", tenantID: nil, name: "op", role: .platformOperator, createdAt: t0)
            try await repository.createUser(operatorUser, apiKey: nil, audit: nil)
            #expect(try await repository.users(tenant: "acme").map(\.id) == ["usr-a"])
            #expect(try await repository.users(tenant: nil).map(\.id) == ["usr-a", "usr-op"])
        }
    }

    @Test(arguments: backends)
    func apiKeysAreCreatedListedRotatedAndRevoked(_ backend: Backend) async throws {
        try await withRepository(backend) { repository in
            try await seed(repository)
            let second = APIKeyRecord(hash: "hash-b", userID: "usr-a", tenantID: "acme", name: "laptop", createdAt: t0.advanced(by: .seconds(5)))
            try await repository.createAPIKey(second, audit: audit("api_key.create", second.id))
            #expect(try await repository.apiKeys(user: "usr-a", tenant: nil).map(\.hash) == ["hash-b", "hash-a"])
            #expect(try await repository.apiKeys(user: nil, tenant: "acme").count == 2)
            #expect(try await repository.apiKey(id: second.id) == second)
            let replacement = APIKeyRecord(hash: "hash-c", userID: "usr-a", tenantID: "acme", name: "laptop", createdAt: t0.advanced(by: .seconds(9)))
            let at = t0.advanced(by: .seconds(9))
            #expect(try await repository.revokeAPIKey(id: second.id, at: at, replacement: replacement, audit: audit("api_key.rotate", second.id)))
            #expect(try await repository.user(apiKeyHash: "hash-b") == nil)
            #expect(try await repository.user(apiKeyHash: "hash-c")?.id == "usr-a")
            #expect(try await repository.apiKey(id: second.id)?.revokedAt == at)
            // Revoking again changes nothing and writes no audit row.
            let before = try await repository.auditEvents(AuditQuery(limit: 1000)).count
            #expect(try await repository.revokeAPIKey(id: second.id, at: at, replacement: nil, audit: audit("api_key.revoke", second.id)) == false)
            #expect(try await repository.auditEvents(AuditQuery(limit: 1000)).count == before)
            await #expect(throws: LicenseError.self) {
                try await repository.createAPIKey(APIKeyRecord(hash: "hash-x", userID: "usr-missing", tenantID: "acme", createdAt: t0), audit: audit("api_key.create", "x"))
            }
        }
    }

    @Test(arguments: backends)
    func auditQueriesFilterByTenantActorActionAndTime(_ backend: Backend) async throws {
        try await withRepository(backend) { repository in
            try await seed(repository)
            try await repository.createTenant(Tenant(id: "globex", name: "Globex", createdAt: t0), audit: audit("tenant.create", "globex", tenant: "globex"))
            for i in 0..<6 {
                try await repository.appendAudit(AuditEvent(
                    at: t0.advanced(by: .seconds(Int64(i) * 60)), tenantID: i.isMultiple(of: 2) ? "acme" : "globex",
                    actor: UserID("usr-\(i % 3)"), action: i < 3 ? "session.acquire" : "session.release", target: "s\(i)"
                ))
            }
            try await repository.insertSession(session("by-user"), audit: audit("session.acquire", "by-user"))
            #expect(try await repository.sessions(user: "usr-a", includeEnded: false).map(\.id) == ["by-user"])
            let acme = try await repository.auditEvents(AuditQuery(tenantID: "acme", action: "session.", limit: 100))
            #expect(acme.map(\.target) == ["by-user", "s4", "s2", "s0"])
            #expect(try await repository.auditEvents(AuditQuery(actor: "usr-1", limit: 100)).map(\.target) == ["s4", "s1"])
            #expect(try await repository.auditEvents(AuditQuery(action: "session.release", limit: 100)).map(\.target) == ["s5", "s4", "s3"])
            let window = AuditQuery(since: t0.advanced(by: .seconds(60)), until: t0.advanced(by: .seconds(180)), limit: 100)
            #expect(try await repository.auditEvents(window).map(\.target) == ["s2", "s1"])
            #expect(try await repository.auditEvents(AuditQuery(action: "session", limit: 100)).isEmpty, "an action without a dot matches exactly")
            #expect(try await repository.auditEvents(AuditQuery(limit: 2)).count == 2)
        }
    }

    @Test(arguments: backends)
    func signingKeysRotateInOneCommit(_ backend: Backend) async throws {
        try await withRepository(backend) { repository in
            #expect(try await repository.signingKeys().isEmpty)
            let first = StoredSigningKey(keyID: "k1", algorithm: "EdDSA", privateKeyPEM: "pem-1", createdAt: t0)
            try await repository.rotateSigningKey(to: first, publishRetiredUntil: t0, audit: audit("signing_key.import", "k1", tenant: nil))
            let second = StoredSigningKey(keyID: "k2", algorithm: "RS256", privateKeyPEM: "pem-2", createdAt: t0.advanced(by: .seconds(10)))
            let until = t0.advanced(by: .seconds(86_400))
            try await repository.rotateSigningKey(to: second, publishRetiredUntil: until, audit: audit("signing_key.rotate", "k2", tenant: nil))
            let keys = try await repository.signingKeys()
            #expect(keys.map(\.keyID) == ["k2", "k1"])
            #expect(keys[0].retiredAt == nil && keys[0].privateKeyPEM == "pem-2")
            #expect(keys[1].retiredAt == second.createdAt && keys[1].publishUntil == until)
            #expect(!"\(keys[0])".contains("pem-2"), "a key's description never shows the private key")
            await #expect(throws: LicenseError.self) {
                try await repository.rotateSigningKey(to: second, publishRetiredUntil: until, audit: audit("signing_key.rotate", "k2", tenant: nil))
            }
            let after = try await repository.signingKeys()
            #expect(after.count == 2 && after[0].keyID == "k2" && after[0].retiredAt == nil, "a failed rotation retires nothing")
        }
    }

    @Test(arguments: backends)
    func aRotationOfAKeyThatIsNoLongerCurrentChangesNothing(_ backend: Backend) async throws {
        try await withRepository(backend) { repository in
            let first = StoredSigningKey(keyID: "k1", algorithm: "EdDSA", privateKeyPEM: "pem-1", createdAt: t0)
            try await repository.rotateSigningKey(to: first, publishRetiredUntil: t0, audit: audit("signing_key.import", "k1", tenant: nil))
            // Two replicas decide at once to rotate k1: exactly one of the two rotations happens.
            let until = t0.advanced(by: .seconds(86_400))
            let candidates = (2...3).map { StoredSigningKey(keyID: "k\($0)", algorithm: "EdDSA", privateKeyPEM: "pem-\($0)", createdAt: t0.advanced(by: .seconds(60))) }
            let rotated = try await withThrowingTaskGroup(of: Bool.self) { group in
                for key in candidates {
                    group.addTask {
                        try await repository.rotateSigningKey(to: key, ifCurrent: "k1", publishRetiredUntil: until, audit: audit("signing_key.rotate", key.keyID, tenant: nil))
                    }
                }
                return try await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(rotated.filter { $0 }.count == 1, "\(rotated)")
            let keys = try await repository.signingKeys()
            #expect(keys.count == 2 && keys.filter { $0.retiredAt == nil }.count == 1, "\(keys.map(\.keyID))")
            #expect(keys.first { $0.keyID == "k1" }?.retiredAt != nil)
            #expect(try await repository.auditEvents(AuditQuery(action: "signing_key.rotate", limit: 10)).count == 1, "the rotation that lost wrote no audit row")
            // A rotation of a retired key changes nothing; one of the current key rotates.
            let late = StoredSigningKey(keyID: "k4", algorithm: "EdDSA", privateKeyPEM: "pem-4", createdAt: t0.advanced(by: .seconds(120)))
            let stale = try await repository.rotateSigningKey(to: late, ifCurrent: "k1", publishRetiredUntil: until, audit: audit("signing_key.rotate", "k4", tenant: nil))
            #expect(!stale)
            let current = try #require(keys.first { $0.retiredAt == nil }).keyID
            let fresh = try await repository.rotateSigningKey(to: late, ifCurrent: current, publishRetiredUntil: until, audit: audit("signing_key.rotate", "k4", tenant: nil))
            #expect(fresh)
            #expect(try await repository.signingKeys().first?.keyID == "k4")
        }
    }

    @Test(arguments: backends)
    func resealingReplacesOnlyTheStoredPrivateKeysAndRefusesAnUnknownKey(_ backend: Backend) async throws {
        try await withRepository(backend) { repository in
            let first = StoredSigningKey(keyID: "k1", algorithm: "EdDSA", privateKeyPEM: "pem-1", createdAt: t0)
            try await repository.rotateSigningKey(to: first, publishRetiredUntil: t0, audit: audit("signing_key.import", "k1", tenant: nil))
            let until = t0.advanced(by: .seconds(86_400))
            let second = StoredSigningKey(keyID: "k2", algorithm: "RS256", privateKeyPEM: "pem-2", createdAt: t0.advanced(by: .seconds(10)))
            try await repository.rotateSigningKey(to: second, publishRetiredUntil: until, audit: audit("signing_key.rotate", "k2", tenant: nil))
            let before = try await repository.signingKeys()
            var sealed = before
            for index in sealed.indices { sealed[index].privateKeyPEM = "kek:v1:k:" + sealed[index].keyID }
            try await repository.resealSigningKeys(sealed, audit: audit("signing_key.seal", "k", tenant: nil))
            let after = try await repository.signingKeys()
            #expect(after.map(\.privateKeyPEM) == ["kek:v1:k:k2", "kek:v1:k:k1"])
            #expect(after.map(\.keyID) == before.map(\.keyID) && after.map(\.retiredAt) == before.map(\.retiredAt)
                    && after.map(\.publishUntil) == before.map(\.publishUntil) && after.map(\.createdAt) == before.map(\.createdAt))
            #expect(try await repository.auditEvents(AuditQuery(action: "signing_key.seal", limit: 10)).count == 1)
            // One unknown id: nothing changes.
            let unknown = StoredSigningKey(keyID: "k9", algorithm: "EdDSA", privateKeyPEM: "x", createdAt: t0)
            var mixed = after
            mixed[0].privateKeyPEM = "changed"
            await #expect(throws: LicenseError.self) {
                try await repository.resealSigningKeys(mixed + [unknown], audit: audit("signing_key.seal", "k", tenant: nil))
            }
            #expect(try await repository.signingKeys().map(\.privateKeyPEM) == ["kek:v1:k:k2", "kek:v1:k:k1"])
        }
    }
}
