import ArgumentParser
import LicenseWire

struct LicenseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "license", abstract: "Create, show, change, suspend and list licenses.",
        discussion: """
        Examples:
          licensectl license create --tenant acme --seats 10 --name "CODITECT Pro" --id acme-pro --features ai,sync
          licensectl license update acme-pro --seats 25 --valid-until 2027-12-31 --offline-grace 172800
          licensectl license suspend acme-pro
          licensectl license list --tenant acme
        """,
        subcommands: [Create.self, Show.self, Update.self, Suspend.self, Resume.self, List.self]
    )

    static func show(_ license: Coditect_License_V1_License, _ connection: Connection) throws {
        try connection.print(license, fields: [
            ("id", license.id), ("tenant", license.tenantID), ("name", license.name), ("seats", "\(license.seats)"),
            ("status", license.status), ("lease ttl", "\(license.leaseTtlS)s"), ("heartbeat", "\(license.heartbeatIntervalS)s"),
            ("offline grace", "\(license.offlineGraceS)s"), ("valid from", Table.time(license.validFromMs)),
            ("valid until", Table.time(license.validUntilMs)), ("features", Table.orDash(license.features.joined(separator: ", "))),
            ("created", Table.time(license.createdAtMs)),
        ])
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a license with N concurrent seats (operators).",
            discussion: "Example:\n  licensectl license create --tenant acme --seats 10 --id acme-pro --features ai,sync"
        )
        @OptionGroup var connection: Connection
        @Option(help: "The tenant that owns it.") var tenant: String
        @Option(parsing: .unconditional, help: "Concurrent seats.", transform: CountArgument.parser("--seats")) var seats: UInt32
        @Option(help: "Display name.") var name: String = "CODITECT"
        @Option(help: "An id (default: generated).") var id: String = ""
        @Option(name: .customLong("lease-ttl"), parsing: .unconditional, help: "Lease TTL in seconds (default 360).", transform: CountArgument.parser("--lease-ttl")) var leaseTTL: UInt32 = 0
        @Option(name: .customLong("heartbeat"), parsing: .unconditional, help: "Heartbeat interval in seconds (default 300).", transform: CountArgument.parser("--heartbeat")) var heartbeat: UInt32 = 0
        @Option(name: .customLong("offline-grace"), parsing: .unconditional, help: "Offline grace in seconds (default 86400).", transform: CountArgument.parser("--offline-grace")) var grace: UInt32 = 0
        @Option(name: .customLong("valid-from"), help: "Not usable before this date (2027-01-01 or a date-time).") var validFrom: String?
        @Option(name: .customLong("valid-until"), help: "Not usable from this date on.") var validUntil: String?
        @Option(help: "Comma-separated feature names.") var features: String = ""

        func run() async throws {
            var request = Coditect_License_V1_CreateLicenseRequest()
            request.tenantID = tenant
            request.seats = seats
            request.name = name
            request.id = id
            request.leaseTtlS = leaseTTL
            request.heartbeatIntervalS = heartbeat
            request.offlineGraceS = grace
            if let validFrom { request.validFromMs = try TimeArgument.milliseconds(validFrom, option: "--valid-from") }
            if let validUntil { request.validUntilMs = try TimeArgument.milliseconds(validUntil, option: "--valid-until") }
            request.features = TenantCommand.List.split(features)
            try await connection.run { client in
                try LicenseCommand.show(try await client.call(.createLicense(request)).license, connection)
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a license.",
            discussion: "Example:\n  licensectl license show acme-pro --output json"
        )
        @OptionGroup var connection: Connection
        @Argument(help: "The license id.") var license: String

        func run() async throws {
            try await connection.run { client in
                var request = Coditect_License_V1_GetLicenseRequest()
                request.licenseID = license
                try LicenseCommand.show(try await client.call(.getLicense(request)).license, connection)
            }
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change seats, validity, lease times, features or name (operators). Only the options given change.",
            discussion: """
            Live sessions keep their seats when seats shrink; new lease times apply from each session's next heartbeat.

            Examples:
              licensectl license update acme-pro --seats 25 --valid-until 2027-12-31
              licensectl license update acme-pro --valid-until none --features ai,sync
            """
        )
        @OptionGroup var connection: Connection
        @Argument(help: "The license id.") var license: String
        @Option(help: "A new display name.") var name: String?
        @Option(parsing: .unconditional, help: "Concurrent seats.", transform: CountArgument.parser("--seats")) var seats: UInt32?
        @Option(name: .customLong("lease-ttl"), parsing: .unconditional, help: "Lease TTL in seconds.", transform: CountArgument.parser("--lease-ttl")) var leaseTTL: UInt32?
        @Option(name: .customLong("heartbeat"), parsing: .unconditional, help: "Heartbeat interval in seconds.", transform: CountArgument.parser("--heartbeat")) var heartbeat: UInt32?
        @Option(name: .customLong("offline-grace"), parsing: .unconditional, help: "Offline grace in seconds.", transform: CountArgument.parser("--offline-grace")) var grace: UInt32?
        @Option(name: .customLong("valid-from"), help: "A date, or 'none' to remove the bound.") var validFrom: String?
        @Option(name: .customLong("valid-until"), help: "A date, or 'none' to remove the bound.") var validUntil: String?
        @Option(help: "Comma-separated feature names (replaces the list; '' clears it).") var features: String?

        func run() async throws {
            var request = Coditect_License_V1_UpdateLicenseRequest()
            request.licenseID = license
            if let name { request.name = name }
            if let seats { request.seats = seats }
            if let leaseTTL { request.leaseTtlS = leaseTTL }
            if let heartbeat { request.heartbeatIntervalS = heartbeat }
            if let grace { request.offlineGraceS = grace }
            if let validFrom { request.validFromMs = validFrom == "none" ? 0 : try TimeArgument.milliseconds(validFrom, option: "--valid-from") }
            if let validUntil { request.validUntilMs = validUntil == "none" ? 0 : try TimeArgument.milliseconds(validUntil, option: "--valid-until") }
            if let features {
                request.replaceFeatures = true
                request.features = TenantCommand.List.split(features)
            }
            try await connection.run { client in
                try LicenseCommand.show(try await client.call(.updateLicense(request)).license, connection)
            }
        }
    }

    struct Suspend: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Suspend a license: acquires and heartbeats fail with LICENSE_SUSPENDED (operators).",
            discussion: "Example:\n  licensectl license suspend acme-pro"
        )
        @OptionGroup var connection: Connection
        @Argument(help: "The license id.") var license: String

        func run() async throws { try await LicenseCommand.setStatus("suspended", license, connection) }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a suspended license active again (operators).",
            discussion: "Example:\n  licensectl license resume acme-pro"
        )
        @OptionGroup var connection: Connection
        @Argument(help: "The license id.") var license: String

        func run() async throws { try await LicenseCommand.setStatus("active", license, connection) }
    }

    static func setStatus(_ status: String, _ license: String, _ connection: Connection) async throws {
        try await connection.run { client in
            var request = Coditect_License_V1_UpdateLicenseRequest()
            request.licenseID = license
            request.status = status
            try show(try await client.call(.updateLicense(request)).license, connection)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List licenses.",
            discussion: "Examples:\n  licensectl license list\n  licensectl license list --tenant acme"
        )
        @OptionGroup var connection: Connection
        @Option(help: "Only this tenant's (operators see every tenant by default).") var tenant: String = ""

        func run() async throws {
            try await connection.run { client in
                var request = Coditect_License_V1_ListLicensesRequest()
                request.tenantID = tenant
                let list = try await client.call(.listLicenses(request)).licenses
                try connection.print(list, columns: ["id", "tenant", "name", "seats", "status", "valid until"],
                                     rows: list.licenses.map { [$0.id, $0.tenantID, $0.name, "\($0.seats)", $0.status, Table.time($0.validUntilMs)] })
            }
        }
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Seats used and total per license.",
        discussion: "Examples:\n  licensectl status\n  licensectl status --license acme-pro --output json"
    )
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
