import Foundation
import LicenseCore

/// Compact JWS lease tokens: `base64url(header).base64url(claims).base64url(signature)`.
public enum LeaseToken {
    struct Header: Codable {
        var alg: String
        var kid: String
        var typ: String
    }

    /// Signs claims with a key; the header carries `alg`, `kid` and `typ`.
    public static func sign(_ claims: LeaseClaims, with key: SigningKey) async throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let header = try encoder.encode(Header(alg: key.algorithm.rawValue, kid: key.keyID, typ: leaseTokenType))
        let payload = try encoder.encode(claims)
        let signingInput = Base64URL.encode(header) + "." + Base64URL.encode(payload)
        let signature = try await key.sign(Data(signingInput.utf8))
        return signingInput + "." + Base64URL.encode(signature)
    }
}

/// Verifies lease tokens offline against known public keys.
///
/// Checks, in order: shape; header `typ`; a known `kid` whose pinned algorithm equals the
/// header's `alg`; the signature; then issuer, not-before, expiry (with `leeway`) and, when
/// given, the hardware binding. Any failure is a `LicenseError`; none reveals the token.
public struct LeaseTokenVerifier: Sendable {
    private let keys: [String: VerificationKey]
    public let issuer: String
    public let leeway: Duration

    public init(keys: [VerificationKey], issuer: String, leeway: Duration = .seconds(60)) {
        self.keys = Dictionary(keys.map { ($0.keyID, $0) }, uniquingKeysWith: { first, _ in first })
        self.issuer = issuer
        self.leeway = leeway
    }

    /// Returns the claims of a valid token.
    public func verify(_ token: String, now: Timestamp, hardwareID: String? = nil) throws -> LeaseClaims {
        let invalid = LicenseError(.unauthenticated, .invalidToken, "the lease token is not valid")
        guard token.utf8.count <= 16_384 else { throw invalid }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3,
              let headerData = Base64URL.decode(parts[0]), let payloadData = Base64URL.decode(parts[1]),
              let signature = Base64URL.decode(parts[2]),
              let header = try? JSONDecoder().decode(LeaseToken.Header.self, from: headerData)
        else { throw invalid }
        guard header.typ == leaseTokenType else { throw invalid }
        guard let key = keys[header.kid] else {
            throw LicenseError(.unauthenticated, .unknownSigningKey, "the lease token was signed by an unknown or retired key")
        }
        guard header.alg == key.algorithm.rawValue else { throw invalid }
        let signingInput = Data((parts[0] + "." + parts[1]).utf8)
        guard key.isValid(signature: signature, for: signingInput) else { throw invalid }
        guard let claims = try? JSONDecoder().decode(LeaseClaims.self, from: payloadData), claims.issuer == issuer else { throw invalid }
        let leewaySeconds = leeway.wholeSeconds
        guard now.secondsSinceEpoch + leewaySeconds >= claims.notBefore else { throw invalid }
        guard now.secondsSinceEpoch < claims.expiresAt + leewaySeconds else {
            throw LicenseError(.unauthenticated, .tokenExpired, "the lease token has expired")
        }
        if let hardwareID, claims.hardwareHash != LeaseClaims.hardwareHash(hardwareID) {
            throw LicenseError(.permissionDenied, .hardwareMismatch, "the lease token belongs to another machine")
        }
        return claims
    }
}
