import ArgumentParser
import Foundation
import LicenseClient
import LicenseLoad
import LicenseWire
import NIOCore
import NIOPosix

@main
struct LicenseLoadTool: AsyncParsableCommand {

    /// Runs every task on NIO's event loop threads, one by default (`LICENSE_LOAD_THREADS` sets
    /// how many), with no Swift-concurrency pool beside them. A virtual user's send, its answer
    /// and its next timer then stay on one thread instead of hopping between the pool and the
    /// loops: the generator needs less of the cores it shares with the daemon it measures, and
    /// adds less of its own delay to the latencies it reports (docs/benchmarks.md, "A cheaper load
    /// generator"). Must run before anything uses the event loops, so it cannot be an option.
    static func main() async {
        let threads = ProcessInfo.processInfo.environment["LICENSE_LOAD_THREADS"] ?? "1"
        guard let count = Int(threads), (1...64).contains(count) else {
            FileHandle.standardError.write(Data("license-load: LICENSE_LOAD_THREADS must be a whole number from 1 to 64, not '\(threads)'\n".utf8))
            Foundation.exit(64)
        }
        NIOSingletons.groupLoopCountSuggestion = count
        _ = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        await Self.main(nil)
    }

    static let configuration = CommandConfiguration(
        commandName: "license-load",
        abstract: "Replay recorded or built-in client traffic against a running licensed and report latency and throughput.",
        discussion: """
        `run` signs in with an operator API key (--api-key or LICENSECTL_API_KEY), creates a tenant, a license \
        and users of its own for the run, replays, releases every seat, and prints a table (or JSON).

        Examples:
          license-load run --scenario plan --users 1000 --connections 50 --duration 30 --ca licensed-data/tls/ca.pem
          license-load run --scenario heartbeat-only --users 10000 --connections 100 --rate 20000 --pid $(pidof licensed)
          license-load run --scenario storm --users 2000 --output json --report storm.json
          license-load record --listen 127.0.0.1:7444 --server 127.0.0.1:7443 --ca licensed-data/tls/ca.pem \\
            --tls-dir proxy-tls --duration 600 --out fleet.jsonl   # point clients at :7444, trusting proxy-tls/ca.pem
          license-load run --recording fleet.jsonl --users 500 --connections 20
          license-load write-scenario --scenario plan --out plan.jsonl
          license-load idle --connections 10000 --pid $(pidof licensed)

        Everything runs on one event-loop thread; LICENSE_LOAD_THREADS=N (1-64) gives it N.
        """,
        subcommands: [Run.self, Record.self, WriteScenario.self, Idle.self]
    )
}

/// Where the daemon is and how to sign in as an operator.
struct Target: ParsableArguments {
    @Option(help: "Server HOST:PORT.") var server = "127.0.0.1:7443"
    @Option(help: "CA certificate PEM of the server.") var ca: String
    @Option(name: .customLong("api-key"), help: "An operator API key (default: LICENSECTL_API_KEY).") var apiKey: String?
    @Option(help: "The daemon's pid: report its CPU and peak memory.") var pid: Int32?

    func endpoint() throws -> LicenseServerEndpoint {
        var endpoint = try LicenseServerEndpoint(parsing: server, caFile: ca)
        endpoint.callTimeout = .seconds(60)
        endpoint.connectTimeout = .seconds(60)
        return endpoint
    }

    func operatorKey() throws -> String {
        guard let key = apiKey ?? ProcessInfo.processInfo.environment["LICENSECTL_API_KEY"], !key.isEmpty else {
            throw ValidationError("give --api-key or set LICENSECTL_API_KEY (an operator key)")
        }
        return key
    }

    /// Creates a tenant, a license with `seats` seats and `users` users for this run; returns
    /// the license id and the users' API keys.
    func setUp(runID: String, seats: Int, users: Int) async throws -> (license: String, keys: [String]) {
        let admin = try await LicenseConnection.connect(to: try endpoint())
        do {
            try await admin.hello(apiKey: try operatorKey(), clientName: "license-load")
            _ = try await admin.call(.createTenant(.with { $0.id = runID; $0.name = "license-load \(runID)" }))
            _ = try await admin.call(.createLicense(.with { $0.id = runID; $0.tenantID = runID; $0.name = runID; $0.seats = UInt32(seats) }))
            var keys: [String] = []
            for index in 0..<users {
                keys.append(try await admin.call(.createUser(.with { $0.tenantID = runID; $0.name = "load-\(index)"; $0.role = "service" })).user.apiKey)
            }
            await admin.close()
            return (runID, keys)
        } catch {
            await admin.close()
            throw error
        }
    }
}
