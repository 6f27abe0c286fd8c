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
        Connection settings come from flags or LICENSECTL_SERVER, LICENSECTL_CA, LICENSECTL_API_KEY.

        Examples:
          licensectl tenant create "Acme Corp" --id acme
          licensectl license create --tenant acme --seats 10 --name "CODITECT Pro" --id acme-pro
          licensectl user create --tenant acme --name alice@acme.test
          licensectl status
          licensectl sessions acme-pro
          licensectl revoke ses_…
        """,
        subcommands: [TenantCommand.self, LicenseCommand.self, UserCommand.self, Status.self, Sessions.self, Revoke.self]
    )
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json
}

/// Connection and output options of every command.
struct Connection: ParsableArguments {
    @Option(help: "Server HOST:PORT (env LICENSECTL_SERVER; default 127.0.0.1:7443).")
    var server: String?

    @Option(help: "CA certificate PEM that signed the server's certificate (env LICENSECTL_CA).")
    var ca: String?

    @Option(name: .customLong("api-key"), help: "API key (env LICENSECTL_API_KEY). Prefer the environment: flags show in process lists.")
    var apiKey: String?

    @Option(help: "table (default) or json.")
    var output: OutputFormat = .table

    /// Connects, authenticates, runs `body`, and turns failures into one line on stderr and exit 1.
    func run(_ body: (LicenseConnection) async throws -> Void) async throws {
        let env = ProcessInfo.processInfo.environment
        do {
            guard let key = apiKey ?? env["LICENSECTL_API_KEY"], !key.isEmpty else {
                throw LicenseCallError(code: .unauthenticated, reason: "CREDENTIAL_REQUIRED", message: "give --api-key or set LICENSECTL_API_KEY")
            }
            let endpoint = try LicenseServerEndpoint(
                parsing: server ?? env["LICENSECTL_SERVER"] ?? "127.0.0.1:7443",
                caFile: ca ?? env["LICENSECTL_CA"]
            )
            let connection = try await LicenseConnection.connect(to: endpoint)
            do {
                try await connection.hello(apiKey: key, clientName: "licensectl")
                try await body(connection)
            } catch {
                await connection.close()
                throw error
            }
            await connection.close()
        } catch let error as LicenseCallError {
            FileHandle.standardError.write(Data("licensectl: \(error.codeName) \(error.reason): \(error.message)\n".utf8))
            throw ExitCode(error.code == .unauthenticated || error.code == .permissionDenied ? 3 : (error.code == .unavailable ? 4 : 1))
        }
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
}

// MARK: - tenant

struct TenantCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tenant", abstract: "Create and list tenants.", subcommands: [Create.self, List.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a tenant (operators).")
        @OptionGroup var connection: Connection
        @Argument(help: "The tenant's display name.") var name: String
        @Option(help: "An id of [A-Za-z0-9._:-] (default: generated).") var id: String = ""

        func run() async throws {
            try await connection.run { client in
                var request = Coditect_License_V1_CreateTenantRequest()
                request.name = name
                request.id = id
                let tenant = try await client.call(.createTenant(request)).tenant
                try connection.print(tenant, columns: ["id", "name", "status"], rows: [[tenant.id, tenant.name, tenant.status]])
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tenants.")
        @OptionGroup var connection: Connection

        func run() async throws {
            try await connection.run { client in
                let list = try await client.call(.listTenants(.init())).tenants
                try connection.print(list, columns: ["id", "name", "status", "created"], rows: list.tenants.map { [$0.id, $0.name, $0.status, Table.time($0.createdAtMs)] })
            }
        }
    }
}

// MARK: - license

struct LicenseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "license", abstract: "Create and list licenses.", subcommands: [Create.self, List.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a license with N concurrent seats (operators).")
        @OptionGroup var connection: Connection
        @Option(help: "The tenant that owns it.") var tenant: String
        @Option(help: "Concurrent seats.") var seats: UInt32
        @Option(help: "Display name.") var name: String = "CODITECT"
        @Option(help: "An id (default: generated).") var id: String = ""
        @Option(name: .customLong("lease-ttl"), help: "Lease TTL in seconds (default 360).") var leaseTTL: UInt32 = 0
        @Option(name: .customLong("heartbeat"), help: "Heartbeat interval in seconds (default 300).") var heartbeat: UInt32 = 0
        @Option(name: .customLong("offline-grace"), help: "Offline grace in seconds (default 86400).") var grace: UInt32 = 0
        @Option(help: "Comma-separated feature names.") var features: String = ""

        func run() async throws {
            try await connection.run { client in
                var request = Coditect_License_V1_CreateLicenseRequest()
                request.tenantID = tenant
                request.seats = seats
                request.name = name
                request.id = id
                request.leaseTtlS = leaseTTL
                request.heartbeatIntervalS = heartbeat
                request.offlineGraceS = grace
                request.features = features.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }
                let license = try await client.call(.createLicense(request)).license
                try connection.print(license, columns: ["id", "tenant", "name", "seats", "lease ttl", "heartbeat"],
                                     rows: [[license.id, license.tenantID, license.name, "\(license.seats)", "\(license.leaseTtlS)s", "\(license.heartbeatIntervalS)s"]])
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List licenses.")
        @OptionGroup var connection: Connection
        @Option(help: "Only this tenant's (operators see every tenant by default).") var tenant: String = ""

        func run() async throws {
            try await connection.run { client in
                var request = Coditect_License_V1_ListLicensesRequest()
                request.tenantID = tenant
                let list = try await client.call(.listLicenses(request)).licenses
                try connection.print(list, columns: ["id", "tenant", "name", "seats", "status"],
                                     rows: list.licenses.map { [$0.id, $0.tenantID, $0.name, "\($0.seats)", $0.status] })
            }
        }
    }
}

// MARK: - user

struct UserCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "user", abstract: "Create users.", subcommands: [Create.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a user and print its API key (shown once).")
        @OptionGroup var connection: Connection
        @Option(help: "The user's tenant (empty for --role operator).") var tenant: String = ""
        @Option(help: "Display name or e-mail.") var name: String
        @Option(help: "user (default), tenant_admin, service or operator.") var role: String = "user"

        func run() async throws {
            try await connection.run { client in
                var request = Coditect_License_V1_CreateUserRequest()
                request.tenantID = tenant
                request.name = name
                request.role = role
                let user = try await client.call(.createUser(request)).user
                try connection.print(user, columns: ["user", "tenant", "role", "api key (shown once)"],
                                     rows: [[user.userID, user.tenantID, user.role, user.apiKey]])
            }
        }
    }
}

// MARK: - status, sessions, revoke

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Seats used and total per license.")
    @OptionGroup var connection: Connection
    @Option(help: "Only this tenant.") var tenant: String = ""
    @Option(help: "Only this license.") var license: String = ""

    func run() async throws {
        try await connection.run { client in
            var request = Coditect_License_V1_LicenseStatusRequest()
            request.tenantID = tenant
            request.licenseID = license
            let result = try await client.call(.licenseStatus(request)).licenseStatus
            try connection.print(result, columns: ["license", "tenant", "name", "used", "total", "status"],
                                 rows: result.licenses.map { [$0.licenseID, $0.tenantID, $0.name, "\($0.seatsUsed)", "\($0.seatsTotal)", $0.status] })
        }
    }
}

struct Sessions: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the sessions of a license.")
    @OptionGroup var connection: Connection
    @Argument(help: "The license id.") var license: String
    @Flag(help: "Include ended sessions.") var all = false

    func run() async throws {
        try await connection.run { client in
            var request = Coditect_License_V1_ListSessionsRequest()
            request.licenseID = license
            request.includeEnded = all
            let list = try await client.call(.listSessions(request)).sessions
            try connection.print(list, columns: ["session", "user", "hardware", "started", "lease expires", "ended"],
                                 rows: list.sessions.map { [$0.sessionID, $0.userID, String($0.hardwareID.prefix(16)), Table.time($0.createdAtMs), Table.time($0.leaseExpiresAtMs), $0.endReason.isEmpty ? "-" : $0.endReason] })
        }
    }
}

struct Revoke: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Revoke a session: its seat is freed and its next heartbeat fails.")
    @OptionGroup var connection: Connection
    @Argument(help: "The session id.") var session: String

    func run() async throws {
        try await connection.run { client in
            var request = Coditect_License_V1_RevokeSessionRequest()
            request.sessionID = session
            let result = try await client.call(.revokeSession(request)).revokeSession
            try connection.print(result, columns: ["revoked"], rows: [[session]])
        }
    }
}
