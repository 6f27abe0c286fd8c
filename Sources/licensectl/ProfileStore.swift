import Foundation

/// A failure reading or writing the config file.
struct ProfileError: Error {
    var message: String
}

/// One named set of connection settings.
struct Profile: Codable, Equatable {
    var server: String?
    var ca: String?
    /// Kept in the file (mode 0600) when given with `--api-key`; prefer `apiKeyFile`.
    var apiKey: String?
    var apiKeyFile: String?
    var idTokenFile: String?
    /// A TLS client certificate and key (PEM) that sign an operator in.
    var clientCertificate: String?
    var clientKey: String?

    enum CodingKeys: String, CodingKey {
        case server, ca, apiKey = "api_key", apiKeyFile = "api_key_file", idTokenFile = "id_token_file"
        case clientCertificate = "client_cert", clientKey = "client_key"
    }
}

/// `~/.config/licensectl/config.json` (or `$LICENSECTL_CONFIG`): profiles and the current one.
struct ProfileStore {
    struct Document: Codable, Equatable {
        var current: String?
        var profiles: [String: Profile] = [:]
    }

    let path: String

    init(path: String? = nil) {
        let env = ProcessInfo.processInfo.environment
        self.path = path ?? env["LICENSECTL_CONFIG"] ?? (env["HOME"] ?? NSHomeDirectory()) + "/.config/licensectl/config.json"
    }

    func load() throws -> Document {
        guard FileManager.default.fileExists(atPath: path) else { return Document() }
        guard let data = FileManager.default.contents(atPath: path) else { throw ProfileError(message: "cannot read \(path)") }
        do {
            return try JSONDecoder().decode(Document.self, from: data)
        } catch {
            throw ProfileError(message: "\(path) is not a licensectl config file (expected {\"current\": …, \"profiles\": {…}})")
        }
    }

    func save(_ document: Document) throws {
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let temporary = path + ".tmp-\(getpid())"
        guard FileManager.default.createFile(atPath: temporary, contents: try encoder.encode(document), attributes: [.posixPermissions: 0o600]) else {
            throw ProfileError(message: "cannot write \(path)")
        }
        guard rename(temporary, path) == 0 else {
            unlink(temporary)
            throw ProfileError(message: "cannot write \(path)")
        }
    }

    /// The named profile, or the current one when `name` is nil; nil when there is none at all.
    func profile(named name: String?) throws -> Profile? {
        let document = try load()
        if let name {
            guard let profile = document.profiles[name] else {
                let known = document.profiles.keys.sorted()
                throw ProfileError(message: "no profile '\(name)' in \(path)" + (known.isEmpty ? "" : "; profiles: \(known.joined(separator: ", "))"))
            }
            return profile
        }
        return document.current.flatMap { document.profiles[$0] }
    }
}
