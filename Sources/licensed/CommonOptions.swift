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

    @Option(name: .customLong("kek"), help: "A key-encryption key for the stored signing keys, ID=file:PATH or ID=env:VARIABLE (32 bytes, base64 or hex). Repeatable: the first seals, all open.")
    var keks: [String] = []

    /// Flags, then environment, then the config file, then the default.
    func resolve(_ flag: String?, env: String, file key: String, default fallback: String? = nil) throws -> String? {
        if let flag { return flag }
        if let value = try Self.environment(env) { return value }
        if let value = try fileSettings()[key] { return value }
        return fallback
    }

    /// The environment variable `name`, or the contents of the file `name_FILE` names (one
    /// trailing newline dropped), so that secrets can be mounted as files rather than passed in
    /// the environment (Kubernetes Secret volumes, Docker and systemd credentials). Empty is unset.
    static func environment(_ name: String) throws -> String? {
        let environment = ProcessInfo.processInfo.environment
        let value = environment[name].flatMap { $0.isEmpty ? nil : $0 }
        guard let path = environment[name + "_FILE"].flatMap({ $0.isEmpty ? nil : $0 }) else { return value }
        guard value == nil else { throw ValidationError("set \(name) or \(name)_FILE, not both") }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationError("cannot read \(path), which \(name)_FILE names")
        }
        var text = String(decoding: data, as: UTF8.self)
        if text.hasSuffix("\r\n") { text.removeLast(2) } else if text.hasSuffix("\n") { text.removeLast() }
        return text.isEmpty ? nil : text
    }

    /// The key-encryption keys: `--kek` flags, else `LICENSED_KEKS` (specs separated by ';'),
    /// else the config file's `keks` (the same form).
    func keyEncryptionKeys() throws -> KeyEncryptionKeys {
        let specs = try keks.isEmpty
            ? (resolve(nil, env: "LICENSED_KEKS", file: "keks")?.split(separator: ";").map(String.init) ?? [])
            : keks
        do {
            return try KeyEncryptionKeys(try specs.map(Self.keyEncryptionKey))
        } catch let error as LicenseError {
            throw ValidationError(error.message)
        }
    }

    /// `ID=file:PATH`, `ID=env:VARIABLE` or `ID=PATH`.
    static func keyEncryptionKey(_ spec: String) throws -> (id: String, material: Data) {
        let parts = spec.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, !parts[1].isEmpty else {
            throw ValidationError("--kek wants ID=file:PATH or ID=env:VARIABLE, not '\(spec)'")
        }
        let (id, source) = (parts[0].trimmingCharacters(in: .whitespaces), parts[1])
        let text: String
        if source.hasPrefix("env:") {
            let name = String(source.dropFirst(4))
            guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else {
                throw ValidationError("the key-encryption key '\(id)' names the environment variable \(name), which is not set")
            }
            text = value
        } else {
            let path = source.hasPrefix("file:") ? String(source.dropFirst(5)) : source
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ValidationError("cannot read \(path), the key-encryption key '\(id)'")
            }
            if data.count == 32 { return (id, data) }  // raw bytes (head -c 32 /dev/urandom)
            text = String(decoding: data, as: UTF8.self)
        }
        do {
            return (id, try KeyEncryptionKeys.material(fromText: text, id: id))
        } catch let error as LicenseError {
            throw ValidationError(error.message)
        }
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
                          "sweep_interval", "drain_timeout", "max_connections", "max_connections_per_address", "sign_in_timeout", "trace_every", "ops_listen", "metrics_license_series", "metrics_interval", "signing_key_rotation", "keks"]
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
        var settings = ServerEnvironment.Settings(
            dataDirectory: try resolve(dataDir, env: "LICENSED_DATA_DIR", file: "data_dir", default: "licensed-data")!
        )
        settings.bootstrapAPIKey = try Self.environment("LICENSED_BOOTSTRAP_API_KEY")
        settings.keyEncryption = try keyEncryptionKeys()
        if let url = try resolve(postgresURL, env: "LICENSED_POSTGRES_URL", file: "postgres_url") {
            do { settings.postgres = try PostgresSettings(url: url) } catch let error as LicenseError { throw ValidationError(error.message) }
        }
        return settings
    }
}
