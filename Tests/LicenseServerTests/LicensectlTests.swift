import BackendTestSupport
import Foundation
import LicenseClient
import LicenseCore
import LicenseServer
import LicenseWire
import Testing

/// `licensectl` end to end: the built binary against a running daemon, through a profile.
@Suite("licensectl end to end", .serialized, .timeLimit(.minutes(3)))
struct LicensectlTests {
    typealias Run = CommandRun

    /// The binary `swift build` produced next to this test bundle.
    static var binary: String {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/licensectl").path
    }

    func licensectl(_ arguments: [String], home: String, extraEnvironment: [String: String] = [:]) async throws -> Run {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("LICENSECTL_") }
        environment["HOME"] = home
        environment["LICENSECTL_CONFIG"] = home + "/licensectl.json"
        environment.merge(extraEnvironment) { _, new in new }
        return try await CommandRun.run(Self.binary, arguments, environment: environment)
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
            let saved = try await licensectl(["profile", "set", "local", "--server", "127.0.0.1:\(server.port)", "--ca", server.caFile, "--api-key-file", keyFile], home: home)
            #expect(saved.status == 0 && saved.stdout.contains("(current)"), "\(saved.stderr)")
            let mode = try FileManager.default.attributesOfItem(atPath: home + "/licensectl.json")[.posixPermissions] as? Int
            #expect(mode == 0o600)

            // Daily commands carry no connection flags.
            let tenant = try await licensectl(["tenant", "create", "Acme Corp", "--id", "acme"], home: home)
            #expect(tenant.status == 0 && tenant.stdout.contains("Acme Corp"), "\(tenant.stderr)")
            let license = try await licensectl(["license", "create", "--tenant", "acme", "--seats", "2", "--id", "acme-pro", "--features", "ai,sync", "--valid-until", "2099-12-31"], home: home)
            #expect(license.status == 0 && license.stdout.contains("ai, sync"), "\(license.stderr)")
            let user = try json(try await licensectl(["user", "create", "--tenant", "acme", "--name", "Alice", "--email", "alice@acme.com", "--output", "json"], home: home))
            let apiKey = try #require(user["api_key"] as? String)
            #expect(apiKey.hasPrefix("lk_") && user["email"] as? String == "alice@acme.com")

            // A seat taken by Alice shows in status (table for people, JSON for scripts).
            let alice = try await server.connect(apiKey: apiKey)
            let session = try await alice.acquire(licenseID: "acme-pro", hardwareID: "alice-laptop").sessionID
            let status = try await licensectl(["status"], home: home)
            #expect(status.stdout.split(separator: "\n").first?.hasPrefix("LICENSE") == true)
            #expect(status.stdout.contains("acme-pro") && status.stdout.contains(" 1 "), "\(status.stdout)")
            let updated = try json(try await licensectl(["license", "update", "acme-pro", "--seats", "5", "--valid-until", "none", "--output", "json"], home: home))
            #expect(updated["seats"] as? Int == 5 && updated["valid_until_ms"] == nil)
            let sessions = try await licensectl(["session", "list", "--license", "acme-pro"], home: home)
            #expect(sessions.stdout.contains(session))
            let revoked = try await licensectl(["session", "revoke", session], home: home)
            #expect(revoked.status == 0, "\(revoked.stderr)")
            let audit = try json(try await licensectl(["audit", "--tenant", "acme", "--action", "session.", "--since", "1h", "--output", "json"], home: home))
            let actions = (audit["events"] as? [[String: Any]] ?? []).compactMap { $0["action"] as? String }
            #expect(actions == ["session.revoke", "session.acquire"])
            await alice.close()

            // Errors are one line with the status and reason, and a distinct exit status.
            let missing = try await licensectl(["license", "show", "nope"], home: home)
            #expect(missing.status == 1 && missing.stderr == "licensectl: NOT_FOUND LICENSE_UNKNOWN: license 'nope' not found\n")
            let badKey = try await licensectl(["status"], home: home, extraEnvironment: ["LICENSECTL_API_KEY": "lk_not_a_real_key_000000000"])
            #expect(badKey.status == 3 && badKey.stderr.hasPrefix("licensectl: UNAUTHENTICATED INVALID_CREDENTIAL"))
            #expect(!badKey.stderr.contains("lk_not_a_real_key"))
            let noProfile = try await licensectl(["status", "--profile", "prod"], home: home)
            #expect(noProfile.status == 1 && noProfile.stderr.contains("no profile 'prod'") && noProfile.stderr.contains("profiles: local"))
            let badDate = try await licensectl(["license", "update", "acme-pro", "--valid-until", "soon"], home: home)
            #expect(badDate.status != 0 && badDate.stderr.contains("--valid-until must be a date"))

            // --help explains with examples.
            for command in [[], ["license"], ["audit"], ["key"], ["profile"]] {
                let help = try await licensectl(command + ["--help"], home: home)
                #expect(help.status == 0 && help.stdout.contains("Examples:"), "\(command)")
            }
        }
    }

    /// Fills the repository behind `server` with `sessions` live sessions of license
    /// `acme-pro` (tenant `t-acme-pro`, each with its `session.acquire` audit row) and `notes`
    /// more audit rows, many at a time.
    static func fill(_ server: TestServer, sessions: Int, notes: Int) async throws {
        let repository = server.service.repository
        let user = try #require(try await repository.users(tenant: "t-acme-pro").first)
        let now = server.clock.now()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<max(sessions, notes) {
                if index >= 64 { try await group.next() }
                group.addTask {
                    if index < sessions {
                        let id = SessionID(String(format: "ses_page%05d", index))
                        let session = LeaseSession(
                            id: id, tenantID: "t-acme-pro", licenseID: "acme-pro", userID: user.id, hardwareID: "hw-\(index)", idempotencyKey: "k-\(index)",
                            clientInfo: ["os": "linux", "app": "coditect"], createdAt: now.advanced(by: .milliseconds(Int64(index % 50))),
                            leaseExpiresAt: now.advanced(by: .seconds(86_400))
                        )
                        try await repository.insertSession(session, audit: AuditEvent(at: now, tenantID: "t-acme-pro", actor: user.id, action: "session.acquire", target: id.rawValue))
                    }
                    if index < notes {
                        try await repository.appendAudit(AuditEvent(at: now, tenantID: "t-acme-pro", actor: user.id, action: "note.page", target: "note-\(index)"))
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    @Test func listsOfThousandsArePagedAndFollowedToTheEnd() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary), "build first: swift build --build-tests")
        let home = try makeTemporaryDirectory("licensectl")
        defer { try? FileManager.default.removeItem(atPath: home) }
        try await TestServer.run { server in
            _ = try await server.setUpLicense(seats: 5_000, users: 1)
            try await Self.fill(server, sessions: 5_000, notes: 5_000)
            let keyFile = home + "/operator.key"
            try TestServer.bootstrapKey.write(toFile: keyFile, atomically: true, encoding: .utf8)
            _ = try await licensectl(["profile", "set", "local", "--server", "127.0.0.1:\(server.port)", "--ca", server.caFile, "--api-key-file", keyFile], home: home)

            // Every session, in pages that each fit a frame, newest first, none twice.
            let listed = try await licensectl(["session", "list", "--license", "acme-pro", "--output", "json"], home: home)
            #expect(listed.status == 0, "\(listed.stderr)")
            let sessions = try json(listed)["sessions"] as? [[String: Any]] ?? []
            let ids = sessions.compactMap { $0["session_id"] as? String }
            #expect(ids.count == 5_000 && Set(ids).count == 5_000)
            let created = sessions.compactMap { ($0["created_at_ms"] as? NSNumber)?.int64Value }
            #expect(created == created.sorted(by: >))
            let table = try await licensectl(["session", "list", "--license", "acme-pro"], home: home)
            #expect(table.stdout.split(separator: "\n").count == 5_001)
            let limited = try json(try await licensectl(["session", "list", "--license", "acme-pro", "--limit", "1234", "--output", "json"], home: home))
            #expect((limited["sessions"] as? [Any])?.count == 1_234)

            // 10,000 audit rows and more: all of them with --limit 0, exactly N with --limit N.
            let audit = try await licensectl(["audit", "--limit", "0", "--output", "json"], home: home)
            #expect(audit.status == 0, "\(audit.stderr)")
            let events = try json(audit)["events"] as? [[String: Any]] ?? []
            let eventIDs = events.compactMap { $0["id"] as? String }
            #expect(eventIDs.count >= 10_000 && Set(eventIDs).count == eventIDs.count)
            let acquires = try json(try await licensectl(["audit", "--tenant", "t-acme-pro", "--action", "session.acquire", "--limit", "0", "--output", "json"], home: home))
            #expect((acquires["events"] as? [Any])?.count == 5_000)
            let thousand = try json(try await licensectl(["audit", "--limit", "1000", "--output", "json"], home: home))
            #expect((thousand["events"] as? [Any])?.count == 1_000)
        }
    }

    @Test func aClientWithSmallFramesGetsSmallPagesAndAnAnswerThatCannotFitIsRefused() async throws {
        try await TestServer.run { server in
            _ = try await server.setUpLicense(seats: 500, users: 1)
            try await Self.fill(server, sessions: 500, notes: 0)
            var endpoint = server.endpoint
            endpoint.maxFrameBytes = 4096
            let small = try await LicenseConnection.connect(to: endpoint)
            try await small.hello(apiKey: TestServer.bootstrapKey)
            var token = "", pages = 0, seen = Set<String>()
            repeat {
                let page = try await small.call(.listSessions(.with { $0.licenseID = "acme-pro"; $0.pageSize = 1000; $0.pageToken = token })).sessions
                #expect(!page.sessions.isEmpty)
                seen.formUnion(page.sessions.map(\.sessionID))
                token = page.nextPageToken
                pages += 1
            } while !token.isEmpty
            #expect(seen.count == 500 && pages > 10)
            // A list that does not page (tenants) and outgrows the client's frames is refused, not sent.
            let admin = try await server.connect()
            for index in 0..<60 {
                _ = try await admin.call(.createTenant(.with { $0.id = "tenant-\(index)"; $0.name = String(repeating: "n", count: 80) }))
            }
            await #expect(throws: LicenseCallError.self) { _ = try await small.call(.listTenants(.init())) }
            do {
                _ = try await small.call(.listTenants(.init()))
            } catch let error as LicenseCallError {
                #expect(error.code == .resourceExhausted && error.reason == "ANSWER_TOO_LARGE")
            }
            // The connection goes on.
            #expect(try await small.call(.listSessions(.with { $0.licenseID = "acme-pro"; $0.pageSize = 1 })).sessions.sessions.count == 1)
            // A bad page token is a clear error.
            await #expect(throws: LicenseCallError.self) { _ = try await small.call(.listSessions(.with { $0.licenseID = "acme-pro"; $0.pageToken = "bogus" })) }
            // A client may not announce frames too small for any answer.
            var tiny = server.endpoint
            tiny.maxFrameBytes = 1024
            let refused = try await LicenseConnection.connect(to: tiny)
            await #expect(throws: LicenseCallError.self) { try await refused.hello(apiKey: TestServer.bootstrapKey) }
            await refused.close()
            await small.close()
            await admin.close()
        }
    }

    @Test func errorsPointAtTheirCause() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary), "build first: Tools/test.sh")
        let home = try makeTemporaryDirectory("licensectl")
        defer { try? FileManager.default.removeItem(atPath: home) }
        try await TestServer.run { server in
            let keyFile = home + "/operator.key"
            try TestServer.bootstrapKey.write(toFile: keyFile, atomically: true, encoding: .utf8)
            let address = "127.0.0.1:\(server.port)"
            func run(_ arguments: [String], ca: String? = nil) async throws -> Run {
                try await licensectl(arguments + ["--server", address, "--api-key-file", keyFile] + (ca.map { ["--ca", $0] } ?? []), home: home)
            }

            // A CA that did not sign the server's certificate: the cause, the file, and what to do.
            let other = try LocalCertificateAuthority.ensure(in: home + "/other-ca")
            let untrusted = try await run(["status"], ca: other.caCertificate)
            #expect(untrusted.status == 1)
            #expect(untrusted.stderr == "licensectl: FAILED_PRECONDITION TLS_UNTRUSTED: the server's certificate at \(address) is not signed by \(other.caCertificate); pass the CA the server printed at start (--ca FILE or LICENSECTL_CA)\n")
            let serverCertificate = (server.caFile as NSString).deletingLastPathComponent + "/server.pem"
            let certificateAsCA = try await run(["status"], ca: serverCertificate)
            #expect(certificateAsCA.status == 1 && certificateAsCA.stderr.contains("TLS_UNTRUSTED: the server's certificate at \(address) is not signed by \(serverCertificate)"), "\(certificateAsCA.stderr)")
            let noCA = try await run(["status"])
            #expect(noCA.status == 1 && noCA.stderr.contains("TLS_UNTRUSTED") && noCA.stderr.contains("no CA file was given"), "\(noCA.stderr)")
            let missingCA = try await run(["status"], ca: home + "/nope.pem")
            #expect(missingCA.status == 1 && missingCA.stderr.contains("no such file: \(home)/nope.pem"), "\(missingCA.stderr)")
            let missingKey = try await licensectl(["status", "--server", address, "--ca", server.caFile, "--api-key-file", home + "/nokey"], home: home)
            #expect(missingKey.status == 1 && missingKey.stderr.contains("no such file: \(home)/nokey"), "\(missingKey.stderr)")

            // Nothing listening: the address and the likely cause.
            let closedPort = try FreePort.next()
            let refused = try await licensectl(["status", "--server", "127.0.0.1:\(closedPort)", "--ca", server.caFile, "--api-key-file", keyFile], home: home)
            #expect(refused.status == 4 && refused.stderr.contains("is licensed running on 127.0.0.1:\(closedPort)?"), "\(refused.stderr)")

            // Numbers: a negative value is named as such, and is a usage error (64).
            let negative = try await run(["license", "create", "--tenant", "acme", "--seats", "-3"], ca: server.caFile)
            #expect(negative.status == 64 && negative.stderr.contains("--seats must be ≥ 0"), "\(negative.stderr)")

            // Duplicates and unknown ids name the id.
            #expect(try await run(["tenant", "create", "Acme", "--id", "acme"], ca: server.caFile).status == 0)
            let duplicate = try await run(["tenant", "create", "Acme again", "--id", "acme"], ca: server.caFile)
            #expect(duplicate.status == 1 && duplicate.stderr == "licensectl: ALREADY_EXISTS ALREADY_EXISTS: tenant 'acme' already exists\n", "\(duplicate.stderr)")
            let unknownTenant = try await run(["license", "create", "--tenant", "nope", "--seats", "1"], ca: server.caFile)
            #expect(unknownTenant.stderr.contains("tenant 'nope' not found"), "\(unknownTenant.stderr)")

            // `session list` with no filter lists what the caller may see, with user names.
            #expect(try await run(["license", "create", "--tenant", "acme", "--seats", "3", "--id", "acme-pro"], ca: server.caFile).status == 0)
            let user = try json(try await run(["user", "create", "--tenant", "acme", "--name", "Alice Example", "--output", "json"], ca: server.caFile))
            let alice = try await server.connect(apiKey: try #require(user["api_key"] as? String))
            let session = try await alice.acquire(licenseID: "acme-pro", hardwareID: "alice-laptop").sessionID
            let list = try await run(["session", "list"], ca: server.caFile)
            #expect(list.status == 0 && list.stdout.contains(session) && list.stdout.contains("Alice Example"), "\(list.stdout) \(list.stderr)")
            await alice.close()

            // Every leaf command's help shows an example, and the top level lists the exit statuses.
            let leaves = [
                ["tenant", "create"], ["tenant", "show"], ["tenant", "update"], ["tenant", "suspend"], ["tenant", "resume"], ["tenant", "list"],
                ["license", "create"], ["license", "show"], ["license", "update"], ["license", "suspend"], ["license", "resume"], ["license", "list"],
                ["user", "create"], ["user", "list"], ["user", "disable"], ["user", "enable"], ["session", "list"], ["session", "revoke"],
                ["key", "create"], ["key", "list"], ["key", "rotate"], ["key", "revoke"], ["signing-key", "rotate"], ["audit"], ["status"],
                ["profile", "set"], ["profile", "use"], ["profile", "list"],
            ]
            for leaf in leaves {
                let help = try await licensectl(leaf + ["--help"], home: home)
                #expect(help.status == 0 && help.stdout.contains("licensectl " + leaf.joined(separator: " ")) && help.stdout.contains("Example"), "\(leaf)")
            }
            let top = try await licensectl(["--help"], home: home)
            #expect(top.stdout.contains("64 usage error"))
        }
    }
}
