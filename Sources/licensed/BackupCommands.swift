import ArgumentParser
import Foundation
import LicenseCore
import LicenseEmbedded
import LicenseServer

/// `licensed backup`: a consistent copy of the embedded database, taken while the daemon serves.
struct Backup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy the embedded database (SQLite) consistently while the server runs.",
        discussion: """
        Writes one file (mode 0600) holding everything committed before the copy began: tenants, \
        licenses, users, API key hashes, sessions, the audit log and the signing keys. Keep it as \
        safe as the data folder. Seats need no backup: they are rebuilt from the sessions. With \
        Postgres, use pg_dump or point-in-time recovery instead (docs/operations.md, "Backup and restore").

        Example:
          licensed backup --data-dir /var/lib/licensed --out /backups/licensed-2027-01-01.sqlite
        """
    )

    @OptionGroup var common: CommonOptions
    @Option(help: "The backup file to write (must not exist).") var out: String

    func run() async throws {
        let settings = try common.settings()
        guard settings.postgres == nil else {
            throw ValidationError("the repository is Postgres: back it up with pg_dump or point-in-time recovery (docs/operations.md, \"Backup and restore\")")
        }
        do {
            let summary = try await SQLiteBackup.backup(database: settings.dataDirectory + "/licensed.sqlite", to: out, logger: try common.makeLogger())
            print("backed up to \(out): \(summary)")
        } catch let error as LicenseError {
            throw ValidationError(error.message)
        }
    }
}

/// `licensed restore`: installs a backup as the embedded database of a data folder.
struct Restore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Install a backup as the embedded database of a data folder (never over an existing one).",
        discussion: """
        Checks the backup, then copies it into the data folder, which must hold no database yet: \
        stop the daemon and move the old database (licensed.sqlite and its -wal and -shm files) away \
        first. Start the daemon on the folder afterwards; it applies newer migrations and rebuilds \
        the seats of live sessions. TLS files are not in the backup: a folder without them gets a \
        new local CA, which clients must then trust (or give --tls-cert and --tls-key).

        Example:
          licensed restore --data-dir /var/lib/licensed --from /backups/licensed-2027-01-01.sqlite
        """
    )

    @OptionGroup var common: CommonOptions
    @Option(help: "The backup file to install.") var from: String

    func run() async throws {
        let settings = try common.settings()
        guard settings.postgres == nil else {
            throw ValidationError("the repository is Postgres: restore it with pg_restore or point-in-time recovery (docs/operations.md, \"Backup and restore\")")
        }
        do {
            try makePrivateDirectory(settings.dataDirectory)
            let summary = try await SQLiteBackup.restore(from: from, to: settings.dataDirectory + "/licensed.sqlite", logger: try common.makeLogger())
            print("restored \(from) into \(settings.dataDirectory): \(summary)")
        } catch let error as LicenseError {
            throw ValidationError(error.message)
        }
    }
}
