import ArgumentParser
import Foundation
import LicenseClient
import LicenseWire

/// A quick closed-loop benchmark of a running `licensed`: acquires, then heartbeats, then
/// releases, over C connections with P requests in flight on each, for a bounded time each phase.
/// It creates its own tenant, license and users (ids suffixed with the run's start time).
@main
struct LicenseBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "license-bench", abstract: "Quick acquire/heartbeat benchmark against a running licensed.")

    @Option(help: "Server HOST:PORT.") var server = "127.0.0.1:7443"
    @Option(help: "CA certificate PEM.") var ca: String
    @Option(name: .customLong("api-key"), help: "An operator API key (or LICENSECTL_API_KEY).") var apiKey: String?
    @Option(help: "Connections.") var connections = 1
    @Option(help: "Requests in flight per connection.") var pipeline = 8
    @Option(help: "Seconds per phase (at most 60).") var seconds = 5.0
    @Option(help: "Most calls per phase (bounds the run).") var maxCalls = 200_000

    struct Phase {
        var calls = 0
        var errors: [String: Int] = [:]
        var latenciesMicros: [Double] = []
        var elapsed: Double = 0
    }

    func run() async throws {
        guard (1...1000).contains(connections), (1...128).contains(pipeline), seconds > 0, seconds <= 60 else {
            throw ValidationError("connections 1…1000, pipeline 1…128, seconds up to 60")
        }
        guard let key = apiKey ?? ProcessInfo.processInfo.environment["LICENSECTL_API_KEY"] else { throw ValidationError("give --api-key") }
        let endpoint = try LicenseServerEndpoint(parsing: server, caFile: ca)
        let admin = try await LicenseConnection.connect(to: endpoint)
        try await admin.hello(apiKey: key)
        let run = "bench-\(Int(Date().timeIntervalSince1970))"
        var tenant = Coditect_License_V1_CreateTenantRequest()
        tenant.id = run
        tenant.name = run
        _ = try await admin.call(.createTenant(tenant))
        var license = Coditect_License_V1_CreateLicenseRequest()
        license.id = run
        license.tenantID = run
        license.name = run
        license.seats = 1_000_000
        _ = try await admin.call(.createLicense(license))
        var clients: [LicenseConnection] = []
        for i in 0..<connections {
            var user = Coditect_License_V1_CreateUserRequest()
            user.tenantID = run
            user.name = "bench-user-\(i)"
            let userKey = try await admin.call(.createUser(user)).user.apiKey
            let client = try await LicenseConnection.connect(to: endpoint)
            try await client.hello(apiKey: userKey)
            clients.append(client)
        }
        await admin.close()
        let all = clients
        let licenseID = run
        let deadline = Duration.milliseconds(Int64(seconds * 1000))
        let perWorker = max(1, maxCalls / (connections * pipeline))

        // Acquire: each call a distinct machine, so each takes a new seat.
        let (acquire, sessions) = await phase(all, deadline: deadline, perWorker: perWorker) { client, worker, n in
            try await client.acquire(licenseID: licenseID, hardwareID: "hw-\(worker)-\(n)", idempotencyKey: "\(worker)-\(n)").sessionID
        }
        // Heartbeat the sessions each connection holds, round robin.
        var byConnection: [[String]] = Array(repeating: [], count: all.count)
        for (worker, session) in sessions { byConnection[worker / pipeline].append(session) }
        let held = byConnection
        let pipeline = self.pipeline
        let (heartbeat, _) = await phase(all, deadline: deadline, perWorker: perWorker) { client, worker, n in
            let own = held[worker / pipeline]
            return try await client.heartbeat(sessionID: own[(n * pipeline + worker % pipeline) % own.count], tokenExpiresAtMs: UInt64.max / 2).leaseExpiresAtMs.description
        }
        // Release everything (also measured).
        let (release, _) = await phase(all, deadline: .seconds(300), perWorker: Int.max) { client, worker, n in
            let own = held[worker / pipeline]
            let index = n * pipeline + worker % pipeline
            guard index < own.count else { throw CancellationError() }
            try await client.release(sessionID: own[index])
            return ""
        }
        for client in all { await client.close() }
        print("connections=\(connections) pipeline=\(pipeline) phase=\(seconds)s")
        print(Self.row("call", "calls", "errors", "calls/s", "p50 ms", "p99 ms", "max ms"))
        for (name, phase) in [("acquire", acquire), ("heartbeat", heartbeat), ("release", release)] {
            let sorted = phase.latenciesMicros.sorted()
            func pct(_ p: Double) -> String { sorted.isEmpty ? "-" : String(format: "%.2f", sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] / 1000) }
            let errors = phase.errors.map { "\($0.key):\($0.value)" }.joined(separator: ",")
            print(Self.row(name, "\(phase.calls)", errors.isEmpty ? "0" : errors, String(format: "%.0f", Double(phase.calls) / max(phase.elapsed, 0.001)),
                           pct(0.5), pct(0.99), sorted.last.map { String(format: "%.2f", $0 / 1000) } ?? "-"))
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func row(_ cells: String...) -> String {
        cells.enumerated().map { $0.offset == 0 ? $0.element.padding(toLength: 10, withPad: " ", startingAt: 0) : String(repeating: " ", count: max(0, 12 - $0.element.count)) + $0.element }.joined()
    }

    /// Runs `call` from `pipeline` workers per connection until the deadline or the count bound.
    func phase(_ clients: [LicenseConnection], deadline: Duration, perWorker: Int,
               _ call: @escaping @Sendable (LicenseConnection, Int, Int) async throws -> String) async -> (Phase, [(Int, String)]) {
        let start = ContinuousClock.now
        let end = start + deadline
        let pipeline = self.pipeline
        return await withTaskGroup(of: (Phase, [(Int, String)]).self) { group in
            for (c, client) in clients.enumerated() {
                for p in 0..<pipeline {
                    let worker = c * pipeline + p
                    group.addTask {
                        var local = Phase()
                        var results: [(Int, String)] = []
                        var n = 0
                        while ContinuousClock.now < end, n < perWorker {
                            let t0 = ContinuousClock.now
                            do {
                                results.append((worker, try await call(client, worker, n)))
                            } catch is CancellationError {
                                break
                            } catch let error as LicenseCallError {
                                local.errors[error.reason, default: 0] += 1
                            } catch {
                                local.errors["OTHER", default: 0] += 1
                            }
                            local.latenciesMicros.append(Self.seconds(ContinuousClock.now - t0) * 1e6)
                            local.calls += 1
                            n += 1
                        }
                        return (local, results)
                    }
                }
            }
            var total = Phase()
            var all: [(Int, String)] = []
            for await (local, results) in group {
                total.calls += local.calls
                total.latenciesMicros += local.latenciesMicros
                for (k, v) in local.errors { total.errors[k, default: 0] += v }
                all += results
            }
            total.elapsed = Self.seconds(ContinuousClock.now - start)
            return (total, all)
        }
    }
}
