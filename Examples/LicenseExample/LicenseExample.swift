import ArgumentParser
import Foundation
import LicenseClient
import LicenseCore
import UnixSignals

/// Holds a seat the way CODITECT does: acquire on start, print every lease event, release on
/// Ctrl-C. The whole integration is the `withLease` call in `run()`.
@main
struct LicenseExample: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "license-example",
        abstract: "Hold a license seat like CODITECT does: acquire, print lease events, release on Ctrl-C.",
        discussion: """
            Examples:
              license-example --server 127.0.0.1:7443 --ca licensed-data/tls/ca.pem --license acme-pro
              license-example --server a.example.com --server b.example.com --license acme-pro

            The API key comes from --api-key or LICENSE_API_KEY. Stop the server while this runs to
            see the client continue on its offline grace, and start it again to see it resume.
            """
    )

    @Option(name: .customLong("server"), help: "HOST[:PORT] of a license server; repeat for failover, tried in order.")
    var servers: [String] = ["127.0.0.1:7443"]

    @Option(help: "PEM file of the CA that signed the servers' certificates (default: the system's trust store).")
    var ca: String?

    @Option(help: "API key (default: $LICENSE_API_KEY).")
    var apiKey: String?

    @Option(help: "The license to take a seat of.")
    var license: String

    @Flag(help: "Try the servers in random order instead of the order given.")
    var randomOrder = false

    @Option(help: "Folder for cached keys and the last lease (default: ~/.coditect/license).")
    var stateDirectory: String?

    func run() async throws {
        guard let key = apiKey ?? ProcessInfo.processInfo.environment["LICENSE_API_KEY"], !key.isEmpty else {
            throw ValidationError("give an API key with --api-key or LICENSE_API_KEY")
        }
        var configuration = LicenseClientConfiguration(
            endpoints: try servers.map { try LicenseServerEndpoint(parsing: $0, caFile: ca) },
            credentials: .apiKey(key)
        )
        configuration.endpointOrder = randomOrder ? .random : .inOrder
        configuration.clientName = "license-example"
        if let stateDirectory { configuration.stateDirectory = stateDirectory }
        let client = try LicenseClient(configuration: configuration)
        var options = LeaseOptions()
        options.clientInfo = ["app": "license-example"]

        do {
            try await client.withLease(licenseID: license, options: options) { lease in
                Self.say("holding a seat of \(lease.licenseID) (session \(lease.grant.sessionID)); Ctrl-C releases it")
                // Print lease events until Ctrl-C (or SIGTERM); then the scope ends and the seat is released.
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for await event in lease.events { Self.say(Self.describe(event)) }
                    }
                    group.addTask {
                        for await _ in await UnixSignalsSequence(trapping: .sigint, .sigterm) { return }
                    }
                    try await group.next()
                    group.cancelAll()
                }
            }
            Self.say("released the seat")
        } catch let error as LicenseCallError {
            if error.isNoSeats, let total = error.seatsTotal {
                Self.fail("no seat free: all \(total) seats of \(license) are in use")
            } else {
                Self.fail("license: \(error)" + (error.reason == "TLS_UNTRUSTED" ? " (--ca FILE)" : ""))
            }
            throw ExitCode(error.isNoSeats ? 2 : 1)
        }
        await client.close()
    }

    static func describe(_ event: LeaseEvent) -> String {
        switch event {
        case .acquired(let grant): "acquired: session \(grant.sessionID), features \(grant.features), licensed offline until \(date(grant.graceUntil))"
        case .renewed(let grant): "renewed: seat held until \(date(grant.leaseExpiresAt)), next heartbeat \(date(grant.nextHeartbeatAt))"
        case .reacquired(let grant): "re-acquired after a lapse: session \(grant.sessionID)"
        case .serverUnreachable(let until, let error): "server unreachable (\(error.reason)): running on grace until \(date(until))"
        case .clockTurnedBack: "the system clock was turned back: grace is measured without it"
        case .graceExpired: "grace expired: no longer licensed"
        case .revoked: "the session was revoked by an administrator"
        case .lost(let error): "the server ended the lease: \(error)"
        case .released: "released"
        }
    }

    /// Prints a line and flushes it, so that each line shows as it happens even in a pipe or a log.
    static func say(_ line: String) {
        print(line)
        fflush(nil)
    }

    static func fail(_ message: String) {
        FileHandle.standardError.write(Data((message + "\n").utf8))
    }

    static func date(_ timestamp: Timestamp) -> String {
        ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(timestamp.millisecondsSinceEpoch) / 1000))
    }
}
