import Foundation
import LicenseCore
import Logging

/// Verifies OIDC ID tokens from the configured issuers.
///
/// Checks, in order: size and shape; the header (`alg` one of RS256 / ES256 and allowed for the
/// issuer, a `kid`, no `crit`, and not a lease token's `typ`; `jku`, `x5u`, `jwk` and `x5c` are
/// ignored, never fetched or trusted); `iss` exactly one of the configured issuers; the key
/// named by `kid` in that issuer's JWKS, with the algorithm pinned to the key; the signature;
/// then `aud` contains the issuer's audience, `exp`, `iat` and `nbf` within `clockSkew`, and a
/// `sub`. Every failure is `UNAUTHENTICATED` with a message naming the check, never the token.
public struct OIDCTokenVerifier: IDTokenVerifying {
    private let issuers: [String: (OIDCIssuer, JWKSCache)]
    private let clock: any WallClock
    /// The tolerance on `exp`, `iat` and `nbf` (60 s by default).
    public let clockSkew: Duration
    /// The `typ` of lease tokens, which are never accepted here.
    private let refusedTypes: Set<String>

    public init(
        issuers: [OIDCIssuer], fetcher: any HTTPFetching = NIOHTTPFetcher(), clock: any WallClock = SystemWallClock(),
        clockSkew: Duration = .seconds(60), cachePolicy: JWKSCachePolicy = JWKSCachePolicy(), refusedTypes: Set<String> = [],
        logger: Logger = Logger(label: "coditect.license.oidc")
    ) throws {
        var byIssuer: [String: (OIDCIssuer, JWKSCache)] = [:]
        for issuer in issuers {
            try issuer.validate()
            guard byIssuer[issuer.issuer] == nil else { throw OIDCIssuer.invalid("issuer \(issuer.issuer) is configured twice") }
            byIssuer[issuer.issuer] = (issuer, JWKSCache(issuer: issuer, fetcher: fetcher, clock: clock, policy: cachePolicy, logger: logger))
        }
        self.issuers = byIssuer
        self.clock = clock
        self.clockSkew = clockSkew
        self.refusedTypes = Set(refusedTypes.map { $0.lowercased() })
    }

    public func verify(_ token: String) async throws -> VerifiedIdentity {
        func refuse(_ why: String) -> LicenseError {
            LicenseError(.unauthenticated, .invalidCredential, "the ID token was not accepted: \(why)")
        }
        guard token.utf8.count <= 16_384 else { throw refuse("it is longer than 16 KiB") }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3,
              let headerData = Base64URL.decode(parts[0]), let payloadData = Base64URL.decode(parts[1]),
              let signature = Base64URL.decode(parts[2]),
              let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any],
              let claims = try? JSONSerialization.jsonObject(with: payloadData) as? [String: Any]
        else { throw refuse("it is not a signed JWT") }

        guard let algName = header["alg"] as? String, let algorithm = IDTokenAlgorithm(rawValue: algName) else {
            throw refuse("its algorithm is not RS256 or ES256")
        }
        guard header["crit"] == nil else { throw refuse("it has critical header parameters") }
        if let typ = header["typ"] as? String, refusedTypes.contains(typ.lowercased()) {
            throw refuse("it is a lease token, not an ID token")
        }
        guard let kid = header["kid"] as? String, !kid.isEmpty else { throw refuse("its header names no key id") }
        guard let iss = claims["iss"] as? String, let (issuer, cache) = issuers[iss] else {
            throw refuse("its issuer is not trusted by this server")
        }
        guard issuer.algorithms.contains(algorithm) else { throw refuse("\(algorithm) is not allowed for this issuer") }

        let key = try await cache.key(kid)
        guard key.algorithm == algorithm else { throw refuse("its algorithm does not match its key") }
        guard key.isValid(signature: signature, for: Data((parts[0] + "." + parts[1]).utf8)) else {
            throw refuse("its signature is not valid")
        }

        let audiences: [String]
        switch claims["aud"] {
        case let single as String: audiences = [single]
        case let many as [Any]: audiences = many.compactMap { $0 as? String }
        default: audiences = []
        }
        guard audiences.contains(issuer.audience) else { throw refuse("it was issued for another audience") }
        let now = clock.now().secondsSinceEpoch
        let skew = clockSkew.wholeSeconds
        // Times are read with a typed decoder so that `true` or a string is not taken for a number.
        guard let times = try? JSONDecoder().decode(TimeClaims.self, from: payloadData) else { throw refuse("its times are not numbers") }
        guard let exp = times.exp.flatMap(Self.seconds) else { throw refuse("it has no expiry") }
        guard now < exp + skew else {
            throw LicenseError(.unauthenticated, .tokenExpired, "the ID token has expired; sign in again")
        }
        guard let iat = times.iat.flatMap(Self.seconds) else { throw refuse("it has no issue time") }
        guard iat <= now + skew else { throw refuse("it was issued in the future") }
        if let nbf = times.nbf {
            guard let notBefore = Self.seconds(nbf), notBefore <= now + skew else { throw refuse("it is not valid yet") }
        }
        guard let sub = claims["sub"] as? String, !sub.isEmpty, sub.utf8.count <= 255 else { throw refuse("it names no subject") }

        let email = (claims["email"] as? String).map { $0.lowercased() }
        let verified = (claims["email_verified"] as? Bool) ?? ((claims["email_verified"] as? String) == "true")
        let identityTenant = issuer.tenantClaim.flatMap { Self.claim($0, in: claims) as? String }
        return VerifiedIdentity(
            account: ExternalIdentity(issuer: iss, subject: sub), email: email, emailVerified: verified,
            identityTenant: identityTenant, displayName: claims["name"] as? String,
            expiresAt: Timestamp(millisecondsSinceEpoch: exp * 1000)
        )
    }

    private struct TimeClaims: Decodable {
        var exp: Double?
        var iat: Double?
        var nbf: Double?
    }

    /// A NumericDate as whole seconds (JSON numbers may carry fractions).
    private static func seconds(_ value: Double) -> Int64? {
        guard value.isFinite, abs(value) < 1e12 else { return nil }
        return Int64(value)
    }

    /// A claim by dotted path, e.g. `firebase.tenant`.
    private static func claim(_ path: String, in claims: [String: Any]) -> Any? {
        var current: Any? = claims
        for component in path.split(separator: ".") {
            current = (current as? [String: Any])?[String(component)]
        }
        return current
    }
}
