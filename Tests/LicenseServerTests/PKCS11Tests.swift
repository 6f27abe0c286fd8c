#if canImport(Glibc)
import Glibc
#endif
import BackendTestSupport
import Foundation
import LicenseClient
import LicenseCore
import LicenseTokens
import LicenseWire
import Testing

/// A SoftHSM2 token in a folder of its own (Debian's softhsm2, keys made with OpenSC's
/// pkcs11-tool, both installed by the test command): a real PKCS#11 module, loaded by the daemon
/// with dlopen like any HSM's or KMS's.
struct SoftHSMToken {
    static let module = "/usr/lib/softhsm/libsofthsm2.so"
    static let label = "licensed-test"
    let folder: String

    var environment: [String: String] { ["SOFTHSM2_CONF": folder + "/softhsm2.conf"] }
    var tokens: String { folder + "/tokens" }

    /// A new token holding key pairs: (label, pkcs11-tool key type, e.g. EC:edwards25519, rsa:2048).
    static func make(_ keys: [(label: String, type: String)]) async throws -> SoftHSMToken {
        let token = SoftHSMToken(folder: try makeTemporaryDirectory("softhsm"))
        try FileManager.default.createDirectory(atPath: token.tokens, withIntermediateDirectories: true)
        try "directories.tokendir = \(token.tokens)\nobjectstore.backend = file\nlog.level = ERROR\n"
            .write(toFile: token.folder + "/softhsm2.conf", atomically: true, encoding: .utf8)
        try "1234\n".write(toFile: token.folder + "/pin", atomically: true, encoding: .utf8)
        try await token.run("softhsm2-util", ["--init-token", "--free", "--label", label, "--pin", "1234", "--so-pin", "5678"])
        for (index, key) in keys.enumerated() {
            try await token.run("pkcs11-tool", ["--module", module, "--token-label", label, "--login", "--pin", "1234",
                                                "--keypairgen", "--key-type", key.type, "--label", key.label, "--id", String(format: "%02x", index + 1)])
        }
        return token
    }

    func run(_ tool: String, _ arguments: [String]) async throws {
        let result = try await CommandRun.run(tool, arguments, environment: ProcessInfo.processInfo.environment.merging(environment) { $1 })
        guard result.status == 0 else { throw TestServerError("\(tool) \(arguments.joined(separator: " ")): \(result.output)") }
    }

    /// The labels of the private keys in the token.
    func privateKeyLabels() async throws -> [String] {
        let result = try await CommandRun.run("pkcs11-tool", ["--module", Self.module, "--token-label", Self.label, "--login", "--pin", "1234", "--list-objects", "--type", "privkey"],
                                              environment: ProcessInfo.processInfo.environment.merging(environment) { $1 })
        return result.stdout.split(separator: "\n").compactMap { line in
            line.contains("label:") ? line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } : nil
        }
    }

    /// The `--signing-key` URI of a key, with the PIN from a file.
    func uri(_ object: String, pin: String? = nil) -> String {
        "pkcs11:token=\(Self.label);object=\(object)?module-path=\(Self.module)&pin-source=file:\(pin ?? folder + "/pin")"
    }
}

/// Lease tokens signed in a PKCS#11 token (SoftHSM2) by real daemons.
@Suite("Key custody: PKCS#11 (SoftHSM2, real processes)", .serialized, .timeLimit(.minutes(5)))
struct PKCS11Tests {
    /// Starts a daemon signing with `uri`, sets up a license, takes a lease; returns the daemon,
    /// the user's key and the lease's token.
    static func start(_ token: SoftHSMToken, _ arguments: [String]) async throws -> (LicensedProcess, [String]) {
        let daemon = try await LicensedProcess.start(arguments, environment: token.environment)
        let keys = try await daemon.setUpLicense("hsm-pro", seats: 2, users: 1, leaseTTL: 60, heartbeat: 20)
        return (daemon, keys)
    }

    static func lease(_ daemon: LicensedProcess, _ apiKey: String, machine: String) async throws -> (token: String, jwks: String, session: String) {
        let connection = try await daemon.connect(apiKey: apiKey)
        let lease = try await connection.acquire(licenseID: "hsm-pro", hardwareID: machine)
        let jwks = try await connection.signingKeysJSON()
        try await connection.release(sessionID: lease.sessionID)
        await connection.close()
        return (lease.leaseToken, jwks, lease.sessionID)
    }

    /// Verifies tokens with Python's joserfc (Tools/verify_lease_tokens.py), an independent JOSE implementation.
    static func joserfcAccepts(_ tokens: [String], jwks: String) async throws -> String {
        let input = try JSONSerialization.data(withJSONObject: [
            "jwks": try JSONSerialization.jsonObject(with: Data(jwks.utf8)), "issuer": "coditect-licensed",
            "now": SystemWallClock().now().secondsSinceEpoch, "valid": tokens, "invalid": [String](),
        ] as [String: Any])
        let file = try makeTemporaryDirectory("joserfc") + "/input.json"
        try input.write(to: URL(fileURLWithPath: file))
        let run = try await CommandRun.run("/bin/sh", ["-c", "python3 \(PackagingTests.root)/Tools/verify_lease_tokens.py < \(file)"])
        #expect(run.status == 0, "joserfc refused: \(run.output)")
        return run.stdout
    }

    static func header(_ token: String) throws -> [String: String] {
        let data = try #require(Base64URL.decode(token.split(separator: ".")[0]))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: String])
    }

    @Test(arguments: [("ed-1", "EdDSA"), ("rsa-1", "RS256"), ("rsa-1", "PS256")])
    func tokensSignedInTheTokenVerifyWithAnIndependentJOSELibrary(_ object: String, _ algorithm: String) async throws {
        let token = try await SoftHSMToken.make([("ed-1", "EC:edwards25519"), ("rsa-1", "rsa:2048")])
        defer { try? FileManager.default.removeItem(atPath: token.folder) }
        let (daemon, keys) = try await Self.start(token, ["--signing-key", token.uri(object), "--signing-alg", algorithm])
        let lease = try await Self.lease(daemon, keys[0], machine: "hsm-\(algorithm)")
        #expect(try Self.header(lease.token)["alg"] == algorithm)
        let verified = try LeaseTokenVerifier(keys: try JWKS.decode(lease.jwks), issuer: "coditect-licensed")
            .verify(lease.token, now: SystemWallClock().now(), hardwareID: "hsm-\(algorithm)")
        #expect(verified.sessionID == lease.session)
        let joserfc = try await Self.joserfcAccepts([lease.token], jwks: lease.jwks)
        #expect(joserfc.hasPrefix("ok"), "\(joserfc)")
        // The repository holds the key's URI, with no PIN and no key material.
        #expect(await daemon.stop(signal: SIGTERM) != nil)
        let database = try Data(contentsOf: URL(fileURLWithPath: daemon.dataDirectory + "/licensed.sqlite"))
        #expect(database.range(of: Data("pkcs11:token=licensed-test;object=\(object)".utf8)) != nil)
        #expect(database.range(of: Data("PRIVATE KEY".utf8)) == nil && database.range(of: Data("1234".utf8)) == nil)
        #expect(!FileManager.default.fileExists(atPath: daemon.dataDirectory + "/keys"))
    }

    @Test func rotationToAnotherObjectOrToAKeyMadeInTheTokenKeepsTheOldKeyPublished() async throws {
        let token = try await SoftHSMToken.make([("ed-1", "EC:edwards25519"), ("ed-2", "EC:edwards25519")])
        defer { try? FileManager.default.removeItem(atPath: token.folder) }
        let (daemon, keys) = try await Self.start(token, ["--signing-key", token.uri("ed-1")])
        let first = try await Self.lease(daemon, keys[0], machine: "m-1")
        // The operator points the daemon at a new object: it rotates; the old key stays published.
        #expect(await daemon.stop(signal: SIGTERM) != nil)
        try await daemon.launch(with: ["--signing-key", token.uri("ed-2")])
        let second = try await Self.lease(daemon, keys[0], machine: "m-2")
        #expect(try Self.header(first.token)["kid"] != Self.header(second.token)["kid"])
        // A rotation (operator or scheduled) makes the next key inside the token.
        let admin = try await daemon.connect(apiKey: LicensedProcess.operatorKey)
        let rotation = try await admin.call(.rotateSigningKey(.init())).signingKeyRotation
        await admin.close()
        let third = try await Self.lease(daemon, keys[0], machine: "m-3")
        #expect(try Self.header(third.token)["kid"] == rotation.keyID)
        let labels = try await token.privateKeyLabels()
        #expect(labels.count == 3 && labels.contains { $0.hasPrefix("licensed-eddsa-") }, "\(labels)")
        // Every token verifies against the JWKS, with our verifier and joserfc.
        let jwks = try JWKS.decode(third.jwks)
        #expect(jwks.count == 3)
        for (lease, machine) in [(first, "m-1"), (second, "m-2"), (third, "m-3")] {
            _ = try LeaseTokenVerifier(keys: jwks, issuer: "coditect-licensed").verify(lease.token, now: SystemWallClock().now(), hardwareID: machine)
        }
        let joserfc = try await Self.joserfcAccepts([first.token, second.token, third.token], jwks: third.jwks)
        #expect(joserfc.split(separator: "\n").filter { $0.hasPrefix("ok") }.count == 3, "\(joserfc)")
        #expect(await daemon.stop(signal: SIGTERM) != nil)
    }

    @Test func aTokenThatIsGoneAnswersUnavailableFastAndHeartbeatsGoOn() async throws {
        let token = try await SoftHSMToken.make([("ed-1", "EC:edwards25519")])
        defer { try? FileManager.default.removeItem(atPath: token.folder) }
        let (daemon, keys) = try await Self.start(token, ["--signing-key", token.uri("ed-1")])
        let connection = try await daemon.connect(apiKey: keys[0])
        let held = try await connection.acquire(licenseID: "hsm-pro", hardwareID: "held")
        // The token's folder disappears (a module whose HSM is unplugged or whose KMS is unreachable).
        try FileManager.default.removeItem(atPath: token.tokens)
        let started = ContinuousClock.now
        do {
            _ = try await connection.acquire(licenseID: "hsm-pro", hardwareID: "after")
            Issue.record("an acquire was signed by a token that is gone")
        } catch let error as LicenseCallError {
            #expect(error.code == .unavailable && error.reason == "SIGNING_UNAVAILABLE" && error.retryAfterMs > 0, "\(error)")
        }
        #expect(started.duration(to: .now) < .seconds(5))
        // A heartbeat that needs no new token keeps working, and the failed acquire's seat was given back.
        _ = try await connection.heartbeat(sessionID: held.sessionID, tokenExpiresAtMs: held.tokenExpiresAtMs)
        let admin = try await daemon.connect(apiKey: LicensedProcess.operatorKey)
        var status = Coditect_License_V1_LicenseStatusRequest()
        status.licenseID = "hsm-pro"
        let usage = try await admin.call(.licenseStatus(status)).licenseStatus.licenses.first
        #expect(usage?.seatsUsed == 1, "\(String(describing: usage))")
        await admin.close()
        await connection.close()
        #expect(await daemon.stop(signal: SIGTERM) != nil)
    }

    @Test func aWrongPINAMissingModuleOrAMissingObjectStopsTheStartWithOneLine() async throws {
        let token = try await SoftHSMToken.make([("ed-1", "EC:edwards25519")])
        defer { try? FileManager.default.removeItem(atPath: token.folder) }
        try "9999\n".write(toFile: token.folder + "/wrong-pin", atomically: true, encoding: .utf8)
        let cases: [(uri: String, says: String)] = [
            (token.uri("ed-1", pin: token.folder + "/wrong-pin"), "the PIN for PKCS#11 token 'licensed-test' is wrong"),
            (token.uri("ed-1").replacingOccurrences(of: SoftHSMToken.module, with: "/nonexistent/libpkcs11.so"), "cannot load the PKCS#11 module /nonexistent/libpkcs11.so"),
            (token.uri("no-such-key"), "no private key 'no-such-key' in PKCS#11 token 'licensed-test'"),
            (token.uri("ed-1").replacingOccurrences(of: "token=licensed-test", with: "token=elsewhere"), "no PKCS#11 token labelled 'elsewhere'"),
            (token.uri("ed-1") + "&pin-value=1234", "a PIN in the URI (pin-value)"),
        ]
        for (uri, says) in cases {
            let run = try await CommandRun.run(LicensedBinaryTests.binary, [
                "--data-dir", token.folder + "/data", "--listen", "127.0.0.1:0", "--ops-listen", "none", "--signing-key", uri,
            ], environment: ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("LICENSED_") }.merging(token.environment) { $1 })
            #expect(run.status != 0 && run.stderr.contains(says), "\(uri): \(run.output)")
            #expect(!run.output.contains("1234"), "a PIN was printed: \(run.output)")
            let errorLines = run.stderr.split(separator: "\n").filter { $0.hasPrefix("Error:") }
            #expect(errorLines.count == 1, "\(run.stderr)")
        }
    }
}
