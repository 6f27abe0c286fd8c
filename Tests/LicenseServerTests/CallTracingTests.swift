#if canImport(Glibc)
import Glibc
#endif
import BackendTestSupport
import Foundation
import LicenseClient
import Testing

/// `--trace-every`: the sampled calls' stages reach the log, in the order a call passes them.
@Suite("Call tracing", .serialized, .timeLimit(.minutes(2)))
struct CallTracingTests {
    @Test func everySampledCallLogsItsStagesAndABadSettingIsRefused() async throws {
        let daemon = try await LicensedProcess.start(["--trace-every", "1", "--log-level", "info"])
        let keys = try await daemon.setUpLicense("trace-pro", seats: 5, users: 1, leaseTTL: 600, heartbeat: 60)
        let connection = try await daemon.connect(apiKey: keys[0])
        let lease = try await connection.acquire(licenseID: "trace-pro", hardwareID: "hw-trace")
        try await connection.release(sessionID: lease.sessionID)
        await connection.close()
        _ = await daemon.stop(signal: SIGTERM)

        let traces = daemon.log().split(separator: "\n").filter { $0.contains("call trace") }
        let acquire = try #require(traces.first { $0.contains("call=acquire") }, "\(daemon.log())")
        // The acquire passed the seat claim, the group commit (on the embedded store's SQLite
        // writer) and the signature, each with its time in µs.
        for stage in ["task.started", "license", "seat.claim", "commit.enqueued", "commit.batch_started", "commit.batch_done", "commit.resumed", "session.recorded", "token.signed", "answered", "total_us"] {
            #expect(acquire.range(of: "\(stage)=[0-9]+", options: .regularExpression) != nil, "no \(stage) in: \(acquire)")
        }
        let release = try #require(traces.first { $0.contains("call=release") })
        for stage in ["session.lookup", "session.ended", "seat.release"] {
            #expect(release.range(of: "\(stage)=[0-9]+", options: .regularExpression) != nil, "no \(stage) in: \(release)")
        }

        let refused = try await CommandRun.run(LicensedBinaryTests.binary, ["--trace-every", "0"])
        #expect(refused.status == 64 && refused.output.contains("--trace-every"), "\(refused.output)")
    }
}
