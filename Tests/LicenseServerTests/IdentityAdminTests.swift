import BackendTestSupport
import Foundation
import LicenseClient
import LicenseCore
import LicenseIdentity
import LicenseServer
import LicenseTokens
import LicenseWire
import Synchronization
import Testing

/// Sign-in with ID tokens, user provisioning, API-key lifecycle and signing-key rotation,
/// against the embedded daemon over TLS with a local identity provider.
@Suite("Identity and administration", .serialized, .timeLimit(.minutes(3)))
struct IdentityAdminTests {
    static let audience = "coditect-licensed"

    func expectCallError(_ reason: String, _ comment: Comment, _ body: () async throws -> Void) async {
        do {
            try await body()
            Issue.record("expected \(reason): \(comment)")
        } catch let error as LicenseCallError {
            #expect(error.reason == reason, "\(comment): \(error)")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func idTokensSignInAsExactlyOneUserOfOneTenant() async throws {
        try await OIDCIssuerFixture.with { provider in
            try provider.addRSAKey("k1")
            try await TestServer.run(settings: { settings in
                settings.oidcIssuers = [OIDCIssuer(issuer: provider.issuer, audience: Self.audience, keys: .jwks(provider.jwksURL), tenantClaim: "firebase.tenant")]
            }) { server in
                let op = try await server.connect()
                _ = try await op.call(.createTenant(.with { $0.id = "acme"; $0.name = "Acme" }))
                _ = try await op.call(.updateTenant(.with {
                    $0.tenantID = "acme"; $0.provisioning = "email_domain"; $0.replaceEmailDomains = true
                    $0.emailDomains = ["Acme.com"]; $0.identityTenant = "gip-acme"
                }))
                _ = try await op.call(.createLicense(.with { $0.id = "acme-pro"; $0.tenantID = "acme"; $0.name = "Pro"; $0.seats = 5 }))
                _ = try await op.call(.createTenant(.with { $0.id = "globex"; $0.name = "Globex" }))
                let dave = try await op.call(.createUser(.with {
                    $0.tenantID = "globex"; $0.name = "Dave"; $0.email = "dave@globex.com"; $0.withoutApiKey = true
                })).user
                #expect(dave.apiKey.isEmpty)

                func signIn(_ subject: String, email: String?, verified: Bool = true, identityTenant: String? = nil) async throws -> (LicenseConnection, Coditect_License_V1_HelloResult) {
                    var claims = provider.claims(subject: subject, audience: Self.audience, now: server.clock.now(), email: email, emailVerified: verified)
                    if let identityTenant { claims["firebase"] = ["tenant": identityTenant] }
                    let connection = try await LicenseConnection.connect(to: server.endpoint)
                    do {
                        return (connection, try await connection.hello(.idToken(try provider.token(claims, kid: "k1"))))
                    } catch {
                        await connection.close()
                        throw error
                    }
                }

                // A verified e-mail in a domain the tenant owns creates a user on first sign-in.
                let (alice, aliceHello) = try await signIn("google-1", email: "Alice@acme.com")
                #expect(aliceHello.tenantID == "acme" && aliceHello.roles == ["user"])
                let lease = try await alice.acquire(licenseID: "acme-pro", hardwareID: "alice-laptop")
                // The same account signs in as the same user.
                let (again, againHello) = try await signIn("google-1", email: "alice@acme.com")
                #expect(againHello.principal == aliceHello.principal)
                await again.close()
                // Unverified e-mail, a domain no tenant owns: refused.
                await expectCallError("IDENTITY_NOT_PROVISIONED", "unverified e-mail") { _ = try await signIn("google-2", email: "bob@acme.com", verified: false) }
                await expectCallError("IDENTITY_NOT_PROVISIONED", "unknown domain") { _ = try await signIn("google-3", email: "carol@example.org") }
                await expectCallError("IDENTITY_NOT_PROVISIONED", "no e-mail") { _ = try await signIn("google-3", email: nil) }
                // A user an administrator created is matched by e-mail once, then bound to that account.
                let (daveConnection, daveHello) = try await signIn("google-4", email: "dave@globex.com")
                #expect(daveHello.principal == dave.userID && daveHello.tenantID == "globex")
                await daveConnection.close()
                await expectCallError("IDENTITY_NOT_PROVISIONED", "another account with dave's e-mail") { _ = try await signIn("google-5", email: "dave@globex.com") }
                // The identity provider's tenant must map to the user's tenant.
                let (erin, erinHello) = try await signIn("google-6", email: "erin@acme.com", identityTenant: "gip-acme")
                #expect(erinHello.tenantID == "acme")
                await erin.close()
                await expectCallError("IDENTITY_NOT_PROVISIONED", "an unmapped identity tenant") { _ = try await signIn("google-7", email: "frank@acme.com", identityTenant: "gip-other") }
                await expectCallError("IDENTITY_NOT_PROVISIONED", "alice under another identity tenant") { _ = try await signIn("google-1", email: "alice@acme.com", identityTenant: "gip-other") }
                // A tenant administrator may not claim e-mail domains (operators only).
                let admin = try await op.call(.createUser(.with { $0.tenantID = "acme"; $0.name = "admin"; $0.role = "tenant_admin" })).user
                let adminConnection = try await server.connect(apiKey: admin.apiKey)
                await expectCallError("FORBIDDEN", "an admin setting domains") {
                    _ = try await adminConnection.call(.updateTenant(.with { $0.tenantID = "acme"; $0.replaceEmailDomains = true; $0.emailDomains = ["gmail.com"] }))
                }
                // An ID token's expiry is enforced on the open connection; a fresh token signs in again.
                var shortLived = provider.claims(subject: "google-6", audience: Self.audience, now: server.clock.now(), email: "erin@acme.com", lifetime: 120)
                shortLived["firebase"] = ["tenant": "gip-acme"]
                let erinAgain = try await LicenseConnection.connect(to: server.endpoint)
                _ = try await erinAgain.hello(.idToken(try provider.token(shortLived, kid: "k1")))
                server.clock.advance(by: .seconds(61))
                _ = try await erinAgain.call(.licenseStatus(.init()))
                server.clock.advance(by: .seconds(121))
                await expectCallError("TOKEN_EXPIRED", "a call after the ID token expired") { _ = try await erinAgain.call(.licenseStatus(.init())) }
                shortLived["iat"] = server.clock.now().secondsSinceEpoch
                shortLived["exp"] = server.clock.now().secondsSinceEpoch + 3600
                _ = try await erinAgain.hello(.idToken(try provider.token(shortLived, kid: "k1")))
                _ = try await erinAgain.call(.licenseStatus(.init()))
                await erinAgain.close()
                // Disabling alice revokes her session (she is told at once) and stops her sign-ins.
                let disabled = try await adminConnection.call(.setUserDisabled(.with { $0.userID = aliceHello.principal; $0.disabled = true })).setUserDisabled
                #expect(disabled.user.disabled && disabled.revokedSessionIds == [lease.sessionID])
                // Her open connection is due for a credential check (time has passed): it finds her disabled.
                await expectCallError("INVALID_CREDENTIAL", "alice's heartbeat") { _ = try await alice.heartbeat(sessionID: lease.sessionID) }
                let ended = try await op.call(.listSessions(.with { $0.userID = aliceHello.principal; $0.includeEnded = true })).sessions.sessions
                #expect(ended.map(\.endReason) == ["revoked"])
                await alice.close()
                await expectCallError("INVALID_CREDENTIAL", "a disabled user") { _ = try await signIn("google-1", email: "alice@acme.com") }
                // Refused sign-ins are audited with the client's address and the reason.
                let refusedHellos = try await op.call(.queryAudit(.with { $0.action = "hello"; $0.limit = 100 })).auditEvents.events
                #expect(refusedHellos.contains { $0.target == "id_token from 127.0.0.1" && $0.outcome == "IDENTITY_NOT_PROVISIONED" })
                let provisioned = try await op.call(.queryAudit(.with { $0.tenantID = "acme"; $0.action = "user.provision" })).auditEvents.events
                #expect(provisioned.count == 2)
                await adminConnection.close()
                await op.close()
            }
        }
        // A server with no identity provider configured says so.
        try await TestServer.run { server in
            let connection = try await LicenseConnection.connect(to: server.endpoint)
            await expectCallError("UNSUPPORTED_CREDENTIAL", "no OIDC configured") { _ = try await connection.hello(.idToken("a.b.c")) }
            await connection.close()
        }
    }

    @Test func aClientCertificateFromTheOperatorCASignsInAnOperator() async throws {
        let dir = try makeTemporaryDirectory("mtls")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let operatorCert = try LocalCertificateAuthority.issueOperatorCertificate(commonName: "usr_bootstrap", in: dir + "/ops")
        let strangerCert = try LocalCertificateAuthority.issueOperatorCertificate(commonName: "usr_nobody", in: dir + "/ops")
        let foreignCert = try LocalCertificateAuthority.issueOperatorCertificate(commonName: "usr_bootstrap", in: dir + "/foreign")
        try await TestServer.run(settings: { $0.operatorClientCA = operatorCert.caCertificate }) { server in
            func connect(_ files: LocalCertificateAuthority.ClientFiles?) async throws -> LicenseConnection {
                var endpoint = server.endpoint
                endpoint.clientCertificateFile = files?.certificate
                endpoint.clientKeyFile = files?.key
                return try await LicenseConnection.connect(to: endpoint)
            }
            let op = try await connect(operatorCert)
            let hello = try await op.hello(.clientCertificate)
            #expect(hello.principal == "usr_bootstrap" && hello.roles == ["operator"])
            _ = try await op.call(.createTenant(.with { $0.id = "acme"; $0.name = "Acme" }))
            // A tenant user's id in a certificate is not enough: only operators sign in this way.
            let user = try await op.call(.createUser(.with { $0.tenantID = "acme"; $0.name = "u" })).user
            let userCert = try LocalCertificateAuthority.issueOperatorCertificate(commonName: user.userID, in: dir + "/ops")
            for files in [strangerCert, userCert] {
                let connection = try await connect(files)
                await expectCallError("INVALID_CREDENTIAL", "certificate for \(files.certificate)") { _ = try await connection.hello(.clientCertificate) }
                await connection.close()
            }
            // No certificate: a Hello without a credential is refused; API keys still work.
            let plain = try await connect(nil)
            await expectCallError("CREDENTIAL_REQUIRED", "no certificate") { _ = try await plain.hello(.clientCertificate) }
            #expect(try await plain.hello(apiKey: TestServer.bootstrapKey).principal == "usr_bootstrap")
            await plain.close()
            // A certificate from another CA fails the TLS handshake.
            do {
                let foreign = try await connect(foreignCert)
                _ = try await foreign.hello(.clientCertificate)
                Issue.record("a foreign client certificate was accepted")
            } catch {}
            let audit = try await op.call(.queryAudit(.with { $0.action = "hello" })).auditEvents.events
            #expect(audit.contains { $0.target == "client_certificate from 127.0.0.1" && $0.outcome == "INVALID_CREDENTIAL" })
            await op.close()
        }
    }

    @Test func anOpenConnectionLosesARevokedKeyOrDisabledUserAtItsNextCheck() async throws {
        try await TestServer.run { server in
            let keys = try await server.setUpLicense(seats: 5, users: 2)
            let op = try await server.connect()
            let alice = try await server.connect(apiKey: keys[0])
            let aliceID = try await alice.hello(apiKey: keys[0]).principal
            _ = try await alice.acquire(licenseID: "acme-pro", hardwareID: "alice-laptop")
            let aliceKeys = try await op.call(.listApiKeys(.with { $0.userID = aliceID })).apiKeys.keys
            _ = try await op.call(.revokeApiKey(.with { $0.keyID = aliceKeys[0].keyID }))
            let replacement = try await op.call(.createApiKey(.with { $0.userID = aliceID })).apiKeyCreated.apiKey
            // Within the recheck interval the open connection still works (one check a minute at most)...
            _ = try await alice.call(.licenseStatus(.init()))
            // ...after it, the next call finds the key revoked, and the connection needs a new Hello.
            server.clock.advance(by: .seconds(61))
            await expectCallError("INVALID_CREDENTIAL", "a call on a revoked key") { _ = try await alice.call(.licenseStatus(.init())) }
            await expectCallError("HELLO_REQUIRED", "the next call") { _ = try await alice.call(.licenseStatus(.init())) }
            #expect(try await alice.hello(apiKey: replacement).principal == aliceID)
            _ = try await alice.call(.licenseStatus(.init()))

            let bob = try await server.connect(apiKey: keys[1])
            let bobID = try await bob.hello(apiKey: keys[1]).principal
            _ = try await op.call(.setUserDisabled(.with { $0.userID = bobID; $0.disabled = true }))
            server.clock.advance(by: .seconds(61))
            await expectCallError("INVALID_CREDENTIAL", "a disabled user's open connection") { _ = try await bob.acquire(licenseID: "acme-pro", hardwareID: "bob-pc") }
            let lapses = try await op.call(.queryAudit(.with { $0.action = "credential.lapsed" })).auditEvents.events
            #expect(Set(lapses.map(\.actor)) == [aliceID, bobID])
            await alice.close()
            await bob.close()
            await op.close()
        }
    }

    @Test func apiKeysAreShownOnceStoredHashedRotatedAndRevoked() async throws {
        let data = try makeTemporaryDirectory("keys")
        defer { try? FileManager.default.removeItem(atPath: data) }
        try await TestServer.run(dataDirectory: data) { server in
            let keys = try await server.setUpLicense(seats: 1, users: 1)
            let user = try await server.connect(apiKey: keys[0])
            let created = try await user.call(.createApiKey(.with { $0.name = "laptop" })).apiKeyCreated
            #expect(created.apiKey.hasPrefix("lk_") && created.key.keyID.hasPrefix("key_") && created.key.name == "laptop")
            let listed = try await user.call(.listApiKeys(.init())).apiKeys.keys
            #expect(listed.count == 2 && listed.allSatisfy { $0.revokedAtMs == 0 })
            #expect(try await server.connect(apiKey: created.apiKey).hello(apiKey: created.apiKey).principal == listed[0].userID)
            // Rotation: the new key works at once, the old one stops at once.
            let rotated = try await user.call(.rotateApiKey(.with { $0.keyID = created.key.keyID })).apiKeyCreated
            #expect(rotated.apiKey != created.apiKey && rotated.key.name == "laptop")
            await expectCallError("INVALID_CREDENTIAL", "the rotated-out key") { _ = try await server.connect(apiKey: created.apiKey) }
            _ = try await server.connect(apiKey: rotated.apiKey)
            await expectCallError("INVALID_REQUEST", "rotating a revoked key") { _ = try await user.call(.rotateApiKey(.with { $0.keyID = created.key.keyID })) }
            let revoked = try await user.call(.revokeApiKey(.with { $0.keyID = rotated.key.keyID })).apiKey
            #expect(revoked.revokedAtMs > 0)
            await expectCallError("INVALID_CREDENTIAL", "the revoked key") { _ = try await server.connect(apiKey: rotated.apiKey) }
            await expectCallError("API_KEY_UNKNOWN", "an unknown key id") { _ = try await user.call(.revokeApiKey(.with { $0.keyID = "key_0000000000000000" })) }
            await user.close()
        }
        // No key is stored in the clear: only hashes reach the data folder.
        let files = try FileManager.default.subpathsOfDirectory(atPath: data).map { data + "/" + $0 }
        let needle = Data(TestServer.bootstrapKey.utf8)
        for file in files where (try? FileManager.default.attributesOfItem(atPath: file)[.type] as? FileAttributeType) == .typeRegular {
            #expect(FileManager.default.contents(atPath: file)?.range(of: needle) == nil, "\(file) holds an API key")
        }
    }

    @Test func signingKeyRotationKeepsOldTokensVerifiableUntilTheyExpire() async throws {
        let data = try makeTemporaryDirectory("rotation")
        defer { try? FileManager.default.removeItem(atPath: data) }
        let clock = ManualWallClock(start: SystemWallClock().now())
        let rotated = Mutex("")
        try await TestServer.run(clock: clock, dataDirectory: data) { server in
            let keys = try await server.setUpLicense(seats: 5, users: 1)
            let op = try await server.connect()
            let user = try await server.connect(apiKey: keys[0])
            let before = try JWKS.decode(try await user.signingKeysJSON())
            #expect(before.count == 1)
            let oldToken = try await user.acquire(licenseID: "acme-pro", hardwareID: "m1").leaseToken
            let rotation = try await op.call(.rotateSigningKey(.init())).signingKeyRotation
            #expect(rotation.retiredKeyIds == [before[0].keyID] && rotation.algorithm == "EdDSA")
            #expect(rotation.publishedUntilMs >= UInt64(clock.now().advanced(by: .seconds(30 * 86_400)).millisecondsSinceEpoch))
            let newKey = rotation.keyID
            rotated.withLock { $0 = newKey }
            let after = try JWKS.decode(try await user.signingKeysJSON())
            #expect(after.map(\.keyID) == [newKey, before[0].keyID])
            let newToken = try await user.acquire(licenseID: "acme-pro", hardwareID: "m2").leaseToken
            let verifier = try await user.tokenVerifier()
            #expect(try verifier.verify(newToken, now: clock.now()).licenseID == "acme-pro")
            #expect(try verifier.verify(oldToken, now: clock.now()).licenseID == "acme-pro")
            // Only operators rotate; the rotation is audited.
            await expectCallError("FORBIDDEN", "a user rotating") { _ = try await user.call(.rotateSigningKey(.init())) }
            let events = try await op.call(.queryAudit(.with { $0.action = "signing_key.rotate" })).auditEvents.events
            #expect(events.map(\.target) == [newKey])
            await user.close()
            await op.close()
        }
        // A restart (or another replica) signs with the rotated key, read from the repository.
        try await TestServer.run(clock: clock, dataDirectory: data) { server in
            let op = try await server.connect()
            let newKey = rotated.withLock { $0 }
            #expect(try JWKS.decode(try await op.signingKeysJSON()).map(\.keyID).first == newKey)
            // Once the old key's tokens have all expired, it leaves the JWKS.
            clock.advance(by: .seconds(30 * 86_400 + 121))
            let third = try await op.call(.rotateSigningKey(.with { $0.algorithm = "EdDSA" })).signingKeyRotation
            let published = try JWKS.decode(try await op.signingKeysJSON()).map(\.keyID)
            #expect(published == [third.keyID, newKey])
            await op.close()
        }
    }
}
