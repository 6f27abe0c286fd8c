#if canImport(Glibc)
import Glibc
#endif
import BackendTestSupport
import Crypto
import Foundation
import LicenseClient
import LicenseCore
import LicenseEmbedded
import LicensePostgres
import LicenseTokens
import Testing

/// Stored signing keys sealed with key-encryption keys, on real daemons: what a copy of the
/// database, the data folder or the logs holds afterwards is searched for the keys themselves.
@Suite("Key custody: key-encryption keys (real processes)", .serialized, .timeLimit(.minutes(3)))
struct KeyCustodyTests {
    static let k1 = Data((0..<32).map { UInt8($0) }), k2 = Data((0..<32).map { UInt8(255 - $0) })

    /// Writes the two KEKs: k1 in base64, k2 in hex (both forms the daemon reads).
    static func writeKEKs(in folder: String) throws -> (k1: String, k2: String) {
        let paths = (folder + "/kek-1", folder + "/kek-2")
        try (k1.base64EncodedString() + "\n").write(toFile: paths.0, atomically: true, encoding: .utf8)
        try Hex.encode(k2).write(toFile: paths.1, atomically: true, encoding: .utf8)
        return paths
    }

    /// What would give a signing key away: its PEM's marker, each line of its PEM body, its
    /// PKCS#8 DER, and that DER in base64 and base64url.
    static func secrets(of pems: [String]) -> [(name: String, bytes: Data)] {
        var found: [(String, Data)] = []
        for (index, pem) in pems.enumerated() {
            let body = pem.split(separator: "\n").filter { !$0.hasPrefix("-----") }
            for line in body { found.append(("key \(index) PEM line", Data(line.utf8))) }
            if let der = Data(base64Encoded: body.joined()) {
                found.append(("key \(index) DER", der))
                found.append(("key \(index) DER base64url", Data(Base64URL.encode(der).utf8)))
                if der.count == 48 { found.append(("key \(index) Ed25519 seed", der.suffix(32))) }
            }
        }
        return found
    }

    /// Every secret found in the files under `folder` (recursively) and in `extra` texts.
    static func leaks(of secrets: [(name: String, bytes: Data)], under folders: [String], texts: [String: Data] = [:]) -> [String] {
        var haystacks = texts
        for folder in folders {
            let enumerator = FileManager.default.enumerator(atPath: folder)
            while let relative = enumerator?.nextObject() as? String {
                let path = folder + "/" + relative
                if let data = FileManager.default.contents(atPath: path) { haystacks[path] = data }
            }
        }
        var leaks: [String] = []
        for (place, data) in haystacks {
            for secret in secrets where data.range(of: secret.bytes) != nil { leaks.append("\(secret.name) in \(place)") }
        }
        return leaks
    }

    /// Takes a lease and checks its token against the server's published keys.
    static func leaseVerifies(_ daemon: LicensedProcess, apiKey: String, machine: String) async throws {
        let connection = try await daemon.connect(apiKey: apiKey)
        let lease = try await connection.acquire(licenseID: "custody-pro", hardwareID: machine)
        let verifier = try await connection.tokenVerifier()
        let claims = try verifier.verify(lease.leaseToken, now: SystemWallClock().now(), hardwareID: machine)
        #expect(claims.sessionID == lease.sessionID)
        try await connection.release(sessionID: lease.sessionID)
        await connection.close()
    }

    static func rotateSigningKey(_ daemon: LicensedProcess) async throws {
        let admin = try await daemon.connect(apiKey: LicensedProcess.operatorKey)
        _ = try await admin.call(.rotateSigningKey(.init()))
        await admin.close()
    }

    @Test func embeddedKeysInTheClearAreSealedAtStartAndLeaveNoCopyInTheFolderTheDatabaseOrTheLog() async throws {
        let folder = try makeTemporaryDirectory("key-custody")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let keks = try Self.writeKEKs(in: folder)
        let daemon = try await LicensedProcess.start([])
        let database = daemon.dataDirectory + "/licensed.sqlite"
        let keyFile = daemon.dataDirectory + "/keys/lease-signing-eddsa.pem"
        let keys = try await daemon.setUpLicense("custody-pro", seats: 2, users: 1, leaseTTL: 60, heartbeat: 20)
        // Without a KEK the key is in the clear, in the file and in the database (the search works).
        let clearPEM = try String(contentsOfFile: keyFile, encoding: .utf8)
        #expect(!Self.leaks(of: Self.secrets(of: [clearPEM]), under: [daemon.dataDirectory]).isEmpty)

        // With a KEK: sealed at start, the generated key file removed; a rotation's new key is sealed too.
        #expect(await daemon.stop(signal: SIGTERM) != nil)
        try await daemon.launch(with: ["--kek", "k1=file:\(keks.k1)", "--log-level", "notice"])
        #expect(daemon.log().contains("sealed the stored signing keys with a key-encryption key"), "\(daemon.log().suffix(1500))")
        #expect(!FileManager.default.fileExists(atPath: keyFile))
        // Already while it runs: the replaced key's bytes are gone from the database's pages and
        // from the write-ahead log, not only after a clean shutdown's checkpoint.
        let whileRunning = Self.leaks(of: Self.secrets(of: [clearPEM]), under: [daemon.dataDirectory])
        #expect(whileRunning.isEmpty, "\(whileRunning)")
        try await Self.leaseVerifies(daemon, apiKey: keys[0], machine: "sealed-1")
        try await Self.rotateSigningKey(daemon)
        try await Self.leaseVerifies(daemon, apiKey: keys[0], machine: "sealed-2")
        #expect(await daemon.stop(signal: SIGTERM) != nil)

        // No copy of either key in the database file, its companions, the data folder or the log.
        let log = try Data(contentsOf: URL(fileURLWithPath: daemon.logFile))
        let files = try FileManager.default.contentsOfDirectory(atPath: daemon.dataDirectory)
        let pems = try await Self.openedKeys(database: database, keks: try KeyEncryptionKeys([(id: "k1", material: Self.k1)]))
        #expect(pems.count == 2 && pems.contains(clearPEM))
        let leaks = Self.leaks(of: Self.secrets(of: pems), under: [daemon.dataDirectory], texts: ["the log": log])
        #expect(leaks.isEmpty, "\(leaks) (data folder: \(files))")

        // A start without the KEK stops with one line naming it.
        let offset = daemon.log().utf8.count
        await #expect(throws: (any Error).self) { try await daemon.launch(with: []) }
        #expect(daemon.log(from: offset).contains("sealed with the key-encryption key 'k1', which is not configured"), "\(daemon.log(from: offset))")

        // Rewrap to k2 (k1 still opens), then k2 alone is enough.
        let rewrap = try await CommandRun.run(LicensedBinaryTests.binary, [
            "keys", "rewrap", "--data-dir", daemon.dataDirectory, "--kek", "k2=file:\(keks.k2)", "--kek", "k1=file:\(keks.k1)",
        ], environment: ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("LICENSED_") })
        #expect(rewrap.status == 0 && rewrap.output.contains("sealed 2 of 2 stored signing keys with 'k2' (0 were in the clear)"), "\(rewrap.output)")
        try await daemon.launch(with: ["--kek", "k2=file:\(keks.k2)"])
        try await Self.leaseVerifies(daemon, apiKey: keys[0], machine: "rewrapped")
        #expect(await daemon.stop(signal: SIGTERM) != nil)
    }

    @Test func postgresHoldsOnlySealedKeysAndADumpHoldsNoKeyMaterial() async throws {
        let postgres = try await PostgresTestServer.start()
        defer { postgres.stop() }
        let settings = try await postgres.createDatabase()
        let kek = Self.k1.base64EncodedString()
        let daemon = try await LicensedProcess.start(
            ["--postgres-url", PostgresTestServer.url(settings), "--migrate", "--kek", "prod=env:CUSTODY_TEST_KEK"],
            environment: ["CUSTODY_TEST_KEK": kek]
        )
        let keys = try await daemon.setUpLicense("custody-pro", seats: 2, users: 1, leaseTTL: 60, heartbeat: 20)
        try await Self.leaseVerifies(daemon, apiKey: keys[0], machine: "pg-1")
        try await Self.rotateSigningKey(daemon)
        try await Self.leaseVerifies(daemon, apiKey: keys[0], machine: "pg-2")
        #expect(await daemon.stop(signal: SIGTERM) != nil)

        let rows = try await postgres.superuser("SELECT kid, algorithm, private_pem, created_at_ms FROM signing_keys", database: settings.database)
        let stored = try rows.map { row in
            let (kid, algorithm, pem, created) = try row.decode((String, String, String, Int64).self)
            return StoredSigningKey(keyID: kid, algorithm: algorithm, privateKeyPEM: pem, createdAt: Timestamp(millisecondsSinceEpoch: created))
        }
        #expect(stored.count == 2 && stored.allSatisfy { KeyEncryptionKeys.sealingID(of: $0) == "prod" })
        let keks = try KeyEncryptionKeys([(id: "prod", material: Self.k1)])
        let pems = try stored.map(keks.open)
        let dump = try await CommandRun.run("pg_dump", ["-h", "127.0.0.1", "-p", "\(postgres.port)", "-U", "postgres", "--no-password", settings.database])
        try #require(dump.status == 0 && dump.stdout.contains("signing_keys"), "\(dump.stderr)")
        let log = try Data(contentsOf: URL(fileURLWithPath: daemon.logFile))
        let leaks = Self.leaks(of: Self.secrets(of: pems) + [("a PEM marker", Data("PRIVATE KEY".utf8))], under: [],
                               texts: ["pg_dump": Data(dump.stdout.utf8), "the log": log])
        #expect(leaks.isEmpty, "\(leaks)")
        // No key file in the data folder either (the key was generated straight into the repository).
        #expect(Self.leaks(of: Self.secrets(of: pems), under: [daemon.dataDirectory]).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: daemon.dataDirectory + "/keys/lease-signing-eddsa.pem"))
    }

    /// The stored keys of an embedded database, opened with `keks`.
    static func openedKeys(database: String, keks: KeyEncryptionKeys) async throws -> [String] {
        let repository = try await SQLiteLicenseRepository.open(path: database)
        let stored = try await repository.signingKeys()
        try await repository.close()
        #expect(stored.allSatisfy(KeyEncryptionKeys.isSealed), "\(stored.map(\.keyID))")
        return try stored.map(keks.open)
    }
}
