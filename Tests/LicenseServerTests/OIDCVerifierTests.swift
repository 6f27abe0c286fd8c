import Crypto
import Foundation
import LicenseCore
import LicenseIdentity
import LicenseTokens
import Testing

/// Every accept and reject case of ID-token verification, against a local identity provider
/// serving its JWKS over loopback HTTP. Time is a `ManualWallClock`; nothing sleeps except the
/// slow-provider case, which waits for a 1 s fetch timeout.
@Suite("OIDC ID-token verification", .serialized, .timeLimit(.minutes(2)))
struct OIDCVerifierTests {
    static let audience = "coditect-licensed"

    func withVerifier(
        keys: (@Sendable (OIDCIssuerFixture) -> OIDCIssuer.KeySource)? = nil, tenantClaim: String? = nil, policy: JWKSCachePolicy = JWKSCachePolicy(),
        _ body: @Sendable (OIDCIssuerFixture, OIDCTokenVerifier, ManualWallClock) async throws -> Void
    ) async throws {
        try await OIDCIssuerFixture.with { provider in
            try provider.addRSAKey("rsa-1")
            provider.addP256Key("ec-1")
            let clock = ManualWallClock(start: SystemWallClock().now())
            let issuer = OIDCIssuer(issuer: provider.issuer, audience: Self.audience, keys: keys?(provider) ?? .discovery, tenantClaim: tenantClaim)
            let verifier = try OIDCTokenVerifier(issuers: [issuer], clock: clock, cachePolicy: policy, refusedTypes: [leaseTokenType])
            try await body(provider, verifier, clock)
        }
    }

    func expectRefused(_ verifier: OIDCTokenVerifier, _ token: String, reason: LicenseError.Reason = .invalidCredential, code: LicenseError.Code = .unauthenticated, _ comment: Comment) async {
        do {
            _ = try await verifier.verify(token)
            Issue.record("accepted: \(comment)")
        } catch let error as LicenseError {
            #expect(error.code == code && error.reason == reason, "\(comment): \(error)")
            #expect(!error.message.contains(token), "the message echoes the token")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func acceptsRS256AndES256FromDiscoveredKeys() async throws {
        try await withVerifier { provider, verifier, clock in
            var claims = provider.claims(subject: "sub-1", audience: Self.audience, now: clock.now(), email: "Alice@Acme.COM")
            claims["name"] = "Alice"
            let identity = try await verifier.verify(try provider.token(claims, kid: "rsa-1"))
            #expect(identity.account == ExternalIdentity(issuer: provider.issuer, subject: "sub-1"))
            #expect(identity.email == "alice@acme.com" && identity.emailVerified && identity.displayName == "Alice")
            _ = try await verifier.verify(try provider.token(claims, kid: "ec-1"))
            // An audience list that contains ours is accepted too.
            claims["aud"] = ["another-client", Self.audience]
            _ = try await verifier.verify(try provider.token(claims, kid: "ec-1"))
            #expect(provider.jwksRequests == 1, "one fetch serves every token while the keys are fresh")
        }
    }

    @Test func checksIssuerAudienceTimesAndSubjectWithSixtySecondsOfSkew() async throws {
        try await withVerifier { provider, verifier, clock in
            let now = clock.now()
            func token(_ change: (inout [String: Any]) -> Void) throws -> String {
                var claims = provider.claims(subject: "sub-1", audience: Self.audience, now: now)
                change(&claims)
                return try provider.token(claims, kid: "rsa-1")
            }
            await expectRefused(verifier, try token { $0["iss"] = "https://evil.example.com" }, "an untrusted issuer")
            await expectRefused(verifier, try token { $0["aud"] = "another-client" }, "another audience")
            await expectRefused(verifier, try token { $0["aud"] = nil }, "no audience")
            await expectRefused(verifier, try token { $0["exp"] = now.secondsSinceEpoch - 61 }, reason: .tokenExpired, "expired 61 s ago")
            _ = try await verifier.verify(try token { $0["exp"] = now.secondsSinceEpoch - 59 })   // within the skew
            await expectRefused(verifier, try token { $0["exp"] = nil }, "no expiry")
            await expectRefused(verifier, try token { $0["exp"] = true }, "a boolean expiry")
            await expectRefused(verifier, try token { $0["exp"] = "\(now.secondsSinceEpoch + 600)" }, "a string expiry")
            await expectRefused(verifier, try token { $0["iat"] = now.secondsSinceEpoch + 61 }, "issued in the future")
            _ = try await verifier.verify(try token { $0["iat"] = now.secondsSinceEpoch + 59 })
            await expectRefused(verifier, try token { $0["iat"] = nil }, "no issue time")
            await expectRefused(verifier, try token { $0["nbf"] = now.secondsSinceEpoch + 61 }, "not valid yet")
            _ = try await verifier.verify(try token { $0["nbf"] = now.secondsSinceEpoch + 59 })
            await expectRefused(verifier, try token { $0["sub"] = nil }, "no subject")
            await expectRefused(verifier, try token { $0["sub"] = "" }, "an empty subject")
        }
    }

    @Test func refusesAlgorithmAndHeaderAttacks() async throws {
        try await withVerifier { provider, verifier, clock in
            let claims = provider.claims(subject: "sub-1", audience: Self.audience, now: clock.now())
            let payload = Base64URL.encode(try JSONSerialization.data(withJSONObject: claims))
            // alg none, unsigned.
            let noneHeader = Base64URL.encode(Data(#"{"alg":"none","kid":"rsa-1"}"#.utf8))
            await expectRefused(verifier, noneHeader + "." + payload + ".", "alg none")
            // HS256 keyed with the issuer's public RSA key (the classic confusion attack).
            let hsHeader = Base64URL.encode(Data(#"{"alg":"HS256","kid":"rsa-1"}"#.utf8))
            let jwk = OIDCIssuerFixture.jwk("rsa-1", try #require(provider.key("rsa-1")))
            let secret = SymmetricKey(data: Data((jwk["n"] as! String).utf8))
            let mac = HMAC<SHA256>.authenticationCode(for: Data((hsHeader + "." + payload).utf8), using: secret)
            await expectRefused(verifier, hsHeader + "." + payload + "." + Base64URL.encode(Data(mac)), "HS256 with the public key")
            // The header's alg must match the algorithm pinned to the key.
            await expectRefused(verifier, try provider.token(claims, kid: "rsa-1", alg: "ES256", with: provider.key("ec-1")), "ES256 under an RSA key id")
            // Critical headers are not understood, so the token is refused.
            await expectRefused(verifier, try provider.token(claims, kid: "rsa-1", extraHeader: ["crit": ["exp"]]), "a crit header")
            // jku / x5u / jwk point at the attacker's own key: never fetched, never trusted.
            let attacker = OIDCIssuerFixture.Key.rsa(try .init(keySize: .bits2048))
            let planted: [String: Any] = ["jku": "http://127.0.0.1:1/attacker-jwks", "x5u": "http://127.0.0.1:1/cert", "jwk": OIDCIssuerFixture.jwk("rsa-1", attacker)]
            await expectRefused(verifier, try provider.token(claims, kid: "rsa-1", with: attacker, extraHeader: planted), "an embedded key under a known kid")
            await expectRefused(verifier, try provider.token(claims, kid: "attacker", with: attacker, extraHeader: planted), "an embedded key under its own kid")
            // A tampered payload breaks the signature.
            let good = try provider.token(claims, kid: "rsa-1")
            let parts = good.split(separator: ".")
            var changed = claims
            changed["sub"] = "admin"
            let forged = parts[0] + "." + Base64URL.encode(try JSONSerialization.data(withJSONObject: changed)) + "." + parts[2]
            await expectRefused(verifier, String(forged), "a changed payload")
            await expectRefused(verifier, "not-a-jwt", "garbage")
            await expectRefused(verifier, String(repeating: "a", count: 20_000), "an oversized token")
        }
    }

    @Test func leaseTokensAndIDTokensAreNeverMistakenForEachOther() async throws {
        try await withVerifier { provider, verifier, clock in
            let now = clock.now()
            // A lease token, even one whose issuer and audience look right, is refused by its typ.
            let leaseHeader: [String: Any] = ["typ": leaseTokenType]
            await expectRefused(verifier, try provider.token(provider.claims(subject: "s", audience: Self.audience, now: now), kid: "rsa-1", extraHeader: leaseHeader), "a lease token")
            // A real lease token from a KeyRing is refused too (untrusted issuer, unknown key).
            let signing = try SigningKey.generate(.edDSA)
            let lease = try await LeaseToken.sign(LeaseClaims(
                issuer: "coditect-licensed", userID: "u", tenantID: "t", licenseID: "l", sessionID: "s", hardwareHash: "h", features: [],
                issuedAt: now.secondsSinceEpoch, notBefore: now.secondsSinceEpoch, expiresAt: now.secondsSinceEpoch + 60, tokenID: "j"
            ), with: signing)
            await expectRefused(verifier, lease, "a signed lease token")
            // And an ID token is never a lease token.
            let idToken = try provider.token(provider.claims(subject: "s", audience: Self.audience, now: now), kid: "rsa-1")
            #expect(throws: LicenseError.self) {
                _ = try LeaseTokenVerifier(keys: [signing.verificationKey], issuer: provider.issuer).verify(idToken, now: now)
            }
        }
    }

    @Test func rotationAtTheIssuerIsPickedUpWithRateLimitedRefreshes() async throws {
        try await withVerifier { provider, verifier, clock in
            let claims = { provider.claims(subject: "sub-1", audience: Self.audience, now: clock.now()) }
            _ = try await verifier.verify(try provider.token(claims(), kid: "rsa-1"))
            #expect(provider.jwksRequests == 1)
            // The issuer rotates: a new key signs, the old one is withdrawn.
            try provider.addRSAKey("rsa-2")
            provider.removeKey("rsa-1")
            // Within a minute of the last fetch, an unknown kid does not fetch (the rate limit)...
            await expectRefused(verifier, try provider.token(claims(), kid: "rsa-2"), "a new kid right after a fetch")
            #expect(provider.jwksRequests == 1)
            // ...after it, the unknown kid fetches the keys once and the new key is accepted.
            clock.advance(by: .seconds(61))
            _ = try await verifier.verify(try provider.token(claims(), kid: "rsa-2"))
            #expect(provider.jwksRequests == 2, "an unknown kid fetches the keys once")
            // Unknown kids within the next minute do not fetch again (a flood of bad kids is cheap).
            let stray = OIDCIssuerFixture.Key.p256(.init())
            for i in 0..<5 {
                await expectRefused(verifier, try provider.token(claims(), kid: "stray-\(i)", with: stray), "an unpublished kid")
            }
            #expect(provider.jwksRequests == 2)
            // A minute later, one more fetch is allowed; the withdrawn key is gone by then.
            clock.advance(by: .seconds(61))
            await expectRefused(verifier, try provider.token(claims(), kid: "rsa-1", with: OIDCIssuerFixture.Key.p256(.init())), "a withdrawn kid")
            #expect(provider.jwksRequests == 3)
        }
    }

    @Test func keysAreRefreshedWhenTheirCacheLifetimeEnds() async throws {
        try await withVerifier(keys: { .jwks($0.jwksURL) }) { provider, verifier, clock in
            provider.setMaxAge(600)
            let claims = { provider.claims(subject: "sub-1", audience: Self.audience, now: clock.now()) }
            _ = try await verifier.verify(try provider.token(claims(), kid: "rsa-1"))
            clock.advance(by: .seconds(599))
            _ = try await verifier.verify(try provider.token(claims(), kid: "rsa-1"))
            #expect(provider.jwksRequests == 1)
            clock.advance(by: .seconds(2))
            _ = try await verifier.verify(try provider.token(claims(), kid: "rsa-1"))
            #expect(provider.jwksRequests == 2, "max-age=600 was honoured")
        }
    }

    @Test func aProviderThatIsDownOrSlowFailsAsUnavailableAndCachedKeysCarryOn() async throws {
        var policy = JWKSCachePolicy()
        // Long enough for a loopback fetch on a loaded machine, far shorter than the slow answer.
        policy.fetchTimeout = .seconds(1)
        policy.staleLimit = .seconds(3600)
        try await withVerifier(keys: { .jwks($0.jwksURL) }, policy: policy) { provider, verifier, clock in
            let claims = { provider.claims(subject: "sub-1", audience: Self.audience, now: clock.now()) }
            // Down before the first fetch: UNAVAILABLE with a retry hint, not a refusal of the user.
            provider.setMode(.down)
            await expectRefused(verifier, try provider.token(claims(), kid: "rsa-1"), reason: .identityProviderUnavailable, code: .unavailable, "no keys yet")
            // Up again (after the 5 s failure back-off): accepted.
            provider.setMode(.up)
            clock.advance(by: .seconds(6))
            _ = try await verifier.verify(try provider.token(claims(), kid: "rsa-1"))
            // Down once the keys have expired: the stale keys are still used.
            provider.setMode(.down)
            clock.advance(by: .seconds(3601))
            _ = try await verifier.verify(try provider.token(claims(), kid: "rsa-1"))
            let attempts = provider.jwksRequests
            _ = try await verifier.verify(try provider.token(claims(), kid: "rsa-1"))
            #expect(provider.jwksRequests == attempts, "failed fetches are not retried on every sign-in")
            // Slow: the fetch gives up after the timeout, and the stale keys still serve.
            provider.setMode(.slow(.seconds(8)))
            clock.advance(by: .seconds(10))
            let started = ContinuousClock.now
            _ = try await verifier.verify(try provider.token(claims(), kid: "rsa-1"))
            #expect(started.duration(to: .now) < .seconds(6), "gave up at the timeout, not after the slow answer")
            // Past the stale limit: UNAVAILABLE.
            provider.setMode(.down)
            clock.advance(by: .seconds(3600))
            await expectRefused(verifier, try provider.token(claims(), kid: "rsa-1"), reason: .identityProviderUnavailable, code: .unavailable, "keys too old")
        }
        // Slow before anything is cached: UNAVAILABLE after the timeout.
        try await withVerifier(keys: { .jwks($0.jwksURL) }, policy: policy) { provider, verifier, clock in
            provider.setMode(.slow(.seconds(8)))
            let started = ContinuousClock.now
            await expectRefused(verifier, try provider.token(provider.claims(subject: "s", audience: Self.audience, now: clock.now()), kid: "rsa-1"),
                                reason: .identityProviderUnavailable, code: .unavailable, "slow provider")
            #expect(started.duration(to: .now) < .seconds(6), "gave up at the timeout, not after the slow answer")
        }
    }

    @Test func identityPlatformTokensWorkGivenAProjectID() async throws {
        let firebase = OIDCIssuer.firebase(projectID: "coditect-prod")
        #expect(firebase.issuer == "https://securetoken.google.com/coditect-prod")
        #expect(firebase.audience == "coditect-prod")
        #expect(firebase.keys == .jwks("https://www.googleapis.com/service_accounts/v1/jwk/securetoken@system.gserviceaccount.com"))
        #expect(firebase.algorithms == [.rs256] && firebase.tenantClaim == "firebase.tenant")
        try firebase.validate()
        #expect(throws: LicenseError.self) { try OIDCIssuer(issuer: "http://login.example.com", audience: "a").validate() }
        // The tenant claim is read from the nested `firebase` object, as Identity Platform sends it.
        try await withVerifier(tenantClaim: "firebase.tenant") { provider, verifier, clock in
            var claims = provider.claims(subject: "sub-1", audience: Self.audience, now: clock.now(), email: "a@acme.com")
            claims["firebase"] = ["tenant": "acme-gip-x1", "sign_in_provider": "google.com"]
            let identity = try await verifier.verify(try provider.token(claims, kid: "rsa-1"))
            #expect(identity.identityTenant == "acme-gip-x1")
        }
    }
}
