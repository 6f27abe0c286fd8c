import ArgumentParser
import LicenseWire

struct UserCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "user", abstract: "Create, list, disable and enable users.",
        discussion: """
        Examples:
          licensectl user create --tenant acme --name "Alice" --email alice@acme.com --no-api-key
          licensectl user create --tenant acme --name ci --role service
          licensectl user list --tenant acme
          licensectl user disable usr_…
        """,
        subcommands: [Create.self, List.self, Disable.self, Enable.self]
    )

    static func rows(_ users: [Coditect_License_V1_User]) -> [[String]] {
        users.map { [$0.userID, Table.orDash($0.tenantID), $0.name, $0.role, Table.orDash($0.email), $0.disabled ? "disabled" : "active", $0.identitySubject.isEmpty ? "-" : "bound"] }
    }
    static let columns = ["user", "tenant", "name", "role", "email", "status", "identity"]

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a user; its first API key is printed once.",
            discussion: "Example:\n  licensectl user create --tenant acme --name Alice --email alice@acme.test"
        )
        @OptionGroup var connection: Connection
        @Option(help: "The user's tenant (empty for --role operator).") var tenant: String = ""
        @Option(help: "Display name.") var name: String
        @Option(help: "user (default), tenant_admin, service or operator.") var role: String = "user"
        @Option(help: "The e-mail an ID-token sign-in is matched on.") var email: String = ""
        @Flag(name: .customLong("no-api-key"), help: "Create no API key: the user signs in with an ID token (needs --email).") var noAPIKey = false

        func run() async throws {
            try await connection.run { client in
                var request = Coditect_License_V1_CreateUserRequest()
                request.tenantID = tenant
                request.name = name
                request.role = role
                request.email = email
                request.withoutApiKey = noAPIKey
                let user = try await client.call(.createUser(request)).user
                try connection.print(user, fields: [
                    ("user", user.userID), ("tenant", Table.orDash(user.tenantID)), ("name", user.name), ("role", user.role),
                    ("email", Table.orDash(user.email)), ("api key (shown once)", Table.orDash(user.apiKey)),
                ])
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List a tenant's users (administrators).",
            discussion: "Example:\n  licensectl user list --tenant acme"
        )
        @OptionGroup var connection: Connection
        @Option(help: "The tenant (default: your own; operators: every user).") var tenant: String = ""

        func run() async throws {
            try await connection.run { client in
                var list = Coditect_License_V1_UserList()
                list.users = try await Pages.collect { token, size in
                    var request = Coditect_License_V1_ListUsersRequest()
                    request.tenantID = tenant
                    request.pageToken = token
                    request.pageSize = size
                    let answer = try await client.call(.listUsers(request)).users
                    return (answer.users, answer.nextPageToken)
                }
                try connection.print(list, columns: UserCommand.columns, rows: UserCommand.rows(list.users))
            }
        }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Disable a user: no more sign-ins, and its live sessions are revoked.",
            discussion: "Example:\n  licensectl user disable usr_0123456789abcdef"
        )
        @OptionGroup var connection: Connection
        @Argument(help: "The user id.") var user: String

        func run() async throws { try await UserCommand.setDisabled(true, user, connection) }
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Enable a disabled user again.",
            discussion: "Example:\n  licensectl user enable usr_0123456789abcdef"
        )
        @OptionGroup var connection: Connection
        @Argument(help: "The user id.") var user: String

        func run() async throws { try await UserCommand.setDisabled(false, user, connection) }
    }

    static func setDisabled(_ disabled: Bool, _ user: String, _ connection: Connection) async throws {
        try await connection.run { client in
            var request = Coditect_License_V1_SetUserDisabledRequest()
            request.userID = user
            request.disabled = disabled
            let result = try await client.call(.setUserDisabled(request)).setUserDisabled
            try connection.print(result, columns: columns + ["sessions revoked"], rows: rows([result.user]).map { $0 + ["\(result.revokedSessionIds.count)"] })
        }
    }
}

struct SessionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "session", abstract: "List and revoke sessions.",
        discussion: """
        Examples:
          licensectl session list --license acme-pro
          licensectl session list --user usr_… --all
          licensectl session revoke ses_…
        """,
        subcommands: [List.self, Revoke.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List sessions: of a license, of a user, or (neither given) every session you may see.",
            discussion: "Examples:\n  licensectl session list\n  licensectl session list --license acme-pro\n  licensectl session list --user usr_0123456789abcdef --all"
        )
        @OptionGroup var connection: Connection
        @Option(help: "The license id.") var license: String = ""
        @Option(help: "The user id.") var user: String = ""
        @Flag(help: "Include ended sessions.") var all = false
        @Option(parsing: .unconditional, help: "At most this many sessions, newest first (default: every one). Pages are followed.", transform: CountArgument.parser("--limit")) var limit: UInt32?

        func validate() throws {
            guard license.isEmpty || user.isEmpty else { throw ValidationError("give at most one of --license and --user") }
        }

        func run() async throws {
            try await connection.run { client in
                var list = Coditect_License_V1_SessionList()
                list.sessions = try await Pages.collect(limit: limit) { token, size in
                    var request = Coditect_License_V1_ListSessionsRequest()
                    request.licenseID = license
                    request.userID = user
                    request.includeEnded = all
                    request.pageToken = token
                    request.pageSize = size
                    let answer = try await client.call(.listSessions(request)).sessions
                    return (answer.sessions, answer.nextPageToken)
                }
                try connection.print(list, columns: ["session", "license", "user", "name", "hardware", "started", "lease expires", "ended"],
                                     rows: list.sessions.map { [$0.sessionID, $0.licenseID, $0.userID, Table.orDash($0.userName), String($0.hardwareID.prefix(16)), Table.time($0.createdAtMs), Table.time($0.leaseExpiresAtMs), Table.orDash($0.endReason)] })
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a session: its seat is freed, its holder is told at once, and its next heartbeat fails.",
            discussion: "Example:\n  licensectl session revoke ses_0123456789abcdef"
        )
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
}
