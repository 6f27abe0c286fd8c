import Foundation
import LicenseCore
import LicenseTokens
import Testing

@Suite("Lease tokens")
struct LeaseTokenTests {
    static let rsaKeyPEM: String = try! SigningKey.generate(.rs256).pemRepresentation
    let now = Timestamp(millisecondsSinceEpoch: 1_800_000_000_000)

    func claims(expiresIn seconds: Int64 = 86_400) -> LeaseClaims {
        LeaseClaims(issuer: "iss", userID: "usr", tenantID: "acme", licenseID: "lic", sessionID: "ses", hardwareHash: LeaseClaims.hardwareHash("hw"),
                    features: ["ai"], issuedAt: now.secondsSinceEpoch, notBefore: now.secondsSinceEpoch - 60,
                    expiresAt: now.secondsSinceEpoch + seconds, tokenID: "tok")
    }

    func key(_ algorithm: LeaseTokenAlgorithm) throws -> SigningKey {
        algorithm == .edDSA ? try SigningKey.generate(.edDSA) : try SigningKey(pem: Self.rsaKeyPEM, algorithm: algorithm)
    }

    @Test(arguments: [LeaseTokenAlgorithm.edDSA, .rs256, .ps256])
    func signsAndVerifies(_ algorithm: LeaseTokenAlgorithm) async throws {
        let key = try key(algorithm)
        let token = try await LeaseToken.sign(claims(), with: key)
        let header = try #require(Base64URL.decode(token.split(separator: ".")[0]))
        let json = try #require(try JSONSerialization.jsonObject(with: header) as? [String: String])
        #expect(json == ["alg": algorithm.rawValue, "kid": key.keyID, "typ": "coditect-lease+jwt"])
        // Through the JWKS, as a client would.
        let verifier = LeaseTokenVerifier(keys: try JWKS.decode(JWKS.encode([key.verificationKey])), issuer: "iss")
        #expect(try verifier.verify(token, now: now, hardwareID: "hw") == claims())
    }

    @Test(arguments: [LeaseTokenAlgorithm.edDSA, .rs256])
    func rejectsTampering(_ algorithm: LeaseTokenAlgorithm) async throws {
        let key = try key(algorithm)
        let verifier = LeaseTokenVerifier(keys: [key.verificationKey], issuer: "iss")
        let token = try await LeaseToken.sign(claims(), with: key)
        var forged = claims()
        forged.licenseID = "enterprise"
        let parts = token.split(separator: ".").map(String.init)
        let forgedPayload = Base64URL.encode(try JSONEncoder().encode(forged))
        #expect(throws: LicenseError.self) { try verifier.verify(parts[0] + "." + forgedPayload + "." + parts[2], now: now) }
        #expect(throws: LicenseError.self) { try verifier.verify(parts[0] + "." + parts[1] + ".AAAA", now: now) }
        #expect(throws: LicenseError.self) { try verifier.verify("not a token", now: now) }
        // alg swapped in the header: the key's pinned algorithm wins.
        let swapped = Base64URL.encode(Data(#"{"alg":"none","kid":"\#(key.keyID)","typ":"coditect-lease+jwt"}"#.utf8))
        #expect(throws: LicenseError.self) { try verifier.verify(swapped + "." + parts[1] + "." + parts[2], now: now) }
    }

    @Test func rejectsExpiredWrongHardwareAndUnknownKeys() async throws {
        let key = try SigningKey.generate(.edDSA)
        let verifier = LeaseTokenVerifier(keys: [key.verificationKey], issuer: "iss")
        let expired = try await LeaseToken.sign(claims(expiresIn: 10), with: key)
        let error = #expect(throws: LicenseError.self) { try verifier.verify(expired, now: now.advanced(by: .seconds(71))) }
        #expect(error?.reason == .tokenExpired)
        #expect(throws: Never.self) { try verifier.verify(expired, now: now.advanced(by: .seconds(69))) }
        let token = try await LeaseToken.sign(claims(), with: key)
        let mismatch = #expect(throws: LicenseError.self) { try verifier.verify(token, now: now, hardwareID: "other-machine") }
        #expect(mismatch?.reason == .hardwareMismatch)
        let stranger = try await LeaseToken.sign(claims(), with: try SigningKey.generate(.edDSA))
        let unknown = #expect(throws: LicenseError.self) { try verifier.verify(stranger, now: now) }
        #expect(unknown?.reason == .unknownSigningKey)
        let wrongIssuer = LeaseTokenVerifier(keys: [key.verificationKey], issuer: "someone-else")
        #expect(throws: LicenseError.self) { try wrongIssuer.verify(token, now: now) }
    }

    @Test func rotationKeepsOldTokensVerifiable() async throws {
        let old = try SigningKey.generate(.edDSA)
        let ring = KeyRing(issuer: "iss", current: old)
        let before = try await ring.sign(claims())
        ring.rotate(to: try SigningKey.generate(.edDSA))
        let after = try await ring.sign(claims())
        let verifier = LeaseTokenVerifier(keys: try JWKS.decode(ring.jwksJSON()), issuer: "iss")
        #expect(try verifier.verify(before, now: now).sessionID == "ses")
        #expect(try verifier.verify(after, now: now).sessionID == "ses")
        #expect(try JWKS.decode(ring.jwksJSON()).count == 2)
    }

    @Test func keyFilesRoundTrip() throws {
        let key = try SigningKey.generate(.edDSA)
        let reread = try SigningKey(pem: key.pemRepresentation, algorithm: .edDSA)
        #expect(reread.keyID == key.keyID)
        #expect(throws: LicenseError.self) { try SigningKey(pem: "garbage", algorithm: .edDSA) }
        #expect(throws: LicenseError.self) { try SigningKey(pem: key.pemRepresentation, algorithm: .rs256) }
    }
}

/// Lease tokens verified by an independent JOSE library in another language (Python's joserfc,
/// which `.ci/run` installs), so other-language clients can rely on the format.
@Suite("Lease tokens across languages")
struct CrossLanguageTokenTests {
    @Test func joserfcVerifiesEveryAlgorithmAndRejectsForgeries() async throws {
        let now = SystemWallClock().now()
        let ed = try SigningKey.generate(.edDSA)
        let rsaPEM = LeaseTokenTests.rsaKeyPEM
        let rs = try SigningKey(pem: rsaPEM, algorithm: .rs256)
        let ps = try SigningKey(pem: rsaPEM, algorithm: .ps256)
        func claims(_ session: String, exp: Int64 = 86_400) -> LeaseClaims {
            LeaseClaims(issuer: "coditect-licensed", userID: "usr", tenantID: "acme", licenseID: "lic", sessionID: session,
                        hardwareHash: LeaseClaims.hardwareHash("hw"), features: [], issuedAt: now.secondsSinceEpoch,
                        notBefore: now.secondsSinceEpoch - 60, expiresAt: now.secondsSinceEpoch + exp, tokenID: "t-\(session)")
        }
        let valid = [try await LeaseToken.sign(claims("ed"), with: ed), try await LeaseToken.sign(claims("rs"), with: rs), try await LeaseToken.sign(claims("ps"), with: ps)]
        let parts = valid[0].split(separator: ".").map(String.init)
        var forgedClaims = claims("ed")
        forgedClaims.licenseID = "enterprise"
        let forged = parts[0] + "." + Base64URL.encode(try JSONEncoder().encode(forgedClaims)) + "." + parts[2]
        let expired = try await LeaseToken.sign(claims("old", exp: -3_600), with: ed)
        let stranger = try await LeaseToken.sign(claims("x"), with: try SigningKey.generate(.edDSA))

        let jwks = try JSONSerialization.jsonObject(with: Data(JWKS.encode([ed.verificationKey, rs.verificationKey, ps.verificationKey]).utf8))
        let input = try JSONSerialization.data(withJSONObject: [
            "jwks": jwks, "issuer": "coditect-licensed", "now": now.secondsSinceEpoch,
            "valid": valid, "invalid": [forged, expired, stranger],
        ] as [String: Any])

        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Tools/verify_lease_tokens.py").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script]
        let stdin = Pipe(), stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        try process.run()
        stdin.fileHandleForWriting.write(input)
        try stdin.fileHandleForWriting.close()
        let output = String(decoding: stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "joserfc disagreed:\n\(output)")
        #expect(output.split(separator: "\n").filter { $0.hasPrefix("ok") }.count == 6, "\(output)")
    }
}
