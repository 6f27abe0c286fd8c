import BackendTestSupport
import Foundation
import Testing

/// `licensectl` end to end: the built binary against a running daemon, through a profile.
@Suite("licensectl end to end", .serialized, .timeLimit(.minutes(3)))
struct LicensectlTests {
    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// The binary `swift build` produced next to this test bundle.
    static var binary: String {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/licensectl").path
    }

    func licensectl(_ arguments: [String], home: String, extraEnvironment: [String: String] = [:]) throws -> Run {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("LICENSECTL_") }
        environment["HOME"] = home
        environment["LICENSECTL_CONFIG"] = home + "/licensectl.json"
        environment.merge(extraEnvironment) { _, new in new }
        process.environment = environment
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Run(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
    }

    func json(_ run: Run) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], "\(run.stdout) \(run.stderr)")
    }

    @Test func operatesATenantThroughAProfile() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary), "build first: swift build --build-tests")
        let home = try makeTemporaryDirectory("licensectl")
        defer { try? FileManager.default.removeItem(atPath: home) }
        try await TestServer.run { server in
            let keyFile = home + "/operator.key"
            try TestServer.bootstrapKey.write(toFile: keyFile, atomically: true, encoding: .utf8)
            let saved = try licensectl(["profile", "set", "local", "--server", "127.0.0.1:\(server.port)", "--ca", server.caFile, "--api-key-file", keyFile], home: home)
            #expect(saved.status == 0 && saved.stdout.contains("(current)"), "\(saved.stderr)")
            let mode = try FileManager.default.attributesOfItem(atPath: home + "/licensectl.json")[.posixPermissions] as? Int
            #expect(mode == 0o600)

            // Daily commands carry no connection flags.
            let tenant = try licensectl(["tenant", "create", "Acme Corp", "--id", "acme"], home: home)
            #expect(tenant.status == 0 && tenant.stdout.contains("Acme Corp"), "\(tenant.stderr)")
            let license = try licensectl(["license", "create", "--tenant", "acme", "--seats", "2", "--id", "acme-pro", "--features", "ai,sync", "--valid-until", "2099-12-31"], home: home)
            #expect(license.status == 0 && license.stdout.contains("ai, sync"), "\(license.stderr)")
            let user = try json(try licensectl(["user", "create", "--tenant", "acme", "--name", "Alice", "--email", "alice@acme.com", "--output", "json"], home: home))
            let apiKey = try #require(user["api_key"] as? String)
            #expect(apiKey.hasPrefix("lk_") && user["email"] as? String == "alice@acme.com")

            // A seat taken by Alice shows in status (table for people, JSON for scripts).
            let alice = try await server.connect(apiKey: apiKey)
            let session = try await alice.acquire(licenseID: "acme-pro", hardwareID: "alice-laptop").sessionID
            let status = try licensectl(["status"], home: home)
            #expect(status.stdout.split(separator: "\n").first?.hasPrefix("LICENSE") == true)
            #expect(status.stdout.contains("acme-pro") && status.stdout.contains(" 1 "), "\(status.stdout)")
            let updated = try json(try licensectl(["license", "update", "acme-pro", "--seats", "5", "--valid-until", "none", "--output", "json"], home: home))
            #expect(updated["seats"] as? Int == 5 && updated["valid_until_ms"] == nil)
            let sessions = try licensectl(["session", "list", "--license", "acme-pro"], home: home)
            #expect(sessions.stdout.contains(session))
            let revoked = try licensectl(["session", "revoke", session], home: home)
            #expect(revoked.status == 0, "\(revoked.stderr)")
            let audit = try json(try licensectl(["audit", "--tenant", "acme", "--action", "session.", "--since", "1h", "--output", "json"], home: home))
            let actions = (audit["events"] as? [[String: Any]] ?? []).compactMap { $0["action"] as? String }
            #expect(actions == ["session.revoke", "session.acquire"])
            await alice.close()

            // Errors are one line with the status and reason, and a distinct exit status.
            let missing = try licensectl(["license", "show", "nope"], home: home)
            #expect(missing.status == 1 && missing.stderr == "licensectl: NOT_FOUND LICENSE_UNKNOWN: license not found\n")
            let badKey = try licensectl(["status"], home: home, extraEnvironment: ["LICENSECTL_API_KEY": "lk_not_a_real_key_000000000"])
            #expect(badKey.status == 3 && badKey.stderr.hasPrefix("licensectl: UNAUTHENTICATED INVALID_CREDENTIAL"))
            #expect(!badKey.stderr.contains("lk_not_a_real_key"))
            let noProfile = try licensectl(["status", "--profile", "prod"], home: home)
            #expect(noProfile.status == 1 && noProfile.stderr.contains("no profile 'prod'") && noProfile.stderr.contains("profiles: local"))
            let badDate = try licensectl(["license", "update", "acme-pro", "--valid-until", "soon"], home: home)
            #expect(badDate.status != 0 && badDate.stderr.contains("--valid-until must be a date"))

            // --help explains with examples.
            for command in [[], ["license"], ["audit"], ["key"], ["profile"]] {
                let help = try licensectl(command + ["--help"], home: home)
                #expect(help.status == 0 && help.stdout.contains("Examples:"), "\(command)")
            }
        }
    }
}
