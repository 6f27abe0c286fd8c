import BackendTestSupport
import Foundation
import LicenseClient
import LicenseCore
import LicenseLoad
import LicenseServer
import LicenseWire
import NIOSSL
import Testing

/// A short replay of each built-in scenario against the embedded daemon: correctness only
/// (no unexpected errors, every session released). Speed is measured by `license-load`, not here.
@Suite("Load tester smoke replay", .serialized, .timeLimit(.minutes(2)))
struct LoadSmokeTests {
    static let principal = Principal(userID: "usr_bootstrap", tenantID: nil, role: .platformOperator, name: "op")

    @Test(arguments: Scenario.allCases)
    func scenarioReplaysCleanly(_ scenario: Scenario) async throws {
        try await TestServer.run { server in
            let keys = try await server.setUpLicense(seats: 40, users: 4)
            let users = 24
            var options = LoadOptions(endpoint: server.endpoint, credentials: keys, virtualUsers: users,
                                      connections: scenario.connectionPerUser ? users : 4, runID: "smoke")
            options.duration = .milliseconds(800)
            options.maxCalls = 5_000
            let result = try await LoadRunner.run(scenario.recording(license: "acme-pro"), options: options)
            let report = LoadReport(scenario: scenario.rawValue, options: options, result: result, daemon: nil)
            #expect(report.errorCount == 0, "\(report.table())")
            #expect(result.sessionsLeft == 0)
            #expect(result.calls["hello"]?.count == UInt64(options.connections))
            func count(_ names: String...) -> UInt64 { names.compactMap { result.calls[$0]?.count }.reduce(0, +) }
            let acquires = count("acquire", "setup acquire")
            #expect(acquires >= UInt64(users))
            #expect(count("release", "teardown release") == acquires, "every acquired seat is released")
            if scenario == .heartbeatOnly {
                // Setup is reported apart from the loop, whose clock starts when every user is set up.
                #expect(count("setup acquire") == UInt64(users))
                #expect(report.calls.first { $0.call == "setup acquire" }?.callsPerSecond == 0)
                #expect(report.totalCallsPerSecond == report.calls.first { $0.call == "heartbeat" }?.callsPerSecond)
            }
            if scenario == .plan {
                // Each user's calls in order are acquire, three heartbeats, release, however many of
                // them it made in setup (spread phases: the users that start later in the loop).
                let heartbeats = count("heartbeat", "setup heartbeat")
                #expect(heartbeats >= 3 * (acquires - UInt64(users)) && heartbeats <= 3 * acquires)
            }
            let status = try await server.service.licenseStatus(tenant: nil, license: "acme-pro", by: Self.principal)
            #expect(status.map(\.seatsUsed) == [0])
        }
    }

    @Test func openLoopKeepsToTheRateAndMeasuresFromTheSchedule() async throws {
        try await TestServer.run { server in
            let keys = try await server.setUpLicense(seats: 20, users: 2)
            var options = LoadOptions(endpoint: server.endpoint, credentials: keys, virtualUsers: 10, connections: 2, runID: "open")
            options.pacing = .openLoop(callsPerSecond: 200)
            options.duration = .seconds(1)
            let result = try await LoadRunner.run(Scenario.heartbeatOnly.recording(license: "acme-pro"), options: options)
            let heartbeats = Double(result.calls["heartbeat"]?.count ?? 0)
            // The schedule caps the count (a slow machine sends fewer, never more): each of the 10
            // users has 20 sends due before the deadline, and none due at or after it is made.
            #expect(heartbeats >= 1 && heartbeats <= 200, "at most 200 heartbeats in one second at 200/s: \(heartbeats)")
            #expect(result.sessionsLeft == 0)
        }
    }

    @Test func recordingsRoundTripThroughJSONLinesAndBadLinesAreNamed() throws {
        let recording = Scenario.plan.recording(license: "acme-pro")
        let text = try recording.encoded()
        #expect(text.hasPrefix("{\"description\""))
        #expect(try Recording(decoding: text) == recording)
        let lines = text.split(separator: "\n")
        #expect(throws: RecordingError.self) { try Recording(decoding: "{\"format\":\"other\"}\n") }
        let broken = lines[0] + "\n" + lines[1] + "\n{\"user\":0,\"phase\":\"loop\",\"frame\":{\"nope\":1}}\n"
        do {
            _ = try Recording(decoding: String(broken))
            Issue.record("a bad frame was accepted")
        } catch let error as RecordingError {
            #expect(error.description.hasPrefix("line 3"))
        }
    }

    /// Real client traffic through the recording proxy: passed on unchanged, recorded without
    /// the Hello, with each acquire's answered session id; the recording then replays cleanly.
    @Test func theRecordingProxyCapturesRealClientTrafficThatReplaysCleanly() async throws {
        try await TestServer.run { server in
            let keys = try await server.setUpLicense(seats: 10, users: 2)
            let tlsDir = temporaryPath("proxy-tls")
            defer { try? FileManager.default.removeItem(atPath: tlsDir) }
            let files = try LocalCertificateAuthority.ensure(in: tlsDir)
            let tls = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(files.serverCertificate).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: files.serverKey, format: .pem))
            )
            let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
            let (stopSignal, stop) = AsyncStream.makeStream(of: Void.self)
            let upstream = server.endpoint
            let recording = try await withThrowingTaskGroup(of: Recording.self) { group in
                group.addTask {
                    try await RecordingProxy(tls: tls, upstream: upstream).record(
                        host: "127.0.0.1", port: 0, description: "two clients",
                        onListening: { address in
                            portContinuation.yield(address.port ?? 0)
                            portContinuation.finish()
                        },
                        until: { for await _ in stopSignal {} }
                    )
                }
                var iterator = ports.makeAsyncIterator()
                let port = try #require(await iterator.next())
                let proxy = LicenseServerEndpoint(host: "127.0.0.1", port: port, caFile: files.caCertificate)
                var sessions: [String] = []
                for (index, key) in keys.enumerated() {
                    let connection = try await LicenseConnection.connect(to: proxy)
                    try await connection.hello(apiKey: key)
                    let acquired = try await connection.call(.acquire(.with { $0.licenseID = "acme-pro"; $0.hardwareID = "hw-\(index)" })).acquire
                    for _ in 0..<2 { _ = try await connection.call(.heartbeat(.with { $0.sessionID = acquired.sessionID })) }
                    _ = try await connection.call(.release(.with { $0.sessionID = acquired.sessionID }))
                    await connection.close()
                    sessions.append(acquired.sessionID)
                }
                stop.finish()
                let recording = try #require(try await group.next())
                return recording
            }
            #expect(recording.users == 2)
            #expect(recording.entries.count == 8, "acquire, two heartbeats and release per client; no Hello")
            for user in 0..<2 {
                let script = recording.script(user: user).loop
                guard script.count == 4, case .acquire(let acquire) = script[0].call, case .heartbeat(let heartbeat) = script[1].call,
                      case .release(let release) = script[3].call
                else {
                    Issue.record("user \(user) recorded \(script.map(\.call))")
                    continue
                }
                #expect(acquire.licenseID == "acme-pro")
                let session = try #require(script[0].sessionID, "the acquire carries the session the daemon answered")
                #expect(heartbeat.sessionID == session && release.sessionID == session)
                #expect(script.map(\.atMs) == script.map(\.atMs).sorted())
            }
            #expect(try Recording(decoding: try recording.encoded()) == recording)

            var options = LoadOptions(endpoint: server.endpoint, credentials: keys, virtualUsers: 6, connections: 2, runID: "replayed")
            options.duration = .milliseconds(500)
            let result = try await LoadRunner.run(recording, options: options)
            let report = LoadReport(scenario: "recorded", options: options, result: result, daemon: nil)
            #expect(report.errorCount == 0, "\(report.table())")
            #expect(result.sessionsLeft == 0)
            // With spread phases, users that start later in the loop acquire in their setup.
            let acquires = (result.calls["acquire"]?.count ?? 0) + (result.calls["setup acquire"]?.count ?? 0)
            #expect(acquires >= 6)
            #expect((result.calls["release"]?.count ?? 0) + (result.calls["teardown release"]?.count ?? 0) == acquires,
                    "every acquire released, in the loop or (cut short by the deadline) at the end")
            let status = try await server.service.licenseStatus(tenant: nil, license: "acme-pro", by: Self.principal)
            #expect(status.map(\.seatsUsed) == [0])
        }
    }

    /// The `license-load` binary itself, whose `main` moves every task onto NIO's event loops
    /// (one thread by default) before anything else runs: a short open-loop `plan` through it
    /// replays cleanly, and a bad `LICENSE_LOAD_THREADS` is refused before anything starts.
    @Test func theLoadTesterBinaryReplaysOnItsEventLoopAndRefusesABadThreadCount() async throws {
        let binary = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/debug/license-load").path
        var environment = ProcessInfo.processInfo.environment
        environment["LICENSECTL_API_KEY"] = nil
        for bad in ["0", "65", "two"] {
            environment["LICENSE_LOAD_THREADS"] = bad
            let refused = try await CommandRun.run(binary, ["write-scenario", "--out", "/dev/null"], environment: environment)
            #expect(refused.status == 64, "\(refused.output)")
            #expect(refused.stderr.contains("LICENSE_LOAD_THREADS must be a whole number from 1 to 64, not '\(bad)'"))
        }
        environment["LICENSE_LOAD_THREADS"] = nil
        let runEnvironment = environment
        try await TestServer.run { server in
            let run = try await CommandRun.run(binary, [
                "run", "--server", "127.0.0.1:\(server.port)", "--ca", server.caFile, "--api-key", TestServer.bootstrapKey,
                "--scenario", "plan", "--users", "20", "--connections", "4", "--rate", "200", "--duration", "1",
                "--output", "json", "--no-progress",
            ], environment: runEnvironment)
            #expect(run.status == 0, "\(run.output)")
            let report = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], "\(run.output)")
            let calls = try #require(report["calls"] as? [[String: Any]])
            let errors = calls.compactMap { $0["errors"] as? [String: Int] }.flatMap(\.values).reduce(0, +)
            #expect(errors == 0, "\(run.stdout)")
            #expect(report["sessions_left"] as? Int == 0)
            let made = calls.compactMap { $0["count"] as? Int }.reduce(0, +)
            #expect(made >= 20, "every user acquired at least: \(run.stdout)")
        }
    }
}
