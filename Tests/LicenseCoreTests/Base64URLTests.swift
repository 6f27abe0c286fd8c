import Foundation
import LicenseCore
import Testing

@Suite("Base64URL")
struct Base64URLTests {
    /// Foundation's base64, made url-safe and unpadded: the reference the table-driven coder must match.
    func reference(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    @Test func matchesFoundationForEveryLengthAndByte() {
        var generator = SystemRandomNumberGenerator()
        for length in 0...70 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let encoded = Base64URL.encode(bytes)
            #expect(encoded == reference(bytes))
            #expect(Base64URL.decode(encoded) == Data(bytes))
        }
        let all = (0...255).map(UInt8.init)
        #expect(Base64URL.encode(all) == reference(all))
        #expect(Base64URL.decode(reference(all)).map(Array.init) == all)
    }

    @Test func paddingIsOptionalAndOnlyAtTheEnd() {
        #expect(Base64URL.decode("YQ") == Data("a".utf8))
        #expect(Base64URL.decode("YQ==") == Data("a".utf8))
        #expect(Base64URL.decode("YWI=") == Data("ab".utf8))
        #expect(Base64URL.decode("") == Data())
        #expect(Base64URL.decode("Y=Q") == nil)
        #expect(Base64URL.decode("YQ=") == nil)
        #expect(Base64URL.decode("YQ===") == nil)
        #expect(Base64URL.decode("Y") == nil)
        #expect(Base64URL.decode("YQ+/") == nil, "standard base64's + and / are not base64url")
        #expect(Base64URL.decode("YQ é") == nil)
    }
}
