import Foundation
import LicenseCore
import LicensePKCS11
import Testing

@Suite("PKCS#11 URIs")
struct PKCS11URITests {
    @Test func aURINamesTheTokenTheKeyTheModuleAndWhereThePINIs() throws {
        let uri = try PKCS11URI(parsing: "pkcs11:token=Licensed%20HSM;object=lease-2027;id=%01%ff;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/licensed/pin")
        #expect(uri.token == "Licensed HSM" && uri.object == "lease-2027" && uri.id == Data([0x01, 0xFF]))
        #expect(uri.modulePath == "/usr/lib/softhsm/libsofthsm2.so" && uri.pinSource == "file:/etc/licensed/pin")
        // The canonical form parses back to the same URI.
        #expect(try PKCS11URI(parsing: uri.description) == uri)
        #expect(uri.description == "pkcs11:token=Licensed%20HSM;object=lease-2027;id=%01%FF?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/licensed/pin")
    }

    @Test(arguments: [
        ("pkcs11:object=k?module-path=/m.so", "token="),
        ("pkcs11:token=t?module-path=/m.so", "object="),
        ("pkcs11:token=t;object=k", "module-path"),
        ("pkcs11:token=t;object=k?module-path=relative.so", "module-path"),
        ("pkcs11:token=t;object=k?module-path=/m.so&pin-value=1234", "pin-value"),
        ("pkcs11:token=t;object=k;pin-value=1234?module-path=/m.so", "pin-value"),
        ("pkcs11:token=t;object=k?module-path=/m.so&pin-source=/etc/pin", "pin-source is file:PATH or env:NAME"),
        ("pkcs11:token=t;object=k;slot-id=3?module-path=/m.so", "slot-id"),
        ("pkcs11:token=t;object=k;type=public?module-path=/m.so", "type must be private"),
        ("pkcs11:token=t;object=%zz?module-path=/m.so", "percent-encoded"),
        ("file:/etc/key.pem", "starts with pkcs11:"),
    ])
    func aBadURIIsRefusedSayingWhy(_ text: String, _ says: String) {
        let error = #expect(throws: LicenseError.self) { try PKCS11URI(parsing: text) }
        #expect(error?.message.contains(says) == true, "\(String(describing: error))")
        #expect(error?.message.contains("1234") == false, "a PIN in an error message")
    }
}
