import ArgumentParser
import Foundation
import LicenseCore
import LicenseServer
import LicenseTokens
import Logging

/// `licensed keys`: the stored lease-signing keys' custody.
struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage how the stored lease-signing keys are kept (key-encryption keys).",
        subcommands: [Rewrap.self]
    )

    /// `licensed keys rewrap`: every stored key sealed with the first key-encryption key.
    struct Rewrap: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Seal every stored signing key with the first --kek (opening each with any --kek).",
            discussion: """
            Moves the stored keys to a new key-encryption key: put the new KEK first and the old one \
            after it, run this, then drop the old KEK from the servers' settings. Keys stored in the \
            clear are sealed too. One commit, audited as signing_key.rewrap. Replicas may keep \
            running: they hold their keys open in memory and open the rewrapped ones with either KEK.

            Example:
              licensed keys rewrap --postgres-url postgres://licensed:pw@db/licenses --kek k2=file:/etc/licensed/kek-2 --kek k1=file:/etc/licensed/kek-1
            """
        )

        @OptionGroup var common: CommonOptions

        func run() async throws {
            var settings = try common.settings()
            settings.migrateOnStart = false
            let encryption = settings.keyEncryption
            guard let kek = encryption.sealingID else {
                throw ValidationError("give the key-encryption key to seal with first: --kek ID=file:PATH (and the old ones after it)")
            }
            let logger = try common.makeLogger()
            let summary: String
            do {
                summary = try await Self.rewrap(settings, kek: kek, logger: logger)
            } catch let error as LicenseError {
                throw LicensedFailure(error.message)
            }
            print(summary)
        }

        static func rewrap(_ settings: ServerEnvironment.Settings, kek: String, logger: Logger) async throws -> String {
            let encryption = settings.keyEncryption
            return try await ServerEnvironment.withRepository(settings, logger: logger) { repository in
                let stored = try await repository.signingKeys()
                let moved = try await ServerEnvironment.reseal(
                    stored, where: { KeyEncryptionKeys.sealingID(of: $0) != kek }, in: repository, with: encryption,
                    action: "signing_key.rewrap", at: SystemWallClock().now()
                )
                guard !moved.isEmpty else { return "every one of the \(stored.count) stored signing keys is already sealed with '\(kek)'" }
                let clear = moved.filter { !KeyEncryptionKeys.isSealed($0) }.count
                return "sealed \(moved.count) of \(stored.count) stored signing keys with '\(kek)' (\(clear) were in the clear)"
            }
        }
    }
}
