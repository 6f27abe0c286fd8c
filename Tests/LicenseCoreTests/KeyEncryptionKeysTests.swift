import Foundation
import LicenseCore
import LicenseTokens
import Testing

@Suite("Key-encryption keys")
struct KeyEncryptionKeysTests {
    let t0 = Timestamp(millisecondsSinceEpoch: 1_800_000_000_000)
    static let k1 = Data(repeating: 1, count: 32), k2 = Data(repeating: 2, count: 32)

    func stored(_ key: SigningKey) -> StoredSigningKey { SigningKey.stored(key, at: t0) }

    @Test func theFirstKeySealsAndAnyKeyOpens() throws {
        let key = try SigningKey.generate(.edDSA)
        let clear = stored(key)
        let old = try KeyEncryptionKeys([(id: "k1", material: Self.k1)])
        let sealed = try old.sealed(clear)
        #expect(sealed.privateKeyPEM.hasPrefix("kek:v1:k1:") && !sealed.privateKeyPEM.contains("PRIVATE KEY"))
        #expect(KeyEncryptionKeys.isSealed(sealed) && KeyEncryptionKeys.sealingID(of: sealed) == "k1" && !KeyEncryptionKeys.isSealed(clear))
        #expect(try old.open(sealed) == key.pemRepresentation)
        // Sealing twice gives different ciphertexts (a fresh nonce), both open.
        #expect(try old.sealed(clear).privateKeyPEM != sealed.privateKeyPEM)
        // A new KEK first: it seals what the old one sealed; both open; the old one alone cannot open the new.
        let both = try KeyEncryptionKeys([(id: "k2", material: Self.k2), (id: "k1", material: Self.k1)])
        #expect(try both.open(sealed) == key.pemRepresentation)
        let moved = try both.sealed(sealed)
        let reopened = try both.open(moved)
        #expect(KeyEncryptionKeys.sealingID(of: moved) == "k2" && reopened == key.pemRepresentation)
        #expect(throws: LicenseError.self) { try old.open(moved) }
        // A key ring opens sealed keys and seals the keys it makes.
        let ring = try KeyRing(issuer: "iss", keys: [moved], now: t0, encryption: both)
        #expect(ring.currentKey.keyID == key.keyID)
        let made = try ring.makeKey(algorithm: "EdDSA", at: t0)
        #expect(KeyEncryptionKeys.sealingID(of: made) == "k2")
    }

    @Test func aMissingKEKIsNamedAndAnAlteredKeyDoesNotOpen() throws {
        let keks = try KeyEncryptionKeys([(id: "prod-2027", material: Self.k1)])
        let sealed = try keks.sealed(stored(try SigningKey.generate(.edDSA)))
        let missing = #expect(throws: LicenseError.self) { try KeyEncryptionKeys.none.open(sealed) }
        #expect(missing?.message.contains("sealed with the key-encryption key 'prod-2027', which is not configured") == true, "\(String(describing: missing))")
        #expect(throws: LicenseError.self) { try KeyRing(issuer: "iss", keys: [sealed], now: t0) }
        // The key's id and algorithm are bound to the ciphertext: moved to another row, it does not open.
        var relabelled = sealed
        relabelled.keyID = "another"
        let moved = #expect(throws: LicenseError.self) { try keks.open(relabelled) }
        #expect(moved?.message.contains("does not open with the key-encryption key 'prod-2027'") == true)
        var realgorithmed = sealed
        realgorithmed.algorithm = "RS256"
        #expect(throws: LicenseError.self) { try keks.open(realgorithmed) }
        var flipped = sealed
        let last = flipped.privateKeyPEM.removeLast()
        flipped.privateKeyPEM.append(last == "A" ? "B" : "A")
        #expect(throws: LicenseError.self) { try keks.open(flipped) }
        // The wrong key with the right id.
        let impostor = try KeyEncryptionKeys([(id: "prod-2027", material: Self.k2)])
        #expect(throws: LicenseError.self) { try impostor.open(sealed) }
    }

    @Test func keyMaterialAndIdsAreChecked() throws {
        let base64 = Self.k1.base64EncodedString()
        #expect(try KeyEncryptionKeys.material(fromText: base64 + "\n", id: "a") == Self.k1)
        #expect(try KeyEncryptionKeys.material(fromText: String(repeating: "01", count: 32), id: "a") == Self.k1)
        #expect(try KeyEncryptionKeys.material(fromText: Base64URL.encode(Self.k2), id: "a") == Self.k2)
        #expect(throws: LicenseError.self) { try KeyEncryptionKeys.material(fromText: Data(count: 16).base64EncodedString(), id: "a") }
        #expect(throws: LicenseError.self) { try KeyEncryptionKeys.material(fromText: "not a key", id: "a") }
        #expect(throws: LicenseError.self) { try KeyEncryptionKeys([(id: "a b", material: Self.k1)]) }
        #expect(throws: LicenseError.self) { try KeyEncryptionKeys([(id: "a", material: Self.k1), (id: "a", material: Self.k2)]) }
        #expect(throws: LicenseError.self) { try KeyEncryptionKeys([(id: "a", material: Data(count: 31))]) }
    }
}
