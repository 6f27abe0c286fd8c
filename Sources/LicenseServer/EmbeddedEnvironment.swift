import Foundation
import LicenseCore
import LicenseEmbedded
import LicenseTokens
import Logging
import NIOSSL

/// Everything `licensed` needs, assembled from settings: on the embedded default, a data
/// folder with generated TLS material, a signing key, a SQLite repository and an in-process
/// seat store rebuilt from the repository's live sessions.
public struct EmbeddedEnvironment: Sendable {
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
        public var issuer: String = "coditect-licensed"
        /// Used as the bootstrap operator's API key on first start instead of a generated one.
        public var bootstrapAPIKey: String?

        public init(dataDirectory: String) { self.dataDirectory = dataDirectory }
    }

    public let service: LicenseService
    public let repository: SQLiteLicenseRepository
    public let tls: TLSConfiguration
    /// The CA clients should trust, when the TLS material was generated.
    public let caCertificatePath: String?
    /// The bootstrap API key, only on the start that created it (print it once).
    public let newBootstrapKey: String?

    /// Prepares the data folder and opens the backends.
    public static func prepare(_ settings: Settings, clock: any WallClock = SystemWallClock(), logger: Logger) async throws -> EmbeddedEnvironment {
        let fm = FileManager.default
        let data = settings.dataDirectory
        try fm.createDirectory(atPath: data, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])

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
        let chain = try NIOSSLCertificate.fromPEMFile(certificatePath).map { NIOSSLCertificateSource.certificate($0) }
        let key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        tls.minimumTLSVersion = .tlsv12

        // Signing key
        let signingKey: SigningKey
        if let file = settings.signingKeyFile {
            signingKey = try SigningKey(pem: try String(contentsOfFile: file, encoding: .utf8), algorithm: settings.signingAlgorithm)
        } else {
            let path = data + "/keys/lease-signing-\(settings.signingAlgorithm.rawValue.lowercased()).pem"
            if fm.fileExists(atPath: path) {
                signingKey = try SigningKey(pem: try String(contentsOfFile: path, encoding: .utf8), algorithm: settings.signingAlgorithm)
            } else {
                try fm.createDirectory(atPath: data + "/keys", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
                signingKey = try SigningKey.generate(settings.signingAlgorithm)
                try writePrivate(signingKey.pemRepresentation, to: path)
            }
        }
        let keyRing = KeyRing(issuer: settings.issuer, current: signingKey)

        // Repository and seats
        let repository = try await SQLiteLicenseRepository.open(path: data + "/licensed.sqlite", logger: logger)
        try await repository.migrate()
        let seats = InProcessSeatStore(clock: clock)
        for license in try await repository.licenses(tenant: nil) {
            for session in try await repository.sessions(license: license.id, includeEnded: false) {
                await seats.restore(session, seatLimit: license.seats)
            }
        }
        let service = LicenseService(
            repository: repository, seats: seats, signer: keyRing, clock: clock,
            configuration: ServiceConfiguration(issuer: settings.issuer), logger: logger
        )

        // Bootstrap operator
        var newKey: String?
        if try await repository.userCount(role: .platformOperator) == 0 {
            let apiKey = settings.bootstrapAPIKey ?? APIKey.generate()
            guard APIKey.isWellFormed(apiKey) else {
                throw LicenseError(.invalidArgument, .invalidRequest, "LICENSED_BOOTSTRAP_API_KEY must look like lk_ followed by at least 17 characters of [A-Za-z0-9_-]")
            }
            let now = clock.now()
            let user = User(id: UserID("usr_bootstrap"), tenantID: nil, name: "bootstrap operator", role: .platformOperator, createdAt: now)
            try await repository.createUser(
                user, apiKey: APIKeyRecord(hash: APIKey.hash(apiKey), userID: user.id, createdAt: now),
                audit: AuditEvent(at: now, tenantID: nil, actor: nil, action: "user.bootstrap", target: user.id.rawValue)
            )
            newKey = apiKey
        }
        return EmbeddedEnvironment(service: service, repository: repository, tls: tls, caCertificatePath: caPath, newBootstrapKey: newKey)
    }
}
