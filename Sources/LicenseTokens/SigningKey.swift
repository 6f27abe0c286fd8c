import Crypto
import _CryptoExtras
import Foundation
import LicenseCore

/// A private key that signs lease tokens, with its key id: held in memory, or in a device
/// (an HSM or a KMS) that signs for it.
public struct SigningKey: Sendable {
    enum Material: Sendable {
        case ed25519(Curve25519.Signing.PrivateKey)
        case rsa(_RSA.Signing.PrivateKey)
        case external(any ExternalSigningKey)
    }

    let material: Material
    /// The JWS algorithm this key signs with.
    public let algorithm: LeaseTokenAlgorithm
    /// The `kid`: the first 16 characters of the base64url SHA-256 of the public key's DER.
    public let keyID: String

    init(material: Material, algorithm: LeaseTokenAlgorithm) {
        self.material = material
        self.algorithm = algorithm
        self.keyID = Self.keyID(of: material)
    }

    /// A key that signs in its device.
    public init(external key: any ExternalSigningKey) {
        self.init(material: .external(key), algorithm: key.algorithm)
    }

    /// The device key this is, if it is one.
    public var external: (any ExternalSigningKey)? {
        if case .external(let key) = material { return key }
        return nil
    }

    /// A new random key. RSA keys are 4096 bits (generation takes a few seconds).
    public static func generate(_ algorithm: LeaseTokenAlgorithm) throws -> SigningKey {
        if algorithm.isRSA {
            return SigningKey(material: .rsa(try _RSA.Signing.PrivateKey(keySize: .bits4096)), algorithm: algorithm)
        }
        return SigningKey(material: .ed25519(Curve25519.Signing.PrivateKey()), algorithm: algorithm)
    }

    /// Reads a PKCS#8 PEM private key: Ed25519 for EdDSA, RSA (at least 2048 bits; 4096
    /// recommended) for RS256 and PS256.
    public init(pem: String, algorithm: LeaseTokenAlgorithm) throws {
        do {
            if algorithm.isRSA {
                let key = try _RSA.Signing.PrivateKey(pemRepresentation: pem)
                self.init(material: .rsa(key), algorithm: algorithm)
            } else {
                self.init(material: .ed25519(try Curve25519.Signing.PrivateKey(pemRepresentation: pem)), algorithm: algorithm)
            }
        } catch {
            throw LicenseError(.invalidArgument, .invalidRequest, "the signing key is not a \(algorithm.isRSA ? "RSA" : "Ed25519") PEM private key")
        }
    }

    /// The key as PKCS#8 PEM, for the key file; a device key's reference (it has no PEM).
    public var pemRepresentation: String {
        switch material {
        case .ed25519(let key): key.pemRepresentation
        case .rsa(let key): key.pkcs8PEMRepresentation
        case .external(let key): key.reference
        }
    }

    /// The public half, for verifiers and the JWKS.
    public var verificationKey: VerificationKey {
        switch material {
        case .ed25519(let key): VerificationKey(material: .ed25519(key.publicKey), algorithm: algorithm, keyID: keyID)
        case .rsa(let key): VerificationKey(material: .rsa(key.publicKey), algorithm: algorithm, keyID: keyID)
        case .external(let key): key.verificationKey
        }
    }

    func sign(_ signingInput: Data) async throws -> Data {
        switch material {
        case .ed25519(let key):
            return try key.signature(for: signingInput)
        case .rsa(let key):
            let padding: _RSA.Signing.Padding = algorithm == .ps256 ? .PSS : .insecurePKCS1v1_5
            let digest = SHA256.hash(data: signingInput)
            // About 5 ms of CPU for a 4096-bit key: on threads of its own, not the concurrency
            // pool's, whose two threads it would otherwise hold from every other call.
            return try await RSASigningThreads.pool.runIfActive { try key.signature(for: digest, padding: padding).rawRepresentation }
        case .external(let key):
            return try await key.sign(signingInput)
        }
    }

    private static func keyID(of material: Material) -> String {
        switch material {
        case .ed25519(let key): keyID(ofPublicKeyDER: key.publicKey.derRepresentation)
        case .rsa(let key): keyID(ofPublicKeyDER: key.publicKey.derRepresentation)
        case .external(let key): key.verificationKey.keyID
        }
    }

    /// The `kid` of a public key: the first 16 characters of the base64url SHA-256 of its DER.
    static func keyID(ofPublicKeyDER der: Data) -> String {
        String(Base64URL.encode(SHA256.hash(data: der)).prefix(16))
    }
}

/// A public key that verifies lease tokens; its algorithm is pinned, never read from a token.
public struct VerificationKey: Sendable {
    enum Material: Sendable {
        case ed25519(Curve25519.Signing.PublicKey)
        case rsa(_RSA.Signing.PublicKey)
    }

    let material: Material
    public let algorithm: LeaseTokenAlgorithm
    public let keyID: String

    func isValid(signature: Data, for signingInput: Data) -> Bool {
        switch material {
        case .ed25519(let key):
            return key.isValidSignature(signature, for: signingInput)
        case .rsa(let key):
            let padding: _RSA.Signing.Padding = algorithm == .ps256 ? .PSS : .insecurePKCS1v1_5
            return key.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: SHA256.hash(data: signingInput), padding: padding)
        }
    }

    /// The key as a JWK object.
    var jwk: [String: String] {
        switch material {
        case .ed25519(let key):
            return ["kty": "OKP", "crv": "Ed25519", "x": Base64URL.encode(key.rawRepresentation), "kid": keyID, "alg": algorithm.rawValue, "use": "sig"]
        case .rsa(let key):
            let primitives = try? key.getKeyPrimitives()
            return [
                "kty": "RSA", "n": Base64URL.encode(primitives?.modulus ?? Data()), "e": Base64URL.encode(primitives?.publicExponent ?? Data()),
                "kid": keyID, "alg": algorithm.rawValue, "use": "sig",
            ]
        }
    }

    /// Reads one JWK object; `nil` for keys of a kind or algorithm lease tokens never use.
    init?(jwk: [String: String]) {
        guard let kid = jwk["kid"], let algName = jwk["alg"], let alg = LeaseTokenAlgorithm(rawValue: algName) else { return nil }
        switch (jwk["kty"], alg) {
        case ("OKP", .edDSA):
            guard jwk["crv"] == "Ed25519", let x = jwk["x"].flatMap(Base64URL.decode),
                  let key = try? Curve25519.Signing.PublicKey(rawRepresentation: x) else { return nil }
            material = .ed25519(key)
        case ("RSA", .rs256), ("RSA", .ps256):
            guard let n = jwk["n"].flatMap(Base64URL.decode), let e = jwk["e"].flatMap(Base64URL.decode),
                  let key = try? _RSA.Signing.PublicKey(n: n, e: e), key.keySizeInBits >= 2048 else { return nil }
            material = .rsa(key)
        default:
            return nil
        }
        algorithm = alg
        keyID = kid
    }

    init(material: Material, algorithm: LeaseTokenAlgorithm, keyID: String) {
        self.material = material
        self.algorithm = algorithm
        self.keyID = keyID
    }
}
