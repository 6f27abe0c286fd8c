import Crypto
import Foundation
import LicenseCore

/// Key-encryption keys (KEKs): with one or more configured, the lease-signing private keys the
/// repository stores are AES-256-GCM ciphertext, so a copy of the database (a dump, a backup, a
/// stolen disk) holds no key that can mint tokens. The first KEK seals; every KEK opens, so a
/// new KEK can be put first while the old one still opens what it sealed (`licensed keys rewrap`
/// then moves every key to the first).
///
/// A sealed key is stored as `kek:v1:<KEK id>:<base64url(nonce ‖ ciphertext ‖ tag)>`. The
/// header's version and KEK id, the signing key's id and its algorithm are the associated data:
/// a ciphertext moved to another key's row, or relabelled, does not open.
public struct KeyEncryptionKeys: Sendable {
    /// One KEK: an id (letters, digits, `.`, `_`, `-`; at most 64) and 32 bytes of key.
    public struct Entry: Sendable {
        public let id: String
        let key: SymmetricKey
    }

    /// The KEKs, the sealing one first.
    public let entries: [Entry]

    /// No KEK: keys are stored as they are.
    public static let none = KeyEncryptionKeys(validated: [])

    static let prefix = "kek:v1:"

    private init(validated entries: [Entry]) { self.entries = entries }

    /// KEKs from ids and their 32-byte keys, the sealing one first.
    public init(_ keys: [(id: String, material: Data)]) throws {
        var seen = Set<String>()
        var entries: [Entry] = []
        for (id, material) in keys {
            guard !id.isEmpty, id.count <= 64, id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }) else {
                throw LicenseError(.invalidArgument, .invalidRequest, "a key-encryption key id is 1 to 64 letters, digits, '.', '_' or '-', not '\(id)'")
            }
            guard seen.insert(id).inserted else {
                throw LicenseError(.invalidArgument, .invalidRequest, "the key-encryption key id '\(id)' is given twice")
            }
            guard material.count == 32 else {
                throw LicenseError(.invalidArgument, .invalidRequest, "the key-encryption key '\(id)' must be 32 bytes (AES-256), not \(material.count)")
            }
            entries.append(Entry(id: id, key: SymmetricKey(data: material)))
        }
        self.entries = entries
    }

    /// Whether no KEK is configured.
    public var isEmpty: Bool { entries.isEmpty }

    /// The KEK that seals (the first).
    public var sealingID: String? { entries.first?.id }

    /// A KEK's 32 bytes from its text form: base64 (standard or URL alphabet) or 64 hex digits,
    /// surrounding white space ignored (`openssl rand -base64 32` makes one).
    public static func material(fromText text: String, id: String) throws -> Data {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.count == 64, let bytes = Hex.decode(trimmed) { return bytes }
        // Base64URL takes padding or none; the standard alphabet differs in two characters.
        let urlAlphabet = trimmed.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        guard let bytes = Base64URL.decode(urlAlphabet), bytes.count == 32 else {
            throw LicenseError(.invalidArgument, .invalidRequest, "the key-encryption key '\(id)' must be 32 bytes in base64 or 64 hex digits (openssl rand -base64 32)")
        }
        return bytes
    }

    /// Whether a stored key is a device's reference (a `pkcs11:` URI), which holds no secret.
    public static func isDeviceReference(_ stored: StoredSigningKey) -> Bool { stored.privateKeyPEM.hasPrefix("pkcs11:") }

    /// Whether a stored private key is sealed by a KEK.
    public static func isSealed(_ stored: StoredSigningKey) -> Bool { stored.privateKeyPEM.hasPrefix(prefix) }

    /// The id of the KEK that sealed a stored key (`nil` for a key stored in the clear).
    public static func sealingID(of stored: StoredSigningKey) -> String? {
        guard isSealed(stored) else { return nil }
        let rest = stored.privateKeyPEM.dropFirst(prefix.count)
        return rest.firstIndex(of: ":").map { String(rest[..<$0]) }
    }

    /// `stored` sealed with the first KEK (opened first if another KEK sealed it). Unchanged
    /// without KEKs.
    public func sealed(_ stored: StoredSigningKey) throws -> StoredSigningKey {
        guard let entry = entries.first, !Self.isDeviceReference(stored) else { return stored }
        var result = stored
        let plaintext = try open(stored)
        let box = try AES.GCM.seal(Data(plaintext.utf8), using: entry.key, authenticating: Self.associatedData(kek: entry.id, stored))
        guard let combined = box.combined else {
            throw LicenseError(.internal, .internalError, "AES-GCM gave no combined box")
        }
        result.privateKeyPEM = Self.prefix + entry.id + ":" + Base64URL.encode(combined)
        return result
    }

    /// The PEM of a stored key: opened with the KEK that sealed it, or as stored when in the clear.
    public func open(_ stored: StoredSigningKey) throws -> String {
        guard let kekID = Self.sealingID(of: stored) else { return stored.privateKeyPEM }
        guard let entry = entries.first(where: { $0.id == kekID }) else {
            throw LicenseError(.failedPrecondition, .invalidRequest,
                               "the signing key \(stored.keyID) is sealed with the key-encryption key '\(kekID)', which is not configured: give --kek \(kekID)=… (LICENSED_KEKS)")
        }
        let encoded = stored.privateKeyPEM.dropFirst(Self.prefix.count + kekID.count + 1)
        do {
            guard let combined = Base64URL.decode(String(encoded)) else { throw CocoaError(.coderInvalidValue) }
            let box = try AES.GCM.SealedBox(combined: combined)
            let plaintext = try AES.GCM.open(box, using: entry.key, authenticating: Self.associatedData(kek: kekID, stored))
            return String(decoding: plaintext, as: UTF8.self)
        } catch {
            throw LicenseError(.failedPrecondition, .invalidRequest,
                               "the signing key \(stored.keyID) does not open with the key-encryption key '\(kekID)': the key is a different one, or the stored key was altered")
        }
    }

    private static func associatedData(kek: String, _ stored: StoredSigningKey) -> Data {
        Data("coditect-signing-key\nv1\n\(kek)\n\(stored.keyID)\n\(stored.algorithm)".utf8)
    }
}
