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
    /// What seals the keys this ring makes and opens the keys it loads.
    public let encryption: KeyEncryptionKeys
    /// Finds the keys that live in devices (HSMs, KMSs) and makes new ones there.
    public let resolver: (any ExternalKeyResolver)?
    private let state: Mutex<State>

    /// Creates a key ring signing with `current`, still publishing `retired`.
    public init(
        issuer: String, current: SigningKey, retired: [VerificationKey] = [], encryption: KeyEncryptionKeys = .none,
        resolver: (any ExternalKeyResolver)? = nil
    ) {
        self.issuer = issuer
        self.encryption = encryption
        self.resolver = resolver
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

    public var signsInProcess: Bool { currentKey.external == nil }

    public func sign(_ claims: LeaseClaims) async throws -> String {
        let key = currentKey
        return try await LeaseToken.sign(claims, with: key)
    }

    /// Every published verification key, current first.
    public var verificationKeys: [VerificationKey] {
        state.withLock { [$0.current.verificationKey] + $0.retired }
    }

    public func jwksJSON() -> String { JWKS.encode(verificationKeys) }

    public func makeKey(algorithm: String?, at now: Timestamp) throws -> StoredSigningKey {
        let chosen: LeaseTokenAlgorithm
        if let algorithm {
            guard let known = LeaseTokenAlgorithm(rawValue: algorithm) else {
                throw LicenseError(.invalidArgument, .invalidRequest, "algorithm must be EdDSA, RS256 or PS256")
            }
            chosen = known
        } else {
            chosen = currentKey.algorithm
        }
        // A key in a device is followed by a key made in that device.
        if let current = currentKey.external, let resolver {
            let label = "licensed-\(chosen.rawValue.lowercased())-\(now.millisecondsSinceEpoch / 1000)"
            return SigningKey.stored(SigningKey(external: try resolver.generate(beside: current, algorithm: chosen, label: label)), at: now)
        }
        return try encryption.sealed(SigningKey.stored(try SigningKey.generate(chosen), at: now))
    }

    public func load(_ keys: [StoredSigningKey], now: Timestamp) throws {
        let loaded = try Self.state(from: keys, now: now, encryption: encryption, resolver: resolver)
        state.withLock { $0 = loaded }
    }

    /// A key ring holding the repository's keys (see `load`), opened with `encryption`'s KEKs;
    /// keys in devices are found by `resolver`.
    public convenience init(
        issuer: String, keys: [StoredSigningKey], now: Timestamp, encryption: KeyEncryptionKeys = .none, resolver: (any ExternalKeyResolver)? = nil
    ) throws {
        let loaded = try Self.state(from: keys, now: now, encryption: encryption, resolver: resolver)
        self.init(issuer: issuer, current: loaded.current, retired: loaded.retired, encryption: encryption, resolver: resolver)
    }

    /// One stored key as a signing key: opened with a KEK, or found in its device.
    static func signingKey(_ stored: StoredSigningKey, encryption: KeyEncryptionKeys, resolver: (any ExternalKeyResolver)?) throws -> SigningKey {
        guard let algorithm = LeaseTokenAlgorithm(rawValue: stored.algorithm) else {
            throw LicenseError(.internal, .internalError, "the signing key \(stored.keyID) has an unknown algorithm")
        }
        if KeyEncryptionKeys.isDeviceReference(stored) {
            guard let resolver, resolver.handles(stored.privateKeyPEM) else {
                throw LicenseError(.failedPrecondition, .invalidRequest, "the signing key \(stored.keyID) is in a PKCS#11 token, which this build cannot reach")
            }
            let key = try resolver.resolve(stored.privateKeyPEM, algorithm: algorithm)
            guard key.verificationKey.keyID == stored.keyID else {
                throw LicenseError(.failedPrecondition, .invalidRequest,
                                   "the token object for signing key \(stored.keyID) now holds another key (\(key.verificationKey.keyID)): restore the object, or rotate to a new one")
            }
            return SigningKey(external: key)
        }
        return try SigningKey(pem: try encryption.open(stored), algorithm: algorithm)
    }

    /// The newest unretired key signs; retired keys are published until their `publishUntil`
    /// (a retired key whose device object is gone can no longer be published and is left out).
    private static func state(
        from keys: [StoredSigningKey], now: Timestamp, encryption: KeyEncryptionKeys, resolver: (any ExternalKeyResolver)?
    ) throws -> State {
        guard let signing = keys.signingKey else {
            throw LicenseError(.internal, .internalError, "the repository holds no signing key")
        }
        let current = try signingKey(signing, encryption: encryption, resolver: resolver)
        let retired = try keys
            .filter { $0.retiredAt != nil && ($0.publishUntil ?? now) > now && $0.keyID != current.keyID }
            .sorted { ($0.retiredAt ?? now) > ($1.retiredAt ?? now) }
            .compactMap { stored -> VerificationKey? in
                guard LeaseTokenAlgorithm(rawValue: stored.algorithm) != nil else { return nil }
                if KeyEncryptionKeys.isDeviceReference(stored) {
                    return try? signingKey(stored, encryption: encryption, resolver: resolver).verificationKey
                }
                return try signingKey(stored, encryption: encryption, resolver: resolver).verificationKey
            }
        return State(current: current, retired: retired)
    }
}

extension SigningKey {
    /// The key in the form the repository stores.
    public static func stored(_ key: SigningKey, at now: Timestamp) -> StoredSigningKey {
        StoredSigningKey(keyID: key.keyID, algorithm: key.algorithm.rawValue, privateKeyPEM: key.pemRepresentation, createdAt: now)
    }
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
