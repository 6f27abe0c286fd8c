import Foundation
import LicenseClient
import LicenseCore
import LicenseLoad
import LicenseWire
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
            let acquires = result.calls["acquire"]?.count ?? 0
            #expect(acquires >= UInt64(users))
            #expect(result.calls["release"]?.count == acquires, "every acquired seat is released")
            if scenario == .plan {
                let heartbeats = result.calls["heartbeat"]?.count ?? 0
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
            // The schedule caps the count (a slow machine sends fewer, never more).
            #expect(heartbeats >= 1 && heartbeats <= 215, "at most about 200 heartbeats in one second at 200/s: \(heartbeats)")
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
}
