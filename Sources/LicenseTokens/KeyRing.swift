import Foundation
import LicenseCore
import Synchronization

/// The server's signing keys: one current key that signs, plus retired public keys that stay
/// published (in the JWKS) until the tokens they signed have expired.
public final class KeyRing: LeaseTokenSigner {
    private struct State {
        var current: SigningKey
        var retired: [VerificationKey]
    }

    public let issuer: String
    private let state: Mutex<State>

    /// Creates a key ring signing with `current`, still publishing `retired`.
    public init(issuer: String, current: SigningKey, retired: [VerificationKey] = []) {
        self.issuer = issuer
        self.state = Mutex(State(current: current, retired: retired))
    }

    /// The key that signs new tokens.
    public var currentKey: SigningKey { state.withLock { $0.current } }

    /// Makes `key` the signing key; the previous key's public half stays published.
    public func rotate(to key: SigningKey) {
        state.withLock { state in
            state.retired.insert(state.current.verificationKey, at: 0)
            state.current = key
        }
    }

    public func sign(_ claims: LeaseClaims) throws -> String {
        let key = currentKey
        return try LeaseToken.sign(claims, with: key)
    }

    /// Every published verification key, current first.
    public var verificationKeys: [VerificationKey] {
        state.withLock { [$0.current.verificationKey] + $0.retired }
    }

    public func jwksJSON() -> String { JWKS.encode(verificationKeys) }
}

/// RFC 7517 JSON Web Key Sets of verification keys.
public enum JWKS {
    /// Encodes keys as `{"keys":[…]}` with sorted member names.
    public static func encode(_ keys: [VerificationKey]) -> String {
        let document = ["keys": keys.map(\.jwk)]
        let data = (try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys])) ?? Data("{\"keys\":[]}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// Decodes the keys usable for lease tokens; others (other algorithms, weak RSA) are skipped.
    public static func decode(_ json: String) throws -> [VerificationKey] {
        guard let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
              let keys = object["keys"] as? [[String: Any]]
        else { throw LicenseError(.invalidArgument, .invalidToken, "the JWKS document is not valid") }
        return keys.compactMap { entry in
            VerificationKey(jwk: entry.compactMapValues { $0 as? String })
        }
    }
}
