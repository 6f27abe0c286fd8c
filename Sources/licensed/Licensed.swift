import ArgumentParser
import Foundation
import LicenseCore
import LicenseEmbedded
import LicenseIdentity
import LicensePostgres
import LicenseRedis
import LicenseServer
import LicenseTokens
import Logging
import ServiceLifecycle

@main
struct Licensed: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "licensed",
        abstract: "The CODITECT license server.",
        discussion: """
        With no options, serves on 127.0.0.1:7443 from ./licensed-data (in-process seats, SQLite), \
        generating a CA (clients trust DATA/tls/ca.pem), a signing key and a bootstrap operator API key \
        that is printed once. In production give --redis-url (seats) and --postgres-url (everything \
        durable); several replicas may share them.

        Settings come from, in order of precedence: flags, environment variables (LICENSED_LISTEN, \
        LICENSED_DATA_DIR, LICENSED_TLS_CERT, LICENSED_TLS_KEY, LICENSED_SIGNING_KEY, \
        LICENSED_SIGNING_ALG, LICENSED_MAX_FRAME_BYTES, LICENSED_LOG_LEVEL, LICENSED_LOG_FORMAT, LICENSED_REDIS_URL, \
        LICENSED_POSTGRES_URL, LICENSED_MIGRATE, LICENSED_BOOTSTRAP_API_KEY, LICENSED_OIDC (specs separated \
        by ';'), LICENSED_FIREBASE_PROJECT, LICENSED_SWEEP_INTERVAL, LICENSED_DRAIN_TIMEOUT, LICENSED_MAX_CONNECTIONS, \
        LICENSED_MAX_CONNECTIONS_PER_ADDRESS, LICENSED_SIGN_IN_TIMEOUT, LICENSED_OPS_LISTEN, \
        LICENSED_METRICS_LICENSE_SERIES, LICENSED_METRICS_INTERVAL, LICENSED_SIGNING_KEY_ROTATION, LICENSED_KEKS (specs separated by ';')), then a JSON config file (--config or LICENSED_CONFIG) with the \
        same names in snake_case (listen, data_dir, tls_cert, tls_key, signing_key, signing_alg, \
        max_frame_bytes, log_level, log_format, redis_url, postgres_url, migrate, firebase_project, sweep_interval, \
        drain_timeout, max_connections, max_connections_per_address, sign_in_timeout, ops_listen, metrics_license_series, metrics_interval, signing_key_rotation, keks, and oidc_issuers: \
        a list of {"issuer", "audience", "jwks_url", "algorithms", "tenant_claim"} objects). Any of the \
        variables may name a file holding its value instead, with _FILE added to its name \
        (LICENSED_POSTGRES_URL_FILE=/run/secrets/postgres-url), so secrets can stay out of the environment.

        ID-token sign-in: --oidc 'issuer=https://login.example.com,audience=licensed' trusts that issuer \
        (keys from its discovery document, or jwks=URL; alg=RS256+ES256 by default; tenant_claim=CLAIM). \
        --firebase-project my-project trusts Google Identity Platform / Firebase tokens of that project.

        Examples:
          licensed
          licensed --redis-url redis://10.0.0.5:6379 --postgres-url postgres://licensed:pw@10.0.0.6/licenses --migrate
          licensed migrate --postgres-url postgres://licensed:pw@10.0.0.6/licenses
          licensed --firebase-project coditect-prod --oidc 'issuer=https://login.acme.com,audience=coditect-licensed'
          licensed operator-key create          # a lost bootstrap key: a new operator key, printed once

        Exit status: 0 success (or a drained shutdown), 1 failure to start or serve, 64 usage error (a bad flag or value).
        """,
        version: BuildInfo.version,
        subcommands: [Serve.self, Migrate.self, Backup.self, Restore.self, Keys.self, Ping.self, OperatorKey.self, OperatorCertificate.self]
    )

    @OptionGroup var options: ServeOptions

    func run() async throws {
        try await options.run()
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the server (what `licensed` with no subcommand does).",
        discussion: "Example:\n  licensed serve --listen 0.0.0.0:7443 --data-dir /var/lib/licensed"
    )

    @OptionGroup var options: ServeOptions

    func run() async throws {
        try await options.run()
    }
}

struct OperatorCertificate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "operator-certificate",
        abstract: "Issue a TLS client certificate that signs an operator in (mutual TLS).",
        discussion: """
        Creates (once) an operator CA in the folder and issues a certificate whose common name is the \
        operator's user id. Start licensed with --operator-client-ca FOLDER/operator-ca.pem; then \
        licensectl --client-cert FOLDER/ID.pem --client-key FOLDER/ID-key.pem signs in as that operator.

        Example:
          licensed operator-certificate usr_bootstrap --out ./operator-certs
        """
    )

    @Argument(help: "The operator's user id (the certificate's common name).") var userID: String
    @Option(help: "The folder for the operator CA and the certificate.") var out: String = "operator-certs"
    @Option(parsing: .unconditional, help: "Validity in days, 1 to 3650.", transform: { text in
        guard let days = Int(text) else { throw ValidationError("--days must be a whole number, not '\(text)'") }
        return days
    }) var days: Int = 365

    func run() async throws {
        guard !userID.isEmpty, userID.allSatisfy({ $0.isLetter || $0.isNumber || "._:-".contains($0) }) else {
            throw ValidationError("the user id may contain only letters, digits, '.', '_', ':' and '-'")
        }
        guard (1...3650).contains(days) else { throw ValidationError("--days must be from 1 to 3650") }
        let files = try LocalCertificateAuthority.issueOperatorCertificate(commonName: userID, in: out, validity: TimeInterval(days) * 86_400)
        print("""
        operator CA:  \(files.caCertificate)   (licensed --operator-client-ca)
        certificate:  \(files.certificate)
        key:          \(files.key)   (keep it private)
        """)
    }
}

struct OperatorKey: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "operator-key",
        abstract: "Make operator API keys directly in the repository (to recover a lost bootstrap key).",
        subcommands: [Create.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a new API key for a platform operator and print it once.",
            discussion: """
            Works on the data folder or the database the server uses (run it where licensed runs, with \
            the same --data-dir, --postgres-url or --config); the server may keep running. The key is \
            audited as api_key.recover. Without --user it is for usr_bootstrap, which is created again \
            if it was removed. Revoke lost keys afterwards with `licensectl key list` and `licensectl key revoke`.

            Examples:
              licensed operator-key create
              licensed operator-key create --postgres-url postgres://licensed:pw@db/licenses --user usr_ops --name laptop
            """
        )

        @OptionGroup var common: CommonOptions
        @Option(help: "The operator's user id (default usr_bootstrap).") var user: String = OperatorKeyRecovery.defaultOperator.rawValue
        @Option(help: "A label for the key.") var name: String = "recovered"

        func run() async throws {
            let logger = try common.makeLogger()
            let settings = try common.settings()
            let (user, name) = (UserID(user), name)
            do {
                let result = try await ServerEnvironment.withRepository(settings, logger: logger) { repository in
                    try await OperatorKeyRecovery.createKey(for: user, name: name, in: repository)
                }
                print("""
                New operator API key for \(user.rawValue)\(result.createdUser ? " (user created)" : "") (shown once; store it now):
                  \(result.key)
                key id: \(result.record.id)   (licensectl key revoke \(result.record.id) revokes it)
                """)
            } catch let error as LicenseError {
                throw LicensedFailure(error.message)
            }
        }
    }
}

/// A failure that is not a usage error: printed as `Error: message`, exit status 1.
struct LicensedFailure: Error, CustomStringConvertible {
    var description: String
    init(_ message: String) { description = message }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply database migrations and exit.",
        discussion: "Example:\n  licensed migrate --postgres-url postgres://licensed:pw@db:5432/licenses"
    )

    @OptionGroup var common: CommonOptions

    func run() async throws {
        let logger = try common.makeLogger()
        let settings = try common.settings()
        if let postgresSettings = settings.postgres {
            try await PostgresLicenseRepository(settings: postgresSettings, logger: logger).withRunning { repository in
                do {
                    try await repository.migrate()
                    print("Postgres schema at version \(try await repository.schemaVersion())")
                } catch let error as LicenseError {
                    throw ValidationError("migration failed: \(error.message)")
                }
            }
            return
        }
        try makePrivateDirectory(settings.dataDirectory)
        let repository = try await SQLiteLicenseRepository.open(path: settings.dataDirectory + "/licensed.sqlite", logger: logger)
        try await repository.migrate()
        print("schema at version \(try await repository.schemaVersion())")
        try await repository.close()
    }
}
