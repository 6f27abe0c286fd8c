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

/// The server's settings, taken by `licensed` itself and by `licensed serve`.
struct ServeOptions: ParsableArguments {
    @OptionGroup var common: CommonOptions

    @Option(help: "HOST:PORT to listen on (default 127.0.0.1:7443).")
    var listen: String?

    @Option(name: .customLong("tls-cert"), help: "Server certificate chain (PEM). Default: generated under DATA/tls.")
    var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: "Server private key (PEM).")
    var tlsKey: String?

    @Option(name: .customLong("signing-key"), help: "Lease signing private key: a PKCS#8 PEM file, or a key in an HSM or KMS as pkcs11:token=LABEL;object=LABEL?module-path=/path/module.so&pin-source=file:/path. Default: generated (in the repository).")
    var signingKey: String?

    @Option(name: .customLong("signing-alg"), help: "EdDSA (default), RS256 or PS256 (RSA keys are 4096-bit when generated).")
    var signingAlg: String?

    @Option(name: .customLong("signing-key-rotation"), help: "Rotate the lease-signing key once it is this old, e.g. 90d, 12h, 30m (one replica rotates; default off).")
    var signingKeyRotation: String?

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

    @Option(name: .customLong("metrics-license-series"), parsing: .unconditional, help: "Licenses with metric series of their own (seats in use, capacity, expiry), 0 to 100000 (default 200).")
    var metricsLicenseSeries: String?

    @Option(name: .customLong("metrics-interval"), parsing: .unconditional, help: "Seconds between refreshes of the metrics read from the backends (seats per license, license and key ages), 1 to 3600 (default 15).")
    var metricsInterval: String?

    @Option(name: .customLong("sign-in-timeout"), parsing: .unconditional, help: "Seconds a new connection has to sign in (Hello) before it is closed, 1 to 300 (default 10).")
    var signInTimeout: String?

    @Option(name: .customLong("trace-every"), parsing: .unconditional, help: "Log the time each stage of one call in N took (seat claim, commit queue, commit, signing), as `call trace` lines at info level, 1 to 1000000 (default off).")
    var traceEvery: String?

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
        if let rotation = try common.resolve(signingKeyRotation, env: "LICENSED_SIGNING_KEY_ROTATION", file: "signing_key_rotation"),
           rotation.lowercased() != "off" {
            settings.signingKeyRotation = try Self.period(rotation, option: "--signing-key-rotation (LICENSED_SIGNING_KEY_ROTATION, signing_key_rotation)")
        }
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
        if let every = try common.resolve(traceEvery, env: "LICENSED_TRACE_EVERY", file: "trace_every"), every.lowercased() != "off" {
            listener.traceEvery = try Self.wholeNumber(every, option: "--trace-every (LICENSED_TRACE_EVERY, trace_every)", in: 1...1_000_000)
        }
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
        // Without an ops port nothing reads them: they stay off (swift-metrics' no-op backend).
        if listener.ops != nil { listener.metrics = Self.bootstrapPrometheus() }
        listener.metricsLicenseSeries = try Self.wholeNumber(
            common.resolve(metricsLicenseSeries, env: "LICENSED_METRICS_LICENSE_SERIES", file: "metrics_license_series", default: "200")!,
            option: "--metrics-license-series (LICENSED_METRICS_LICENSE_SERIES, metrics_license_series)", in: 0...100_000)
        listener.metricsInterval = .seconds(try Self.wholeNumber(
            common.resolve(metricsInterval, env: "LICENSED_METRICS_INTERVAL", file: "metrics_interval", default: "15")!,
            option: "--metrics-interval (LICENSED_METRICS_INTERVAL, metrics_interval)", in: 1...3600, of: "seconds"))

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

    /// A period written as a whole number and a unit (`s`, `m`, `h` or `d`: `90d`, `12h`) from a
    /// second to ten years, or a usage error naming the option.
    static func period(_ text: String, option: String) throws -> Duration {
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3_600, "d": 86_400]
        guard let unit = text.last.flatMap({ units[$0] }), let count = Int64(text.dropLast()), count > 0,
              count <= 3_650 * 86_400 / unit
        else {
            throw ValidationError("\(option) must be a whole number with a unit, s, m, h or d (90d, 12h), or off; not '\(text)'")
        }
        return .seconds(count * unit)
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
        /// One call in this many is traced (`ServerConfiguration.traceEvery`).
        var traceEvery: Int?
        /// The ops port, or `nil` for none.
        var ops: OpsServer.Configuration?
        /// The Prometheus exposition of the process's metrics.
        var metrics: @Sendable () -> [UInt8] = { [] }
        /// Licenses with series of their own (`MetricsCollector.Configuration.maxLicenseSeries`).
        var metricsLicenseSeries = 200
        /// Pause between refreshes of the backend-read gauges (`MetricsCollector.Configuration.interval`).
        var metricsInterval: Duration = .seconds(15)
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
        configuration.traceEvery = listener.traceEvery
        let readiness = Readiness()
        let server = LicenseServer(
            configuration: configuration,
            dispatcher: Dispatcher(service: environment.service, maxFrameBytes: listener.maxFrameBytes, identity: environment.identity, logger: logger),
            readiness: readiness, logger: logger
        ) { address in
            print("licensed listening on \(address)" + (environment.caCertificatePath.map { " (clients trust \($0))" } ?? ""))
            fflush(nil)
        }
        var collector = MetricsCollector.Configuration()
        collector.maxLicenseSeries = listener.metricsLicenseSeries
        collector.interval = listener.metricsInterval
        let group = ServiceGroup(configuration: .init(
            // Services stop in reverse order: the lease writer's last flush follows the server's last call.
            // The ops port stops last, so /ready answers 503 while the server drains.
            services: (listener.ops.map { ops in
                [.init(service: OpsServer(configuration: ops, readiness: readiness, service: environment.service, leaseWriter: environment.leaseWriter, logger: logger, metrics: listener.metrics) { address in
                    print("licensed ops port on http://\(address.ipAddress ?? ops.host):\(address.port ?? ops.port) (/health, /ready, /metrics)")
                    fflush(nil)
                }), .init(service: MetricsCollector(service: environment.service, configuration: collector, certificateExpiry: environment.certificateExpiry, logger: logger))]
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
