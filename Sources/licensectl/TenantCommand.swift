import Foundation
import ArgumentParser
import LicenseWire

struct TenantCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tenant", abstract: "Create, show, change, suspend and list tenants.",
        discussion: """
        Examples:
          licensectl tenant create "Acme Corp" --id acme
          licensectl tenant update acme --provisioning email_domain --email-domains acme.com,acme.co.uk
          licensectl tenant suspend acme
          licensectl tenant list --output json
        """,
        subcommands: [Create.self, Show.self, Update.self, Suspend.self, Resume.self, List.self]
    )

    static func show(_ tenant: Coditect_License_V1_Tenant, _ connection: Connection) throws {
        try connection.print(tenant, fields: [
            ("id", tenant.id), ("name", tenant.name), ("status", tenant.status), ("provisioning", tenant.provisioning),
            ("email domains", Table.orDash(tenant.emailDomains.joined(separator: ", "))),
            ("identity tenant", Table.orDash(tenant.identityTenant)), ("created", Table.time(tenant.createdAtMs)),
        ])
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a tenant (operators).",
            discussion: "Example:\n  licensectl tenant create \"Acme Corp\" --id acme"
        )
        @OptionGroup var connection: Connection
        @Argument(help: "The tenant's display name.") var name: String
        @Option(help: "An id of [A-Za-z0-9._:-] (default: generated).") var id: String = ""

        func run() async throws {
            try await connection.run { client in
                var request = Coditect_License_V1_CreateTenantRequest()
                request.name = name
                request.id = id
                try TenantCommand.show(try await client.call(.createTenant(request)).tenant, connection)
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a tenant.",
            discussion: "Example:\n  licensectl tenant show acme"
        )
        @OptionGroup var connection: Connection
        @Argument(help: "The tenant id.") var tenant: String

        func run() async throws {
            try await connection.run { client in
                var request = Coditect_License_V1_GetTenantRequest()
                request.tenantID = tenant
                try TenantCommand.show(try await client.call(.getTenant(request)).tenant, connection)
            }
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change a tenant's name or sign-in settings (domains and identity tenant: operators).",
            discussion: "Example:\n  licensectl tenant update acme --name \"Acme Inc\""
        )
        @OptionGroup var connection: Connection
        @Argument(help: "The tenant id.") var tenant: String
        @Option(help: "A new display name.") var name: String?
        @Option(help: "admin (only users an administrator created) or email_domain (also anyone with a verified e-mail in the tenant's domains).") var provisioning: String?
        @Option(name: .customLong("email-domains"), help: "Comma-separated e-mail domains the tenant owns (replaces the list; '' clears it).") var emailDomains: String?
        @Option(name: .customLong("identity-tenant"), help: "The identity provider's tenant id mapped to this tenant ('' clears it).") var identityTenant: String?

        func run() async throws {
            try await connection.run { client in
                var request = Coditect_License_V1_UpdateTenantRequest()
                request.tenantID = tenant
                if let name { request.name = name }
                if let provisioning { request.provisioning = provisioning }
                if let emailDomains {
                    request.replaceEmailDomains = true
                    request.emailDomains = List.split(emailDomains)
                }
                if let identityTenant { request.identityTenant = identityTenant }
                try TenantCommand.show(try await client.call(.updateTenant(request)).tenant, connection)
            }
        }
    }

    struct Suspend: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Suspend a tenant: its users can no longer sign in (operators).",
            discussion: "Example:\n  licensectl tenant suspend acme"
        )
        @OptionGroup var connection: Connection
        @Argument(help: "The tenant id.") var tenant: String

        func run() async throws { try await TenantCommand.setStatus("suspended", tenant, connection) }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a suspended tenant active again (operators).",
            discussion: "Example:\n  licensectl tenant resume acme"
        )
        @OptionGroup var connection: Connection
        @Argument(help: "The tenant id.") var tenant: String

        func run() async throws { try await TenantCommand.setStatus("active", tenant, connection) }
    }

    static func setStatus(_ status: String, _ tenant: String, _ connection: Connection) async throws {
        try await connection.run { client in
            var request = Coditect_License_V1_UpdateTenantRequest()
            request.tenantID = tenant
            request.status = status
            try show(try await client.call(.updateTenant(request)).tenant, connection)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List tenants (operators: every tenant; others: their own).",
            discussion: "Example:\n  licensectl tenant list --output json"
        )
        @OptionGroup var connection: Connection

        func run() async throws {
            try await connection.run { client in
                let list = try await client.call(.listTenants(.init())).tenants
                try connection.print(list, columns: ["id", "name", "status", "provisioning", "created"],
                                     rows: list.tenants.map { [$0.id, $0.name, $0.status, $0.provisioning, Table.time($0.createdAtMs)] })
            }
        }

        static func split(_ text: String) -> [String] {
            text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
    }
}
