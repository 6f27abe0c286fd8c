import ArgumentParser
import LicenseWire

struct KeyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "key", abstract: "Create, list, rotate and revoke API keys (a key is shown once; the server keeps its hash).",
        discussion: """
        Examples:
          licensectl key create --name laptop
          licensectl key create --user usr_… --name ci
          licensectl key list --tenant acme
          licensectl key rotate key_…
          licensectl key revoke key_…
        """,
        subcommands: [Create.self, List.self, Rotate.self, Revoke.self]
    )

    static func show(_ created: Coditect_License_V1_ApiKeyCreated, _ connection: Connection) throws {
        try connection.print(created, fields: [
            ("key id", created.key.keyID), ("user", created.key.userID), ("name", Table.orDash(created.key.name)),
            ("api key (shown once)", created.apiKey),
        ])
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an API key for yourself, or (administrators) for a user of your tenant.",
            discussion: "Examples:\n  licensectl key create --name laptop\n  licensectl key create --user usr_alice --name ci"
        )
        @OptionGroup var connection: Connection
        @Option(help: "The user (default: you).") var user: String = ""
        @Option(help: "A label, e.g. laptop or ci.") var name: String = ""

        func run() async throws {
            try await connection.run { client in
                var request = Coditect_License_V1_CreateApiKeyRequest()
                request.userID = user
                request.name = name
                try KeyCommand.show(try await client.call(.createApiKey(request)).apiKeyCreated, connection)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List API keys: yours, a user's, or a tenant's (administrators).",
            discussion: "Examples:\n  licensectl key list\n  licensectl key list --tenant acme"
        )
        @OptionGroup var connection: Connection
        @Option(help: "One user's keys.") var user: String = ""
        @Option(help: "A tenant's keys.") var tenant: String = ""

        func run() async throws {
            try await connection.run { client in
                var request = Coditect_License_V1_ListApiKeysRequest()
                request.userID = user
                request.tenantID = tenant
                let list = try await client.call(.listApiKeys(request)).apiKeys
                try connection.print(list, columns: ["key id", "user", "tenant", "name", "created", "revoked"],
                                     rows: list.keys.map { [$0.keyID, $0.userID, Table.orDash($0.tenantID), Table.orDash($0.name), Table.time($0.createdAtMs), Table.time($0.revokedAtMs)] })
            }
        }
    }

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replace a key with a new one; the old key stops working at once.",
            discussion: "Example:\n  licensectl key rotate key_0123456789abcdef"
        )
        @OptionGroup var connection: Connection
        @Argument(help: "The key id (key_…).") var key: String

        func run() async throws {
            try await connection.run { client in
                var request = Coditect_License_V1_RotateApiKeyRequest()
                request.keyID = key
                try KeyCommand.show(try await client.call(.rotateApiKey(request)).apiKeyCreated, connection)
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a key at once.",
            discussion: "Example:\n  licensectl key revoke key_0123456789abcdef"
        )
        @OptionGroup var connection: Connection
        @Argument(help: "The key id (key_…).") var key: String

        func run() async throws {
            try await connection.run { client in
                var request = Coditect_License_V1_RevokeApiKeyRequest()
                request.keyID = key
                let revoked = try await client.call(.revokeApiKey(request)).apiKey
                try connection.print(revoked, columns: ["key id", "user", "revoked"], rows: [[revoked.keyID, revoked.userID, Table.time(revoked.revokedAtMs)]])
            }
        }
    }
}

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Query the audit log, newest first (operators; tenant administrators: their tenant).",
        discussion: """
        Every change, every administrative read and every refused call is recorded with who, what and when.

        Examples:
          licensectl audit --tenant acme --since 24h
          licensectl audit --user usr_… --action session. --limit 50
          licensectl audit --action refused.acquire --since 2026-11-01 --until 2026-11-02 --output json
        """
    )
    @OptionGroup var connection: Connection
    @Option(help: "Only this tenant (default: yours; operators: every tenant).") var tenant: String = ""
    @Option(help: "Only events by this user.") var user: String = ""
    @Option(help: "Only this action (license.update), or actions under a prefix ending in '.' (session.).") var action: String = ""
    @Option(help: "From this time on: a date, a date-time, or an age (24h, 7d).") var since: String?
    @Option(help: "Before this time.") var until: String?
    @Option(parsing: .unconditional, help: "At most this many events (default 100; 0: every matching event). Pages are followed.", transform: CountArgument.parser("--limit")) var limit: UInt32 = 100

    func run() async throws {
        var request = Coditect_License_V1_QueryAuditRequest()
        request.tenantID = tenant
        request.userID = user
        request.action = action
        if let since { request.sinceMs = try TimeArgument.milliseconds(since, option: "--since") }
        if let until { request.untilMs = try TimeArgument.milliseconds(until, option: "--until") }
        try await connection.run { client in
            var list = Coditect_License_V1_AuditEventList()
            list.events = try await Pages.collect(limit: limit) { token, size in
                var page = request
                page.pageToken = token
                page.limit = size
                let answer = try await client.call(.queryAudit(page)).auditEvents
                return (answer.events, answer.nextPageToken)
            }
            try connection.print(list, columns: ["time", "tenant", "actor", "action", "target", "outcome"],
                                 rows: list.events.map { [Table.time($0.atMs), Table.orDash($0.tenantID), Table.orDash($0.actor), $0.action, Table.orDash($0.target), $0.count > 1 ? "\($0.outcome) ×\($0.count)" : $0.outcome] })
        }
    }
}

struct SigningKeyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "signing-key", abstract: "Rotate the key that signs lease tokens (operators).",
        discussion: """
        The new key signs from now on, on every replica within 30 seconds; the old key stays in the published \
        JWKS until the longest-lived token it can have signed has expired (30 days).

        Examples:
          licensectl signing-key rotate
          licensectl signing-key rotate --algorithm RS256
        """,
        subcommands: [Rotate.self]
    )

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a new signing key current.",
            discussion: "Examples:\n  licensectl signing-key rotate\n  licensectl signing-key rotate --algorithm RS256"
        )
        @OptionGroup var connection: Connection
        @Option(help: "EdDSA, RS256 or PS256 (default: the current key's).") var algorithm: String = ""

        func run() async throws {
            try await connection.run { client in
                var request = Coditect_License_V1_RotateSigningKeyRequest()
                request.algorithm = algorithm
                let rotation = try await client.call(.rotateSigningKey(request)).signingKeyRotation
                try connection.print(rotation, fields: [
                    ("signing key", rotation.keyID), ("algorithm", rotation.algorithm),
                    ("retired", Table.orDash(rotation.retiredKeyIds.joined(separator: ", "))),
                    ("retired keys published until", Table.time(rotation.publishedUntilMs)),
                ])
            }
        }
    }
}
