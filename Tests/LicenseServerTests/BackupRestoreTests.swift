#if canImport(Glibc)
import Glibc
#endif
import BackendTestSupport
import Foundation
import LicenseClient
import LicenseWire
import NIOConcurrencyHelpers
import Testing

/// `licensed backup` of an embedded daemon under load, and `licensed restore` into its data
/// folder: the restored daemon has every session and audit row answered OK before the backup began.
@Suite("Backup and restore", .serialized, .timeLimit(.minutes(3)))
struct BackupRestoreTests {
    static let license = "backup-pro"

    /// Every page of `list`, which returns one page and the next page's token for a token.
    static func allPages<Item>(_ list: (String) async throws -> ([Item], String)) async throws -> [Item] {
        var items: [Item] = [], token = ""
        repeat {
            let (page, next) = try await list(token)
            items += page
            token = next
        } while !token.isEmpty
        return items
    }

    @Test func aBackupTakenUnderLoadRestoresEverySessionAndAuditRowAnsweredBeforeIt() async throws {
        let daemon = try await LicensedProcess.start([])
        let keys = try await daemon.setUpLicense(Self.license, seats: 100_000, users: 4, leaseTTL: 3_600, heartbeat: 600)
        // Four clients acquire as fast as they can; each OK is noted with when it was answered.
        let answered = NIOLockedValueBox<[(session: String, at: ContinuousClock.Instant)]>([])
        let stop = NIOLockedValueBox(false)
        let backup = daemon.folder + "/backup.sqlite"
        var backupStarted = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, key) in keys.enumerated() {
                group.addTask {
                    let connection = try await daemon.connect(apiKey: key)
                    var n = 0
                    while !stop.withLockedValue({ $0 }) {
                        n += 1
                        let result = try await connection.acquire(licenseID: Self.license, hardwareID: "hw-\(index)-\(n)")
                        let now = ContinuousClock.now
                        answered.withLockedValue { $0.append((result.sessionID, now)) }
                    }
                    await connection.close()
                }
            }
            try await Task.sleep(for: .milliseconds(700))
            backupStarted = ContinuousClock.now
            let run = try await CommandRun.run(LicensedBinaryTests.binary, ["backup", "--data-dir", daemon.dataDirectory, "--out", backup])
            #expect(run.status == 0 && run.stdout.hasPrefix("backed up to"), "\(run.output)")
            try await Task.sleep(for: .milliseconds(300))
            stop.withLockedValue { $0 = true }
            try await group.waitForAll()
        }
        let before = Set(answered.withLockedValue { $0.filter { $0.at < backupStarted }.map(\.session) })
        let total = answered.withLockedValue { $0.count }
        print("backup under load: \(before.count) sessions answered before the backup began, \(total) in all")
        #expect(before.count > 50 && total > before.count, "the load ran before and during the backup")

        // Restore: stop the daemon, move its database away, restore, start it again on the folder.
        await daemon.stop(signal: SIGTERM)
        let refused = try await CommandRun.run(LicensedBinaryTests.binary, ["restore", "--data-dir", daemon.dataDirectory, "--from", backup])
        #expect(refused.status == 64 && refused.output.contains("never overwrites"), "\(refused.output)")
        let old = daemon.folder + "/old"
        try FileManager.default.createDirectory(atPath: old, withIntermediateDirectories: true)
        for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: daemon.dataDirectory + "/licensed.sqlite" + suffix) {
            try FileManager.default.moveItem(atPath: daemon.dataDirectory + "/licensed.sqlite" + suffix, toPath: old + "/licensed.sqlite" + suffix)
        }
        let restore = try await CommandRun.run(LicensedBinaryTests.binary, ["restore", "--data-dir", daemon.dataDirectory, "--from", backup])
        #expect(restore.status == 0 && restore.stdout.hasPrefix("restored"), "\(restore.output)")
        try await daemon.launch()

        // Every session and every session.acquire audit row answered before the backup is there.
        let admin = try await daemon.connect(apiKey: LicensedProcess.operatorKey)
        let sessions = try await Self.allPages { token in
            let page = try await admin.call(.listSessions(.with { $0.licenseID = Self.license; $0.includeEnded = true; $0.pageSize = 1000; $0.pageToken = token })).sessions
            return (page.sessions.map(\.sessionID), page.nextPageToken)
        }
        #expect(before.isSubset(of: Set(sessions)), "\(before.subtracting(sessions).count) sessions answered before the backup are missing")
        let audited = try await Self.allPages { token in
            let page = try await admin.call(.queryAudit(.with { $0.action = "session.acquire"; $0.limit = 1000; $0.pageToken = token })).auditEvents
            return (page.events.map(\.target), page.nextPageToken)
        }
        #expect(before.isSubset(of: Set(audited)), "\(before.subtracting(audited).count) acquire audit rows answered before the backup are missing")
        await admin.close()
        await daemon.stop(signal: SIGKILL)
    }
}
