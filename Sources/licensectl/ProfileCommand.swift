import ArgumentParser
import Foundation

struct ProfileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile", abstract: "Save connection settings under a name so daily commands stay short.",
        discussion: """
        Examples:
          licensectl profile set prod --server licenses.acme.com:7443 --ca ~/acme-ca.pem --api-key-file ~/.acme-key
          licensectl profile use prod
          licensectl profile list
        """,
        subcommands: [Set.self, Use.self, List.self]
    )

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create or change a profile (and make it current if it is the first).",
            discussion: "Example:\n  licensectl profile set local --server 127.0.0.1:7443 --ca licensed-data/tls/ca.pem --api-key lk_…"
        )
        @Argument(help: "The profile's name.") var name: String
        @Option(help: "Server HOST:PORT.") var server: String?
        @Option(help: "CA certificate PEM file.") var ca: String?
        @Option(name: .customLong("api-key-file"), help: "A file holding the API key (recommended).") var apiKeyFile: String?
        @Option(name: .customLong("api-key"), help: "The API key itself, stored in the config file (mode 0600).") var apiKey: String?
        @Option(name: .customLong("id-token-file"), help: "A file holding an OIDC ID token.") var idTokenFile: String?
        @Option(name: .customLong("client-cert"), help: "An operator's TLS client certificate (PEM).") var clientCertificate: String?
        @Option(name: .customLong("client-key"), help: "Its private key (PEM).") var clientKey: String?

        func run() async throws {
            let store = ProfileStore()
            do {
                var document = try store.load()
                var profile = document.profiles[name] ?? Profile()
                if let server { profile.server = server }
                if let ca { profile.ca = Self.absolute(ca) }
                if apiKey != nil || apiKeyFile != nil || idTokenFile != nil {
                    profile.apiKey = apiKey
                    profile.apiKeyFile = apiKeyFile.map(Self.absolute)
                    profile.idTokenFile = idTokenFile.map(Self.absolute)
                }
                if clientCertificate != nil || clientKey != nil {
                    guard let clientCertificate, let clientKey else { throw ProfileError(message: "give both --client-cert and --client-key") }
                    profile.clientCertificate = Self.absolute(clientCertificate)
                    profile.clientKey = Self.absolute(clientKey)
                }
                document.profiles[name] = profile
                if document.current == nil { document.current = name }
                try store.save(document)
                print("profile \(name) saved in \(store.path)" + (document.current == name ? " (current)" : ""))
            } catch let error as ProfileError {
                throw ValidationError(error.message)
            }
        }

        static func absolute(_ path: String) -> String {
            let expanded = (path as NSString).expandingTildeInPath
            return expanded.hasPrefix("/") ? expanded : FileManager.default.currentDirectoryPath + "/" + expanded
        }
    }

    struct Use: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a profile the current one.",
            discussion: "Example:\n  licensectl profile use prod"
        )
        @Argument(help: "The profile's name.") var name: String

        func run() async throws {
            let store = ProfileStore()
            do {
                var document = try store.load()
                guard document.profiles[name] != nil else {
                    throw ProfileError(message: "no profile '\(name)'; profiles: \(document.profiles.keys.sorted().joined(separator: ", "))")
                }
                document.current = name
                try store.save(document)
                print("current profile: \(name)")
            } catch let error as ProfileError {
                throw ValidationError(error.message)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List profiles (credentials are never printed).",
            discussion: "Example:\n  licensectl profile list"
        )

        func run() async throws {
            do {
                let document = try ProfileStore().load()
                let rows = document.profiles.keys.sorted().map { name -> [String] in
                    let profile = document.profiles[name]!
                    let credential: String
                    if let file = profile.apiKeyFile {
                        credential = "api key file \(file)"
                    } else if profile.apiKey != nil {
                        credential = "api key (stored)"
                    } else if let file = profile.idTokenFile {
                        credential = "id token file \(file)"
                    } else if let file = profile.clientCertificate {
                        credential = "client certificate \(file)"
                    } else {
                        credential = "-"
                    }
                    return [document.current == name ? "*" : "", name, profile.server ?? "-", profile.ca ?? "-", credential]
                }
                print(Table.render(columns: ["", "name", "server", "ca", "credential"], rows: rows), terminator: "")
            } catch let error as ProfileError {
                throw ValidationError(error.message)
            }
        }
    }
}
