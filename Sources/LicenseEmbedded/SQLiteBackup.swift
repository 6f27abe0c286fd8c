import Foundation
import LicenseCore
import Logging
import SQLiteNIO

/// Backups of the embedded database: a consistent copy taken while the daemon serves, and its
/// restore into a data folder.
///
/// The copy is made by SQLite itself (`VACUUM INTO`): one read transaction sees the database as
/// of one commit, so the copy holds every transaction committed before it began and none of
/// the ones committing meanwhile, and the daemon keeps writing (the database is in WAL mode).
/// A copy of the files would not be consistent: the WAL and the main file change while they are
/// read.
public enum SQLiteBackup {
    /// What a backup holds.
    public struct Summary: Sendable, CustomStringConvertible {
        public var schemaVersion: Int
        public var licenses: Int
        public var sessions: Int
        public var auditEvents: Int
        public var signingKeys: Int

        public var description: String {
            "schema version \(schemaVersion): \(licenses) licenses, \(sessions) sessions, \(auditEvents) audit events, \(signingKeys) signing keys"
        }
    }

    /// Copies the database at `database` into a new file `out` (mode 0600) while it may be in
    /// use, checks the copy, and says what it holds.
    public static func backup(database: String, to out: String, logger: Logger = Logger(label: "coditect.license.backup")) async throws -> Summary {
        let fm = FileManager.default
        guard fm.fileExists(atPath: database) else {
            throw LicenseError(.failedPrecondition, .invalidRequest, "there is no database at \(database); is --data-dir the daemon's data folder?")
        }
        guard !fm.fileExists(atPath: out) else {
            throw LicenseError(.alreadyExists, .alreadyExists, "\(out) exists already; name a new file")
        }
        let connection = try await SQLiteConnection.open(storage: .file(path: database), logger: logger)
        do {
            _ = try await connection.query("PRAGMA busy_timeout=5000")
            _ = try await connection.query("VACUUM INTO ?", [.text(out)])
            try await connection.close()
        } catch {
            try? await connection.close()
            try? fm.removeItem(atPath: out)
            throw LicenseError(.unavailable, .backendUnavailable, "the backup of \(database) failed: \(error)")
        }
        try fm.setAttributes([.posixPermissions: 0o600], ofItemAtPath: out)
        return try await check(out, logger: logger)
    }

    /// Installs the backup `file` as the database at `database`, which must not exist yet (a
    /// restore never overwrites a database: move the old one away first). The backup is checked
    /// first; the daemon started on the folder afterwards applies any newer migrations.
    public static func restore(from file: String, to database: String, logger: Logger = Logger(label: "coditect.license.backup")) async throws -> Summary {
        let fm = FileManager.default
        for existing in [database, database + "-wal"] where fm.fileExists(atPath: existing) {
            throw LicenseError(.alreadyExists, .alreadyExists, "\(existing) exists; a restore never overwrites a database: stop the daemon and move the data folder's database away first")
        }
        let summary = try await check(file, logger: logger)
        try fm.copyItem(atPath: file, toPath: database)
        try fm.setAttributes([.posixPermissions: 0o600], ofItemAtPath: database)
        return summary
    }

    /// Checks that `file` is an intact licensed database and counts what it holds.
    public static func check(_ file: String, logger: Logger = Logger(label: "coditect.license.backup")) async throws -> Summary {
        guard FileManager.default.fileExists(atPath: file) else {
            throw LicenseError(.failedPrecondition, .invalidRequest, "there is no backup at \(file)")
        }
        let connection = try await SQLiteConnection.open(storage: .file(path: file), logger: logger)
        do {
            let summary = try await summarize(connection, file: file)
            try await connection.close()
            return summary
        } catch {
            try? await connection.close()
            if let error = error as? LicenseError { throw error }
            throw LicenseError(.failedPrecondition, .invalidRequest, "\(file) is not a licensed database")
        }
    }

    private static func summarize(_ connection: SQLiteConnection, file: String) async throws -> Summary {
        func count(_ sql: String) async throws -> Int {
            Int(try await connection.query(sql).first?.column("n")?.integer ?? 0)
        }
        _ = try await connection.query("PRAGMA query_only=ON")
        let integrity = try await connection.query("PRAGMA integrity_check").first?.column("integrity_check")?.string
        guard integrity == "ok" else {
            throw LicenseError(.failedPrecondition, .invalidRequest, "\(file) is damaged (integrity check: \(integrity ?? "no answer"))")
        }
        return Summary(
            schemaVersion: try await count("SELECT COALESCE(MAX(version), 0) AS n FROM schema_migrations"),
            licenses: try await count("SELECT COUNT(*) AS n FROM licenses"),
            sessions: try await count("SELECT COUNT(*) AS n FROM sessions"),
            auditEvents: try await count("SELECT COUNT(*) AS n FROM audit_log"),
            signingKeys: try await count("SELECT COUNT(*) AS n FROM signing_keys")
        )
    }
}
