import ArgumentParser
import Foundation
import LicenseClient
import LicenseWire
import SwiftProtobuf

@main
struct Licensectl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "licensectl",
        abstract: "Operate a CODITECT license server over its wire protocol.",
        discussion: """
        Connection settings come from, in order: flags (--server, --ca, --api-key-file, --id-token-file), \
        the environment (LICENSECTL_SERVER, LICENSECTL_CA, LICENSECTL_API_KEY, LICENSECTL_ID_TOKEN), then the \
        profile (--profile, LICENSECTL_PROFILE, or the config file's current profile). The config file is \
        ~/.config/licensectl/config.json (or LICENSECTL_CONFIG); `licensectl profile set` writes it (mode 0600).

        Examples:
          licensectl profile set prod --server licenses.acme.com:7443 --ca ca.pem --api-key-file ~/.licensed-key
          licensectl tenant create "Acme Corp" --id acme
          licensectl license create --tenant acme --seats 10 --name "CODITECT Pro" --id acme-pro
          licensectl license update acme-pro --seats 25 --valid-until 2027-12-31
          licensectl user create --tenant acme --name "Alice" --email alice@acme.com
          licensectl session list --license acme-pro
          licensectl audit --tenant acme --action session. --since 24h
          licensectl status --output json

        Exit status: 0 success; 1 refused or invalid (an unknown id, no seats, an untrusted server \
        certificate, a missing file); 3 not authenticated or not allowed; 4 server unavailable (not \
        running, unreachable, or a backend of it down); 64 usage error (an unknown command, flag or value).
        """,
        subcommands: [
            Status.self, TenantCommand.self, LicenseCommand.self, UserCommand.self, SessionCommand.self, KeyCommand.self,
            AuditCommand.self, SigningKeyCommand.self, ProfileCommand.self,
        ]
    )
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json
}

/// Connection and output options of every command that talks to a server.
struct Connection: ParsableArguments {
    @Option(help: "The profile to use (env LICENSECTL_PROFILE; default: the config file's current profile).")
    var profile: String?

    @Option(help: "Server HOST:PORT (env LICENSECTL_SERVER; default 127.0.0.1:7443).")
    var server: String?

    @Option(help: "CA certificate PEM that signed the server's certificate (env LICENSECTL_CA).")
    var ca: String?

    @Option(name: .customLong("api-key-file"), help: "A file holding the API key (env LICENSECTL_API_KEY holds the key itself).")
    var apiKeyFile: String?

    @Option(name: .customLong("id-token-file"), help: "A file holding an OIDC ID token (env LICENSECTL_ID_TOKEN holds the token itself).")
    var idTokenFile: String?

    @Option(name: .customLong("client-cert"), help: "A TLS client certificate (PEM) that signs an operator in (mutual TLS); with --client-key.")
    var clientCertificate: String?

    @Option(name: .customLong("client-key"), help: "The client certificate's private key (PEM).")
    var clientKey: String?

    @Option(help: "table (default) or json.")
    var output: OutputFormat = .table

    /// Connects, authenticates, runs `body`, and turns failures into one line on stderr and an exit status.
    func run(_ body: (LicenseConnection) async throws -> Void) async throws {
        do {
            let settings = try resolve()
            var endpoint = try LicenseServerEndpoint(parsing: settings.server, caFile: settings.ca)
            endpoint.clientCertificateFile = settings.clientCertificate
            endpoint.clientKeyFile = settings.clientKey
            let connection = try await LicenseConnection.connect(to: endpoint)
            do {
                try await connection.hello(settings.credential, clientName: "licensectl")
                try await body(connection)
            } catch {
                await connection.close()
                throw error
            }
            await connection.close()
        } catch let error as LicenseCallError {
            let hint = error.reason == "TLS_UNTRUSTED" ? " (--ca FILE or LICENSECTL_CA)" : ""
            FileHandle.standardError.write(Data("licensectl: \(error.codeName) \(error.reason): \(error.message)\(hint)\n".utf8))
            throw ExitCode(Self.exitStatus(error))
        } catch let error as ProfileError {
            FileHandle.standardError.write(Data("licensectl: \(error.message)\n".utf8))
            throw ExitCode(1)
        }
    }

    static func exitStatus(_ error: LicenseCallError) -> Int32 {
        switch error.code {
        case .unauthenticated, .permissionDenied: 3
        case .unavailable: 4
        default: 1
        }
    }

    struct Resolved {
        var server: String
        var ca: String?
        var credential: LicenseCredential
        var clientCertificate: String?
        var clientKey: String?
    }

    /// Flags, then environment, then the profile.
    func resolve() throws -> Resolved {
        let env = ProcessInfo.processInfo.environment
        let store = ProfileStore()
        let chosen = try store.profile(named: profile ?? env["LICENSECTL_PROFILE"])
        let server = server ?? env["LICENSECTL_SERVER"] ?? chosen?.server ?? "127.0.0.1:7443"
        let ca = ca ?? env["LICENSECTL_CA"] ?? chosen?.ca
        let certificate = clientCertificate ?? chosen?.clientCertificate
        let key = clientKey ?? chosen?.clientKey
        guard (certificate == nil) == (key == nil) else { throw ProfileError(message: "give both --client-cert and --client-key, or neither") }
        let credential: LicenseCredential
        if let apiKeyFile {
            credential = .apiKey(try Self.secret(from: apiKeyFile, what: "API key"))
        } else if let idTokenFile {
            credential = .idToken(try Self.secret(from: idTokenFile, what: "ID token"))
        } else if let key = env["LICENSECTL_API_KEY"], !key.isEmpty {
            credential = .apiKey(key)
        } else if let token = env["LICENSECTL_ID_TOKEN"], !token.isEmpty {
            credential = .idToken(token)
        } else if let key = chosen?.apiKey {
            credential = .apiKey(key)
        } else if let file = chosen?.apiKeyFile {
            credential = .apiKey(try Self.secret(from: file, what: "API key"))
        } else if let file = chosen?.idTokenFile {
            credential = .idToken(try Self.secret(from: file, what: "ID token"))
        } else if certificate != nil {
            credential = .clientCertificate
        } else {
            throw LicenseCallError(code: .unauthenticated, reason: "CREDENTIAL_REQUIRED",
                                   message: "no credential: give --api-key-file, set LICENSECTL_API_KEY, or run `licensectl profile set`")
        }
        return Resolved(server: server, ca: ca, credential: credential, clientCertificate: certificate, clientKey: key)
    }

    static func secret(from path: String, what: String) throws -> String {
        let expanded = (path as NSString).expandingTildeInPath
        guard FileManager.default.fileExists(atPath: expanded) else {
            throw ProfileError(message: "no such file: \(path) (the \(what) file)")
        }
        guard let data = FileManager.default.contents(atPath: (path as NSString).expandingTildeInPath) else {
            throw ProfileError(message: "cannot read the \(what) file \(path)")
        }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty else { throw ProfileError(message: "the \(what) file \(path) is empty") }
        return text
    }

    /// Prints a message as JSON, or as a table of `columns` × `rows`.
    func print(_ message: some SwiftProtobuf.Message, columns: [String], rows: [[String]]) throws {
        switch output {
        case .json:
            var options = JSONEncodingOptions()
            options.preserveProtoFieldNames = true
            options.alwaysPrintInt64sAsNumbers = true
            Swift.print(try message.jsonString(options: options))
        case .table:
            Swift.print(Table.render(columns: columns, rows: rows), terminator: "")
        }
    }

    /// Prints a message as JSON, or as `field: value` lines.
    func print(_ message: some SwiftProtobuf.Message, fields: [(String, String)]) throws {
        switch output {
        case .json:
            try print(message, columns: [], rows: [])
        case .table:
            let width = fields.map(\.0.count).max() ?? 0
            for (name, value) in fields {
                Swift.print(name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value)
            }
        }
    }
}

enum Table {
    static func render(columns: [String], rows: [[String]]) -> String {
        var widths = columns.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in i == cells.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ") + "\n"
        }
        return line(columns.map { $0.uppercased() }) + rows.map(line).joined()
    }

    static func time(_ ms: UInt64) -> String {
        guard ms > 0 else { return "-" }
        let formatter = ISO8601DateFormatter()
        return formatter.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
    }

    static func orDash(_ text: String) -> String { text.isEmpty ? "-" : text }
}

/// Whole-number options (`--seats`, `--limit`, …): a negative value is refused as what it is
/// ("must be ≥ 0"), not taken for a flag ("missing value"). Use with `parsing: .unconditional`.
enum CountArgument {
    static func parser(_ option: String) -> @Sendable (String) throws -> UInt32 {
        { text in
            guard let value = Int64(text) else { throw ValidationError("\(option) must be a whole number, not '\(text)'") }
            guard value >= 0 else { throw ValidationError("\(option) must be ≥ 0, not \(value)") }
            guard value <= Int64(UInt32.max) else { throw ValidationError("\(option) must be at most \(UInt32.max)") }
            return UInt32(value)
        }
    }
}

/// Command-line time values: an ISO 8601 date or date-time, or an age such as `90m`, `24h`, `7d`
/// (meaning that long ago), in milliseconds since the epoch.
enum TimeArgument {
    static func milliseconds(_ text: String, option: String, now: Date = Date()) throws -> UInt64 {
        if let unit = text.last, let amount = Double(text.dropLast()), amount >= 0 {
            let seconds: Double? = switch unit {
            case "s": amount
            case "m": amount * 60
            case "h": amount * 3600
            case "d": amount * 86_400
            default: nil
            }
            if let seconds { return UInt64(max(0, now.timeIntervalSince1970 - seconds) * 1000) }
        }
        let full = ISO8601DateFormatter()
        if let date = full.date(from: text) { return UInt64(date.timeIntervalSince1970 * 1000) }
        let day = ISO8601DateFormatter()
        day.formatOptions = [.withFullDate]
        if let date = day.date(from: text) { return UInt64(date.timeIntervalSince1970 * 1000) }
        throw ValidationError("\(option) must be a date (2027-12-31), a date-time (2027-12-31T18:00:00Z) or an age (90m, 24h, 7d), not '\(text)'")
    }
}
