import LicenseCore
import Testing

@Suite("Identifier generator")
struct IdentifierGeneratorTests {
    @Test(arguments: [1, 7, 8, 9, 12, 16, 32])
    func identifiersCarryTheAskedRandomBytesInBase64URL(byteCount: Int) {
        let ids = (0..<200).map { _ in IdentifierGenerator.make(prefix: "ses", byteCount: byteCount) }
        for id in ids {
            #expect(id.hasPrefix("ses_"))
            let encoded = String(id.dropFirst(4))
            #expect(encoded.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") })
            #expect(Base64URL.decode(encoded)?.count == byteCount)
        }
        // 200 draws of 8 or more random bytes never repeat; fewer bytes may.
        if byteCount >= 8 { #expect(Set(ids).count == ids.count) }
    }
}
