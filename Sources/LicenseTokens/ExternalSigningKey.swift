import Crypto
import _CryptoExtras
import Foundation
import LicenseCore

/// A private key that never leaves its device (an HSM, a KMS) and signs there. The repository
/// stores only its `reference` (a `pkcs11:` URI without the PIN), which is no secret.
public protocol ExternalSigningKey: Sendable {
    /// What the repository stores for this key, e.g. `pkcs11:token=licensed;object=lease-2027?module-path=…`.
    var reference: String { get }
    var algorithm: LeaseTokenAlgorithm { get }
    /// The public half, read from the device.
    var verificationKey: VerificationKey { get }
    /// The JWS signature of `input` (raw 64 bytes for EdDSA, the RSA signature for RS256/PS256).
    /// Returns promptly (throwing) when the calling task is cancelled.
    func sign(_ input: Data) async throws -> Data
}

/// Finds the keys a repository refers to in devices, and makes new ones there.
public protocol ExternalKeyResolver: Sendable {
    /// Whether `reference` names a key this resolver finds (e.g. it starts with `pkcs11:`).
    func handles(_ reference: String) -> Bool
    /// The key `reference` names; a missing device, module or object is one clear error.
    func resolve(_ reference: String, algorithm: LeaseTokenAlgorithm) throws -> any ExternalSigningKey
    /// A new key pair generated inside the device next to `current`, or an error saying that an
    /// operator must add the object (the device does not generate keys).
    func generate(beside current: any ExternalSigningKey, algorithm: LeaseTokenAlgorithm, label: String) throws -> any ExternalSigningKey
}

extension VerificationKey {
    /// An Ed25519 public key from its 32 raw bytes.
    public init(ed25519 raw: Data) throws {
        let key = try Curve25519.Signing.PublicKey(rawRepresentation: raw)
        self.init(material: .ed25519(key), algorithm: .edDSA, keyID: SigningKey.keyID(ofPublicKeyDER: key.derRepresentation))
    }

    /// An RSA public key (at least 2048 bits) from its modulus and public exponent (big-endian).
    public init(rsaModulus modulus: Data, exponent: Data, algorithm: LeaseTokenAlgorithm) throws {
        let key = try _RSA.Signing.PublicKey(n: modulus, e: exponent)
        guard algorithm.isRSA, key.keySizeInBits >= 2048 else {
            throw LicenseError(.invalidArgument, .invalidRequest, "an RSA signing key must be at least 2048 bits and signs RS256 or PS256")
        }
        self.init(material: .rsa(key), algorithm: algorithm, keyID: SigningKey.keyID(ofPublicKeyDER: key.derRepresentation))
    }
}
