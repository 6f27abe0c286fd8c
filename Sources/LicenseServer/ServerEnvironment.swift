import Foundation
import LicenseCore
import LicenseEmbedded
import LicenseIdentity
import LicensePKCS11
import LicensePostgres
import LicenseRedis
import LicenseTokens
import Logging
import NIOSSL

/// Everything `licensed` needs, assembled from settings.
///
/// On the embedded default: a data folder with generated TLS material, a signing key, a SQLite
/// repository and an in-process seat store rebuilt from the repository's live sessions. With a
/// Postgres URL the repository is Postgres; with a Redis URL the seats live in Redis and each
/// license is rebuilt from the repository's live sessions whenever Redis has lost it.
public struct ServerEnvironment: Sendable {
    /// Settings for assembling the daemon.
    public struct Settings: Sendable {
        public var dataDirectory: String
        public var listenHost: String = "127.0.0.1"
        public var listenPort: Int = 7443
        /// PEM files; when both are nil, `DATA/tls/` is generated and used.
        public var tlsCertificate: String?
        public var tlsKey: String?
        /// A PEM private key file; when nil, `DATA/keys/lease-signing-<alg>.pem` is generated and used.
        public var signingKeyFile: String?
        public var signingAlgorithm: LeaseTokenAlgorithm = .edDSA
        /// Whether `signingAlgorithm` was asked for (not the default): a repository whose key has
        /// another algorithm is then reported.
        public var signingAlgorithmRequested = false
        public var issuer: String = "coditect-licensed"
        /// Used as the bootstrap operator's API key on first start instead of a generated one.
        public var bootstrapAPIKey: String?
        /// Production seat store; nil for the in-process store.
        public var redis: RedisConfiguration?
        /// Production repository; nil for SQLite in the data folder.
        public var postgres: PostgresSettings?
        /// Apply Postgres migrations at start (otherwise an out-of-date schema stops the start).
        public var migrateOnStart = false
        /// The pause between session sweeps (rows whose seat is gone end as lapsed). Default 15 s.
        public var sweepInterval: Duration = .seconds(15)
        /// A PEM file of the CA that issues operators' TLS client certificates (mutual TLS). When
        /// set, clients may present a certificate; one that verifies and whose common name is an
        /// operator's user id signs that operator in with a credential-less `Hello`.
        public var operatorClientCA: String?
        /// Key-encryption keys: with any, stored signing keys are sealed (the first seals, all
        /// open); keys stored in the clear are sealed at start, and no key file is written.
        public var keyEncryption: KeyEncryptionKeys = .none
        /// Rotate the lease-signing key once it is this old (`nil`, the default: only operators
        /// rotate it). Exactly one replica rotates (see `SigningKeyRefresher`).
        public var signingKeyRotation: Duration?
        /// Identity providers whose ID tokens `Hello` accepts; none: API keys only.
        public var oidcIssuers: [OIDCIssuer] = []
        /// How identity providers' keys are fetched and cached.
        public var jwksPolicy = JWKSCachePolicy()
        /// Fetches identity providers' keys (tests substitute trust roots).
        public var jwksFetcher: any HTTPFetching = NIOHTTPFetcher()

        public init(dataDirectory: String) { self.dataDirectory = dataDirectory }
    }

    public let service: LicenseService
    public let repository: any LicenseRepository
    public let tls: TLSConfiguration
    /// The CA clients should trust, when the TLS material was generated.
    public let caCertificatePath: String?
    /// When the server's TLS certificate (the first of its chain) expires.
    public let certificateExpiry: Timestamp?
    /// The bootstrap API key, only on the start that generated it (print it once). `nil` when
    /// the key came from `Settings.bootstrapAPIKey` (the environment): whoever set it has it, and
    /// it must not reach a terminal or a log.
    public let newBootstrapKey: String?
    /// Whether this start created the bootstrap operator (with a generated or a given key).
    public let createdBootstrapOperator: Bool
    /// Verifies ID tokens, when identity providers are configured.
    public let identity: (any IDTokenVerifying)?
    /// Keeps the signing keys in step with the repository (rotations made by other replicas).
    public let keyRefresher: SigningKeyRefresher
    /// Writes heartbeats' lease expiries behind the calls; run it before the server.
    public let leaseWriter: LeaseWriterService
    /// Ends session rows whose seat is gone and frees seats without a live row; run it beside the server.
    public let sweeper: SessionSweeperService

    /// Opens the backends, prepares the data folder, runs `body` with the environment, and
    /// closes the backends when `body` returns or throws.
    public static func with<T: Sendable>(
        _ settings: Settings, clock: any WallClock = SystemWallClock(), logger: Logger,
        _ body: @Sendable (ServerEnvironment) async throws -> T
    ) async throws -> T {
        let redis = settings.redis.map { RedisClient(configuration: $0, logger: logger) }
        defer { redis?.close() }
        return try await withRepository(settings, logger: logger) { repository in
            try await body(try await prepare(settings, repository: repository, redis: redis, clock: clock, logger: logger))
        }
    }

    /// Opens the repository the settings name (SQLite in the data folder, or Postgres), brings
    /// its schema up to date (SQLite always, Postgres with `migrateOnStart`) or refuses a schema
    /// this build cannot use, runs `body`, and closes it.
    public static func withRepository<T: Sendable>(
        _ settings: Settings, logger: Logger, _ body: @Sendable (any LicenseRepository) async throws -> T
    ) async throws -> T {
        try makePrivateDirectory(settings.dataDirectory)
        guard let postgresSettings = settings.postgres else {
            let sqlite = try await SQLiteLicenseRepository.open(path: settings.dataDirectory + "/licensed.sqlite", logger: logger)
            do {
                try await sqlite.migrate()
                let result = try await body(sqlite)
                try await sqlite.close()
                return result
            } catch {
                try? await sqlite.close()
                throw error
            }
        }
        // The pool and the license-change subscription run while the body runs.
        return try await PostgresLicenseRepository(settings: postgresSettings, logger: logger).withRunning { postgres in
            if settings.migrateOnStart { try await postgres.migrate() }
            let schema = try await postgres.schemaState()
            let (version, required) = (schema.version, PostgresLicenseRepository.requiredSchemaVersion)
            if version > required {
                // A rolling update (or its rollback) runs this build on a newer schema: fine while
                // every migration since this build's is additive (docs/deployment.md).
                guard schema.readableFrom <= required else {
                    throw LicenseError(.failedPrecondition, .invalidRequest,
                                       "the Postgres schema is at version \(version), which builds of schema \(schema.readableFrom) or newer need; this build is at \(required): run a newer licensed")
                }
                logger.notice("the Postgres schema is newer than this build's; it stays compatible", metadata: [
                    "schema": "\(version)", "build_schema": "\(required)", "readable_from": "\(schema.readableFrom)",
                ])
            } else if version < required {
                throw LicenseError(.failedPrecondition, .invalidRequest,
                                   "the Postgres schema is at version \(version) but this build needs \(required): run `licensed migrate` (or start with --migrate)")
            }
            if try await postgres.roleBypassesRowLevelSecurity() {
                logger.warning("the Postgres role is a superuser or has BYPASSRLS: row-level security does not apply; connect as an ordinary role")
            }
            return try await body(postgres)
        }
    }

    private static func prepare(
        _ settings: Settings, repository: any LicenseRepository, redis: RedisClient?, clock: any WallClock, logger: Logger
    ) async throws -> ServerEnvironment {
        let fm = FileManager.default
        let data = settings.dataDirectory

        // TLS
        let certificatePath: String, keyPath: String, caPath: String?
        switch (settings.tlsCertificate, settings.tlsKey) {
        case (let cert?, let key?):
            (certificatePath, keyPath, caPath) = (cert, key, nil)
        case (nil, nil):
            let files = try LocalCertificateAuthority.ensure(in: data + "/tls", extraHosts: [settings.listenHost])
            (certificatePath, keyPath, caPath) = (files.serverCertificate, files.serverKey, files.caCertificate)
        default:
            throw LicenseError(.invalidArgument, .invalidRequest, "give both --tls-cert and --tls-key, or neither")
        }
        let certificates = try NIOSSLCertificate.fromPEMFile(certificatePath)
        let certificateExpiry = certificates.first.map { Timestamp(millisecondsSinceEpoch: Int64($0.notValidAfter) * 1000) }
        let chain = certificates.map { NIOSSLCertificateSource.certificate($0) }
        let key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        tls.minimumTLSVersion = .tlsv12
        if let operatorCA = settings.operatorClientCA {
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(operatorCA))
            } catch {
                throw LicenseError(.invalidArgument, .invalidRequest, "cannot read the operator client CA \(operatorCA) (PEM)")
            }
            tls.certificateVerification = .optionalVerification
        }

        // Signing keys live in the repository, shared by every replica. A key file (given, or
        // generated in the data folder when the repository holds no key yet) is imported when
        // the repository does not hold it; importing a new file rotates to it.
        // With key-encryption keys, no key is written to a file and stored keys are sealed.
        let encryption = settings.keyEncryption
        let deviceKeys = PKCS11KeyResolver()
        var stored = try await repository.signingKeys()
        var fileKey: SigningKey?
        let generatedPath = data + "/keys/lease-signing-\(settings.signingAlgorithm.rawValue.lowercased()).pem"
        if let file = settings.signingKeyFile, file.hasPrefix("pkcs11:") {
            // A key in an HSM or a KMS: the repository stores its URI (no PIN), every replica signs through the token.
            let requested = settings.signingAlgorithmRequested ? settings.signingAlgorithm : nil
            fileKey = SigningKey(external: try deviceKeys.key(try PKCS11URI(parsing: file), algorithm: requested))
        } else if let file = settings.signingKeyFile {
            fileKey = try SigningKey(pem: try String(contentsOfFile: file, encoding: .utf8), algorithm: settings.signingAlgorithm)
        } else if stored.isEmpty {
            if fm.fileExists(atPath: generatedPath) {
                fileKey = try SigningKey(pem: try String(contentsOfFile: generatedPath, encoding: .utf8), algorithm: settings.signingAlgorithm)
            } else {
                let generated = try SigningKey.generate(settings.signingAlgorithm)
                if encryption.isEmpty {
                    try makePrivateDirectory(data + "/keys")
                    try writePrivate(generated.pemRepresentation, to: generatedPath)
                }
                fileKey = generated
            }
        }
        if let fileKey, !stored.contains(where: { $0.keyID == fileKey.keyID }) {
            let now = clock.now()
            try await repository.rotateSigningKey(
                to: try encryption.sealed(SigningKey.stored(fileKey, at: now)), publishRetiredUntil: now.advanced(by: LicenseService.retiredKeyPublication),
                audit: AuditEvent(at: now, tenantID: nil, actor: nil, action: "signing_key.import", target: fileKey.keyID)
            )
            stored = try await repository.signingKeys()
        } else if let fileKey, stored.first(where: { $0.keyID == fileKey.keyID })?.retiredAt != nil {
            logger.warning("the --signing-key file holds a retired key; signing with the repository's current key", metadata: ["kid": "\(fileKey.keyID)"])
        }
        if !encryption.isEmpty {
            stored = try await Self.sealKeysInTheClear(stored, repository: repository, encryption: encryption, clock: clock, logger: logger)
            try Self.removeGeneratedKeyFiles(in: data + "/keys", heldBy: stored, logger: logger)
            if let file = settings.signingKeyFile, !file.hasPrefix("pkcs11:") {
                logger.warning("--signing-key names a key file in the clear; with a key-encryption key the repository holds it sealed: remove the file once imported")
            }
        }
        let keyRing = try KeyRing(issuer: settings.issuer, keys: stored, now: clock.now(), encryption: encryption, resolver: deviceKeys)
        let algorithm = keyRing.currentKey.algorithm
        if settings.signingKeyFile == nil, settings.signingAlgorithmRequested, algorithm != settings.signingAlgorithm {
            logger.warning(
                "the repository's signing key is \(algorithm); --signing-alg applies only to a new repository: run `licensectl signing-key rotate --algorithm \(settings.signingAlgorithm)`"
            )
        }

        // Seats
        let seats: any SeatStore
        if let redis {
            // Each license is rebuilt from the repository the first time Redis lacks it.
            seats = RedisSeatStore(client: redis, seedSource: RepositorySeatSeedSource(repository: repository), logger: logger)
        } else {
            let store = InProcessSeatStore(clock: clock)
            for license in try await repository.licenses(tenant: nil) {
                for session in try await repository.sessions(license: license.id, includeEnded: false) {
                    await store.restore(session, seatLimit: license.seats)
                }
            }
            seats = store
        }
        let leaseWriter = LeaseWriteBehind(repository: repository, logger: logger)
        // A claimed seat waits for its row as long as a write may take, and a little more.
        let pendingClaimTTL = (settings.postgres?.operationTimeout ?? .seconds(5)) + .seconds(2)
        let service = LicenseService(
            repository: repository, seats: seats, signer: keyRing, clock: clock,
            configuration: ServiceConfiguration(issuer: settings.issuer, pendingClaimTTL: pendingClaimTTL), leaseWriter: leaseWriter, logger: logger
        )

        // Bootstrap operator
        var newKey: String?
        var createdOperator = false
        if try await repository.userCount(role: .platformOperator) == 0 {
            let apiKey = settings.bootstrapAPIKey ?? APIKey.generate()
            guard APIKey.isWellFormed(apiKey) else {
                throw LicenseError(.invalidArgument, .invalidRequest, "LICENSED_BOOTSTRAP_API_KEY must look like lk_ followed by at least 17 characters of [A-Za-z0-9_-]")
            }
            let now = clock.now()
            let user = User(id: UserID("usr_bootstrap"), tenantID: nil, name: "bootstrap operator", role: .platformOperator, createdAt: now)
            try await repository.createUser(
                user, apiKey: APIKeyRecord(hash: APIKey.hash(apiKey), userID: user.id, tenantID: nil, name: "bootstrap", createdAt: now),
                audit: AuditEvent(at: now, tenantID: nil, actor: nil, action: "user.bootstrap", target: user.id.rawValue)
            )
            newKey = settings.bootstrapAPIKey == nil ? apiKey : nil
            createdOperator = true
        }
        let identity = settings.oidcIssuers.isEmpty ? nil : try OIDCTokenVerifier(
            issuers: settings.oidcIssuers, fetcher: settings.jwksFetcher, clock: clock, cachePolicy: settings.jwksPolicy,
            refusedTypes: [leaseTokenType], logger: logger
        )
        return ServerEnvironment(
            service: service, repository: repository, tls: tls, caCertificatePath: caPath, certificateExpiry: certificateExpiry, newBootstrapKey: newKey, createdBootstrapOperator: createdOperator,
            identity: identity, keyRefresher: SigningKeyRefresher(repository: repository, signer: keyRing, clock: clock, logger: logger, rotationPeriod: settings.signingKeyRotation),
            leaseWriter: LeaseWriterService(writer: leaseWriter), sweeper: SessionSweeperService(service: service, logger: logger, interval: settings.sweepInterval)
        )
    }
}

/// Creates a folder readable by its owner only (0700), or makes an existing one so: the data
/// folder holds the database (with the signing keys) and the TLS keys.
public func makePrivateDirectory(_ path: String) throws {
    let fm = FileManager.default
    try fm.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    try fm.setAttributes([.posixPermissions: 0o700], ofItemAtPath: path)
}

extension ServerEnvironment {
    /// Seals, with the first key-encryption key, every stored signing key still in the clear (the
    /// first start after a KEK was configured); returns the keys as now stored.
    static func sealKeysInTheClear(
        _ stored: [StoredSigningKey], repository: any LicenseRepository, encryption: KeyEncryptionKeys, clock: any WallClock, logger: Logger
    ) async throws -> [StoredSigningKey] {
        let clear = try await reseal(stored, where: { !KeyEncryptionKeys.isSealed($0) }, in: repository, with: encryption, action: "signing_key.seal", at: clock.now())
        guard !clear.isEmpty else { return stored }
        logger.notice("sealed the stored signing keys with a key-encryption key", metadata: ["keys": "\(clear.count)", "kek": "\(encryption.sealingID ?? "")"])
        return try await repository.signingKeys()
    }

    /// Seals with `encryption`'s first KEK the stored keys `including` picks (never a device's
    /// reference, which holds no secret), in one commit audited as `action`; returns those keys
    /// as they were stored before (none, and nothing written, without a KEK or a key to seal).
    public static func reseal(
        _ stored: [StoredSigningKey], where including: (StoredSigningKey) -> Bool, in repository: any LicenseRepository,
        with encryption: KeyEncryptionKeys, action: String, at now: Timestamp
    ) async throws -> [StoredSigningKey] {
        guard let kek = encryption.sealingID else { return [] }
        let chosen = stored.filter { !KeyEncryptionKeys.isDeviceReference($0) && including($0) }
        guard !chosen.isEmpty else { return [] }
        try await repository.resealSigningKeys(
            try chosen.map(encryption.sealed), audit: AuditEvent(at: now, tenantID: nil, actor: nil, action: action, target: kek)
        )
        return chosen
    }

    /// Removes the key files an earlier start generated in `folder` once the repository holds
    /// their keys sealed: overwritten, then unlinked.
    static func removeGeneratedKeyFiles(in folder: String, heldBy stored: [StoredSigningKey], logger: Logger) throws {
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: folder) else { return }
        for name in names where name.hasPrefix("lease-signing-") && name.hasSuffix(".pem") {
            let path = folder + "/" + name
            let algorithm = [LeaseTokenAlgorithm.edDSA, .rs256, .ps256].first { name == "lease-signing-\($0.rawValue.lowercased()).pem" }
            guard let algorithm, let pem = try? String(contentsOfFile: path, encoding: .utf8),
                  let key = try? SigningKey(pem: pem, algorithm: algorithm),
                  stored.contains(where: { $0.keyID == key.keyID && KeyEncryptionKeys.isSealed($0) }) else { continue }
            let size = (try? fm.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            if let handle = FileHandle(forWritingAtPath: path) {
                try handle.write(contentsOf: Data(count: size))
                try handle.synchronize()
                try handle.close()
            }
            try fm.removeItem(atPath: path)
            logger.notice("removed a generated key file: the repository holds its key sealed", metadata: ["file": "\(path)", "kid": "\(key.keyID)"])
        }
    }
}
