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
import Metrics
import Prometheus
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
        LICENSED_MAX_CONNECTIONS_PER_ADDRESS, LICENSED_SIGN_IN_TIMEOUT, LICENSED_OPS_LISTEN), then a JSON config file (--config or LICENSED_CONFIG) with the \
        same names in snake_case (listen, data_dir, tls_cert, tls_key, signing_key, signing_alg, \
        max_frame_bytes, log_level, log_format, redis_url, postgres_url, migrate, firebase_project, sweep_interval, \
        drain_timeout, max_connections, max_connections_per_address, sign_in_timeout, ops_listen, and oidc_issuers: \
        a list of {"issuer", "audience", "jwks_url", "algorithms", "tenant_claim"} objects).

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
        subcommands: [Serve.self, Migrate.self, OperatorKey.self, OperatorCertificate.self]
    )

    @OptionGroup var options: ServeOptions

    func run() async throws {
        try await options.run()
    }
}

/// Options shared by the subcommands.
struct CommonOptions: ParsableArguments {
    @Option(help: "A JSON config file.")
    var config: String?

    @Option(name: .customLong("data-dir"), help: "The data folder (default ./licensed-data).")
    var dataDir: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (default info).")
    var logLevel: String?

    @Option(name: .customLong("log-format"), help: "text (default) or json: one JSON object per line (time, severity, message, labels) for Cloud Logging, Loki and the like.")
    var logFormat: String?

    @Option(name: .customLong("postgres-url"), help: "postgres://user:password@host:5432/database[?sslmode=require&pool=16&timeout_ms=5000]. Default: SQLite in the data folder.")
    var postgresURL: String?

    /// Flags, then environment, then the config file, then the default.
    func resolve(_ flag: String?, env: String, file key: String, default fallback: String? = nil) throws -> String? {
        if let flag { return flag }
        if let value = ProcessInfo.processInfo.environment[env], !value.isEmpty { return value }
        if let value = try fileSettings()[key] { return value }
        return fallback
    }

    func fileSettings() throws -> [String: String] {
        guard let path = config ?? ProcessInfo.processInfo.environment["LICENSED_CONFIG"] else { return [:] }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationError("cannot read config file \(path)")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ValidationError("config file \(path) is not a JSON object")
        }
        let known: Set = ["listen", "data_dir", "tls_cert", "tls_key", "signing_key", "signing_alg", "max_frame_bytes", "log_level", "log_format",
                          "redis_url", "postgres_url", "migrate", "firebase_project", "oidc_issuers", "operator_client_ca",
                          "sweep_interval", "drain_timeout", "max_connections", "max_connections_per_address", "sign_in_timeout", "ops_listen"]
        if let unknown = object.keys.first(where: { !known.contains($0) }) {
            throw ValidationError("config file \(path): unknown setting '\(unknown)'; known: \(known.sorted().joined(separator: ", "))")
        }
        var settings = object.filter { $0.key != "oidc_issuers" }.mapValues { "\($0)" }
        if let issuers = object["oidc_issuers"] {
            guard let list = issuers as? [[String: Any]] else {
                throw ValidationError("config file \(path): oidc_issuers must be a list of objects")
            }
            settings["oidc_issuers"] = try list.map { entry in
                let allowed: Set = ["issuer", "audience", "jwks_url", "algorithms", "tenant_claim"]
                if let unknown = entry.keys.first(where: { !allowed.contains($0) }) {
                    throw ValidationError("config file \(path): oidc_issuers: unknown field '\(unknown)'; known: \(allowed.sorted().joined(separator: ", "))")
                }
                var spec = ["issuer=\(entry["issuer"] ?? "")", "audience=\(entry["audience"] ?? "")"]
                if let jwks = entry["jwks_url"] { spec.append("jwks=\(jwks)") }
                if let algorithms = entry["algorithms"] as? [String] { spec.append("alg=" + algorithms.joined(separator: "+")) }
                if let claim = entry["tenant_claim"] { spec.append("tenant_claim=\(claim)") }
                return spec.joined(separator: ",")
            }.joined(separator: ";")
        }
        return settings
    }

    /// Parses `issuer=URL,audience=AUD[,jwks=URL][,alg=RS256+ES256][,tenant_claim=CLAIM]`.
    static func parseOIDC(_ spec: String) throws -> OIDCIssuer {
        var fields: [String: String] = [:]
        for part in spec.split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2, ["issuer", "audience", "jwks", "alg", "tenant_claim"].contains(pair[0]) else {
                throw ValidationError("--oidc takes issuer=URL,audience=AUD[,jwks=URL][,alg=RS256+ES256][,tenant_claim=CLAIM]; got '\(part)'")
            }
            fields[pair[0]] = pair[1]
        }
        guard let issuer = fields["issuer"], !issuer.isEmpty, let audience = fields["audience"], !audience.isEmpty else {
            throw ValidationError("--oidc needs issuer=URL and audience=AUD")
        }
        var algorithms: Set<IDTokenAlgorithm> = [.rs256, .es256]
        if let names = fields["alg"] {
            algorithms = try Set(names.split(separator: "+").map { name in
                guard let algorithm = IDTokenAlgorithm(rawValue: String(name)) else {
                    throw ValidationError("--oidc alg must be RS256, ES256 or RS256+ES256, not '\(name)'")
                }
                return algorithm
            })
        }
        let result = OIDCIssuer(
            issuer: issuer, audience: audience, keys: fields["jwks"].map(OIDCIssuer.KeySource.jwks) ?? .discovery,
            algorithms: algorithms, tenantClaim: fields["tenant_claim"]
        )
        do { try result.validate() } catch let error as LicenseError { throw ValidationError("--oidc: \(error.message)") }
        return result
    }

    func makeLogger() throws -> Logger {
        let levelName = try resolve(logLevel, env: "LICENSED_LOG_LEVEL", file: "log_level", default: "info")!
        guard let level = Logger.Level(rawValue: levelName) else { throw ValidationError("unknown log level '\(levelName)'") }
        let format = try resolve(logFormat, env: "LICENSED_LOG_FORMAT", file: "log_format", default: "text")!
        switch format {
        case "text":
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        case "json":
            LoggingSystem.bootstrap { label in
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
        default:
            throw ValidationError("--log-format must be text or json, not '\(format)'")
        }
        return Logger(label: "licensed")
    }

    func settings() throws -> ServerEnvironment.Settings {
        let env = ProcessInfo.processInfo.environment
        var settings = ServerEnvironment.Settings(
            dataDirectory: try resolve(dataDir, env: "LICENSED_DATA_DIR", file: "data_dir", default: "licensed-data")!
        )
        settings.bootstrapAPIKey = env["LICENSED_BOOTSTRAP_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        if let url = try resolve(postgresURL, env: "LICENSED_POSTGRES_URL", file: "postgres_url") {
            do { settings.postgres = try PostgresSettings(url: url) } catch let error as LicenseError { throw ValidationError(error.message) }
        }
        return settings
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

/// The server's settings, taken by `licensed` itself and by `licensed serve`.
struct ServeOptions: ParsableArguments {
    @OptionGroup var common: CommonOptions

    @Option(help: "HOST:PORT to listen on (default 127.0.0.1:7443).")
    var listen: String?

    @Option(name: .customLong("tls-cert"), help: "Server certificate chain (PEM). Default: generated under DATA/tls.")
    var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: "Server private key (PEM).")
    var tlsKey: String?

    @Option(name: .customLong("signing-key"), help: "Lease signing private key (PKCS#8 PEM). Default: generated under DATA/keys.")
    var signingKey: String?

    @Option(name: .customLong("signing-alg"), help: "EdDSA (default), RS256 or PS256 (RSA keys are 4096-bit when generated).")
    var signingAlg: String?

    // Taken as text and checked in run(), so that "-5" is refused as a bad number, not as a flag.
    @Option(name: .customLong("max-frame-bytes"), parsing: .unconditional, help: "Largest accepted frame, 256 to 16777216 (default 65536).")
    var maxFrameBytes: String?

    @Option(name: .customLong("redis-url"), help: "redis://[:password@]host:6379[/db][?cluster=true&prefix=coditect:&timeout_ms=500], or redis+sentinel://sentinel1:26379,sentinel2:26379/SERVICE to follow failovers. Default: in-process seats.")
    var redisURL: String?

    @Option(name: .customLong("oidc"), help: "Trust ID tokens of an issuer: issuer=URL,audience=AUD[,jwks=URL][,alg=RS256+ES256][,tenant_claim=CLAIM]. Repeatable.")
    var oidc: [String] = []

    @Option(name: .customLong("firebase-project"), help: "Trust Google Identity Platform / Firebase ID tokens of this project id.")
    var firebaseProject: String?

    @Option(name: .customLong("operator-client-ca"), help: "PEM CA of operators' TLS client certificates (mutual TLS); see `licensed operator-certificate`.")
    var operatorClientCA: String?

    @Flag(help: "Apply Postgres migrations at start (otherwise an out-of-date schema stops the start).")
    var migrate = false

    @Option(name: .customLong("sweep-interval"), parsing: .unconditional, help: "Seconds between session sweeps, which end sessions whose seat is gone, 1 to 3600 (default 15).")
    var sweepInterval: String?

    @Option(name: .customLong("drain-timeout"), parsing: .unconditional, help: "Seconds in-flight calls get to finish on shutdown, 0 to 300 (default 10).")
    var drainTimeout: String?

    @Option(name: .customLong("max-connections"), parsing: .unconditional, help: "Open connections at most, 1 to 1000000 (default 10000, or fewer to fit `ulimit -n`).")
    var maxConnections: String?

    @Option(name: .customLong("max-connections-per-address"), parsing: .unconditional, help: "Open connections at most from one client address (an IPv6 /64), 1 to 1000000 (default 1000).")
    var maxConnectionsPerAddress: String?

    @Option(name: .customLong("ops-listen"), help: "HOST:PORT of the plain-HTTP ops port (GET /health, /ready, /metrics), or none (default 127.0.0.1:9090).")
    var opsListen: String?

    @Option(name: .customLong("sign-in-timeout"), parsing: .unconditional, help: "Seconds a new connection has to sign in (Hello) before it is closed, 1 to 300 (default 10).")
    var signInTimeout: String?

    func run() async throws {
        let logger = try common.makeLogger()
        var settings = try common.settings()
        let listen = try common.resolve(self.listen, env: "LICENSED_LISTEN", file: "listen", default: "127.0.0.1:7443")!
        (settings.listenHost, settings.listenPort) = try Self.parseListen(listen)
        settings.tlsCertificate = try common.resolve(tlsCert, env: "LICENSED_TLS_CERT", file: "tls_cert")
        settings.tlsKey = try common.resolve(tlsKey, env: "LICENSED_TLS_KEY", file: "tls_key")
        settings.signingKeyFile = try common.resolve(signingKey, env: "LICENSED_SIGNING_KEY", file: "signing_key")
        let requestedAlg = try common.resolve(signingAlg, env: "LICENSED_SIGNING_ALG", file: "signing_alg")
        settings.signingAlgorithmRequested = requestedAlg != nil
        let alg = requestedAlg ?? "EdDSA"
        guard let algorithm = LeaseTokenAlgorithm(rawValue: alg) else {
            throw ValidationError("--signing-alg must be EdDSA, RS256 or PS256")
        }
        settings.signingAlgorithm = algorithm
        if let url = try common.resolve(redisURL, env: "LICENSED_REDIS_URL", file: "redis_url") {
            do { settings.redis = try RedisConfiguration(url: url) } catch let error as RedisClientError { throw ValidationError(error.message) }
        }
        let migrateFlag = try common.resolve(migrate ? "true" : nil, env: "LICENSED_MIGRATE", file: "migrate", default: "false")!
        settings.migrateOnStart = ["1", "true", "yes"].contains(migrateFlag.lowercased())
        settings.operatorClientCA = try common.resolve(operatorClientCA, env: "LICENSED_OPERATOR_CLIENT_CA", file: "operator_client_ca")
        let oidcSpecs = oidc.isEmpty
            ? (try common.resolve(nil, env: "LICENSED_OIDC", file: "oidc_issuers")?.split(separator: ";").map(String.init) ?? [])
            : oidc
        settings.oidcIssuers = try oidcSpecs.map(CommonOptions.parseOIDC)
        if let project = try common.resolve(firebaseProject, env: "LICENSED_FIREBASE_PROJECT", file: "firebase_project") {
            guard !project.isEmpty, project.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
                throw ValidationError("--firebase-project must be a project id such as my-project-123")
            }
            settings.oidcIssuers.append(.firebase(projectID: project))
        }
        let maxFrame = try Self.wholeNumber(
            common.resolve(maxFrameBytes, env: "LICENSED_MAX_FRAME_BYTES", file: "max_frame_bytes", default: "65536")!,
            option: "--max-frame-bytes (LICENSED_MAX_FRAME_BYTES, max_frame_bytes)", in: 256...16 * 1024 * 1024)

        settings.sweepInterval = .seconds(try Self.wholeNumber(
            common.resolve(sweepInterval, env: "LICENSED_SWEEP_INTERVAL", file: "sweep_interval", default: "15")!, option: "--sweep-interval (LICENSED_SWEEP_INTERVAL, sweep_interval)", in: 1...3600, of: "seconds"))
        let drain = Duration.seconds(try Self.wholeNumber(
            common.resolve(drainTimeout, env: "LICENSED_DRAIN_TIMEOUT", file: "drain_timeout", default: "10")!, option: "--drain-timeout (LICENSED_DRAIN_TIMEOUT, drain_timeout)", in: 0...300, of: "seconds"))

        var listener = ListenerSettings(maxFrameBytes: maxFrame, drainTimeout: drain)
        if let cap = try common.resolve(maxConnections, env: "LICENSED_MAX_CONNECTIONS", file: "max_connections") {
            listener.maxConnections = try Self.wholeNumber(cap, option: "--max-connections (LICENSED_MAX_CONNECTIONS, max_connections)", in: 1...1_000_000)
        }
        listener.maxConnectionsPerAddress = try Self.wholeNumber(
            common.resolve(maxConnectionsPerAddress, env: "LICENSED_MAX_CONNECTIONS_PER_ADDRESS", file: "max_connections_per_address", default: "1000")!,
            option: "--max-connections-per-address (LICENSED_MAX_CONNECTIONS_PER_ADDRESS, max_connections_per_address)", in: 1...1_000_000)
        listener.signInTimeout = .seconds(try Self.wholeNumber(
            common.resolve(signInTimeout, env: "LICENSED_SIGN_IN_TIMEOUT", file: "sign_in_timeout", default: "10")!,
            option: "--sign-in-timeout (LICENSED_SIGN_IN_TIMEOUT, sign_in_timeout)", in: 1...300, of: "seconds"))
        let ops = try common.resolve(opsListen, env: "LICENSED_OPS_LISTEN", file: "ops_listen")
        if let ops, ops.lowercased() == "none" {
            listener.ops = nil
        } else {
            let (host, port) = try Self.parseListen(ops ?? "127.0.0.1:9090", option: "--ops-listen")
            listener.ops = OpsServer.Configuration(host: host, port: port)
            // The default address may be taken (Prometheus itself uses 9090): then run without it.
            listener.ops?.required = ops != nil
        }
        OpenFileLimit.raise(logger: logger)
        // Metrics go to Prometheus, exposed on the ops port; the libraries only record them.
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        listener.metrics = { registry.emitToBuffer() }

        let settingsCopy = settings
        let listenerCopy = listener
        do {
            try await ServerEnvironment.with(settingsCopy, logger: logger) { environment in
                try await Self.serve(environment, settings: settingsCopy, listener: listenerCopy, logger: logger)
            }
        } catch let error as LicenseError {
            throw ValidationError(error.message)
        }
    }

    /// A whole number (of `unit`, when given) within `range`, or a usage error naming the option.
    static func wholeNumber(_ text: String, option: String, in range: ClosedRange<Int>, of unit: String? = nil) throws -> Int {
        guard let value = Int(text), range.contains(value) else {
            let what = unit.map { "a whole number of \($0)" } ?? "a whole number"
            throw ValidationError("\(option) must be \(what) from \(range.lowerBound) to \(range.upperBound), not '\(text)'")
        }
        return value
    }

    /// The listener's settings taken from flags, environment and config file.
    struct ListenerSettings {
        var maxFrameBytes: Int
        var drainTimeout: Duration
        var maxConnections: Int?
        var maxConnectionsPerAddress = 1_000
        var signInTimeout: Duration = .seconds(10)
        /// The ops port, or `nil` for none.
        var ops: OpsServer.Configuration?
        /// The Prometheus exposition of the process's metrics.
        var metrics: @Sendable () -> [UInt8] = { [] }
    }

    private static func serve(_ environment: ServerEnvironment, settings: ServerEnvironment.Settings, listener: ListenerSettings, logger: Logger) async throws {
        if environment.newBootstrapKey == nil, environment.createdBootstrapOperator {
            print("Bootstrap operator usr_bootstrap created with the API key from LICENSED_BOOTSTRAP_API_KEY (not shown).")
        }
        if let key = environment.newBootstrapKey {
            print("""
            Bootstrap operator API key (shown once; store it now):
              \(key)
            Save it in a licensectl profile: licensectl profile set local --server \(settings.listenHost):\(settings.listenPort) --ca \(environment.caCertificatePath ?? "<your CA>") --api-key <key>
            """)
        }
        var configuration = ServerConfiguration(tls: environment.tls)
        configuration.host = settings.listenHost
        configuration.port = settings.listenPort
        configuration.maxFrameBytes = listener.maxFrameBytes
        configuration.drainTimeout = listener.drainTimeout
        configuration.maxConnections = listener.maxConnections
        configuration.maxConnectionsPerAddress = listener.maxConnectionsPerAddress
        configuration.signInTimeout = listener.signInTimeout
        let readiness = Readiness()
        let server = LicenseServer(
            configuration: configuration,
            dispatcher: Dispatcher(service: environment.service, maxFrameBytes: listener.maxFrameBytes, identity: environment.identity, logger: logger),
            readiness: readiness, logger: logger
        ) { address in
            print("licensed listening on \(address)" + (environment.caCertificatePath.map { " (clients trust \($0))" } ?? ""))
            fflush(nil)
        }
        let group = ServiceGroup(configuration: .init(
            // Services stop in reverse order: the lease writer's last flush follows the server's last call.
            // The ops port stops last, so /ready answers 503 while the server drains.
            services: (listener.ops.map { ops in
                [.init(service: OpsServer(configuration: ops, readiness: readiness, service: environment.service, logger: logger, metrics: listener.metrics) { address in
                    print("licensed ops port on http://\(address.ipAddress ?? ops.host):\(address.port ?? ops.port) (/health, /ready, /metrics)")
                    fflush(nil)
                })]
            } ?? []) + [.init(service: environment.leaseWriter), .init(service: server), .init(service: environment.keyRefresher),
                        .init(service: environment.sweeper)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
        try await group.run()
    }

    static func parseListen(_ text: String, option: String = "--listen") throws -> (String, Int) {
        let example = option == "--listen" ? "7443" : "9090"
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw ValidationError("\(option) must be HOST:PORT, e.g. 127.0.0.1:\(example)")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw ValidationError("\(option) must name a host, e.g. 0.0.0.0:\(example)") }
        return (host, port)
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
