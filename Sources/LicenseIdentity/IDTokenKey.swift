import Crypto
import _CryptoExtras
import Foundation
import LicenseCore

/// A public key that verifies ID tokens, with its algorithm pinned when it was read from the
/// JWKS (from the JWK's `alg`, or its key type when `alg` is absent).
struct IDTokenKey: Sendable {
    enum Material: Sendable {
        case rsa(_RSA.Signing.PublicKey)
        case p256(P256.Signing.PublicKey)
    }

    let keyID: String
    let algorithm: IDTokenAlgorithm
    let material: Material

    /// Reads one JWK; `nil` for keys that cannot verify ID tokens (other types, curves or
    /// algorithms, RSA under 2048 bits, encryption keys).
    init?(jwk: [String: Any]) {
        guard let kid = jwk["kid"] as? String, !kid.isEmpty, let kty = jwk["kty"] as? String else { return nil }
        if let use = jwk["use"] as? String, use != "sig" { return nil }
        let declared = jwk["alg"].map { ($0 as? String).flatMap(IDTokenAlgorithm.init(rawValue:)) }
        if let declared, declared == nil { return nil }   // an `alg` we never accept (HS256, none, RS384…)
        switch kty {
        case "RSA":
            guard declared == nil || declared! == .rs256,
                  let n = (jwk["n"] as? String).flatMap(Base64URL.decode), let e = (jwk["e"] as? String).flatMap(Base64URL.decode),
                  let key = try? _RSA.Signing.PublicKey(n: n, e: e), key.keySizeInBits >= 2048
            else { return nil }
            material = .rsa(key)
            algorithm = .rs256
        case "EC":
            guard declared == nil || declared! == .es256, jwk["crv"] as? String == "P-256",
                  let x = (jwk["x"] as? String).flatMap(Base64URL.decode), let y = (jwk["y"] as? String).flatMap(Base64URL.decode),
                  x.count == 32, y.count == 32, let key = try? P256.Signing.PublicKey(rawRepresentation: x + y)
            else { return nil }
            material = .p256(key)
            algorithm = .es256
        default:
            return nil
        }
        keyID = kid
    }

    func isValid(signature: Data, for signingInput: Data) -> Bool {
        switch material {
        case .rsa(let key):
            return key.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: SHA256.hash(data: signingInput), padding: .insecurePKCS1v1_5)
        case .p256(let key):
            guard signature.count == 64, let parsed = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return key.isValidSignature(parsed, for: SHA256.hash(data: signingInput))
        }
    }

    /// The usable keys of a JWKS document, by `kid`.
    static func keySet(_ body: [UInt8]) throws -> [String: IDTokenKey] {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
              let entries = object["keys"] as? [[String: Any]]
        else { throw LicenseError(.unavailable, .identityProviderUnavailable, "the identity provider's JWKS is not a JSON Web Key Set") }
        var keys: [String: IDTokenKey] = [:]
        for entry in entries {
            if let key = IDTokenKey(jwk: entry), keys[key.keyID] == nil { keys[key.keyID] = key }
        }
        return keys
    }
}
