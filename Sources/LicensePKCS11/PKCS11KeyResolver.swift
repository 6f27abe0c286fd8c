import Foundation
import LicenseCore
import LicenseTokens
import Synchronization

/// Finds lease-signing keys named by `pkcs11:` URIs (module, token label, object), and makes new
/// key pairs in their tokens for scheduled or operator rotations. Modules are loaded with
/// `dlopen` on first use; tokens are shared between keys of the same module and label.
public final class PKCS11KeyResolver: ExternalKeyResolver {
    private var pool: PKCS11ThreadPool { .shared }
    private let tokens = Mutex<[String: PKCS11Token]>([:])

    public init() {}

    public func handles(_ reference: String) -> Bool { reference.hasPrefix("pkcs11:") }

    public func resolve(_ reference: String, algorithm: LeaseTokenAlgorithm) throws -> any ExternalSigningKey {
        try key(PKCS11URI(parsing: reference), algorithm: algorithm)
    }

    /// The key `uri` names; with `algorithm` nil, the key's type decides (Ed25519: EdDSA, RSA: RS256).
    public func key(_ uri: PKCS11URI, algorithm: LeaseTokenAlgorithm?) throws -> any ExternalSigningKey {
        try PKCS11Key(uri: uri, algorithm: algorithm, token: token(for: uri), pool: pool)
    }

    public func generate(beside current: any ExternalSigningKey, algorithm: LeaseTokenAlgorithm, label: String) throws -> any ExternalSigningKey {
        guard let current = current as? PKCS11Key else {
            throw LicenseError(.failedPrecondition, .invalidRequest, "the current signing key is not in a PKCS#11 token")
        }
        let uri = current.uri.naming(object: label)
        let token = try token(for: uri)
        var id = Data(count: 8)
        for index in id.indices { id[index] = UInt8.random(in: 0...255) }
        do {
            try token.withSession { session in try token.generateKeyPair(session, rsa: algorithm != .edDSA, label: label, id: id) }
        } catch let error as PKCS11Error {
            throw LicenseError(.failedPrecondition, .invalidRequest,
                               "PKCS#11 token '\(uri.token)' did not generate a key pair (\(error)): add a signing key to the token and restart with --signing-key pkcs11:token=\(uri.token);object=NEW-LABEL?…")
        }
        return try PKCS11Key(uri: uri, algorithm: algorithm, token: token, pool: pool)
    }

    private func token(for uri: PKCS11URI) throws -> PKCS11Token {
        let module = try PKCS11Module.load(uri.modulePath)
        return tokens.withLock { tokens in
            let key = uri.modulePath + "\u{0}" + uri.token + "\u{0}" + (uri.pinSource ?? "")
            if let token = tokens[key] { return token }
            let token = PKCS11Token(module: module, label: uri.token, pin: { try uri.pin() })
            tokens[key] = token
            return token
        }
    }
}
