#if canImport(Glibc)
import Glibc
#endif
import BackendTestSupport
import Foundation
import LicenseClient
import LicenseWire
import Testing

/// Two `license-example` processes of one user on one machine, as two CODITECT windows would be:
/// they share one seat, each with its own session, and one exiting never ends the other's lease.
@Suite("license-example processes", .serialized, .timeLimit(.minutes(2)))
struct LicenseExampleTests {
    static var root: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// A running `license-example` whose output is collected as it comes.
    final class Example: @unchecked Sendable {
        let process: Process
        private let lock = NSLock()
        private var collected = ""

        init(arguments: [String], apiKey: String) throws {
            process = Process()
            process.executableURL = LicenseExampleTests.root.appendingPathComponent(".build/debug/license-example")
            process.arguments = arguments
            var environment = ProcessInfo.processInfo.environment
            environment["LICENSE_API_KEY"] = apiKey
            process.environment = environment
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
                let data = handle.availableData
                guard let self else { return }
                self.lock.withLock { self.collected += String(decoding: data, as: UTF8.self) }
            }
            try process.run()
        }

        var text: String { lock.withLock { collected } }

        /// The session id it printed once it held its seat.
        func session() async throws -> String {
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline {
                if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("holding a seat") }),
                   let range = line.range(of: "(session ") {
                    return String(line[range.upperBound...].prefix { $0 != ")" })
                }
                guard process.isRunning else { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            throw TestServerError("license-example did not take a seat: \(text)")
        }

        /// Ctrl-C, then waits for it to exit (it releases its seat first).
        func interrupt() async throws -> Int32 {
            kill(process.processIdentifier, SIGINT)
            let deadline = ContinuousClock.now + .seconds(30)
            while process.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
            return process.terminationStatus
        }
    }

    /// Runs `body` on an operator's connection, closed afterwards.
    func asOperator<T: Sendable>(_ server: TestServer, _ body: (LicenseConnection) async throws -> T) async throws -> T {
        let admin = try await server.connect()
        do {
            let result = try await body(admin)
            await admin.close()
            return result
        } catch {
            await admin.close()
            throw error
        }
    }

    func seatsUsed(_ server: TestServer) async throws -> UInt32? {
        try await asOperator(server) { admin in
            var request = Coditect_License_V1_LicenseStatusRequest()
            request.licenseID = "acme-pro"
            return try await admin.call(.licenseStatus(request)).licenseStatus.licenses.first?.seatsUsed
        }
    }

    func liveSessions(_ server: TestServer) async throws -> [String] {
        try await asOperator(server) { admin in
            var request = Coditect_License_V1_ListSessionsRequest()
            request.licenseID = "acme-pro"
            return try await admin.call(.listSessions(request)).sessions.sessions.map(\.sessionID).sorted()
        }
    }

    @Test func twoProcessesOfOneUserOnOneMachineHoldOneSeatAndEachReleasesOnlyItsOwn() async throws {
        let binary = Self.root.appendingPathComponent(".build/debug/license-example").path
        try #require(FileManager.default.isExecutableFile(atPath: binary), "build first: Tools/test.sh")
        let state = try makeTemporaryDirectory("license-example")
        defer { try? FileManager.default.removeItem(atPath: state) }
        try await TestServer.run { server in
            // One seat: a second seat for the second window would be refused.
            let keys = try await server.setUpLicense(seats: 1, users: 1)
            let arguments = ["--server", "127.0.0.1:\(server.port)", "--ca", server.caFile, "--license", "acme-pro", "--state-directory", state]
            let first = try Example(arguments: arguments, apiKey: keys[0])
            let firstSession = try await first.session()
            let second = try Example(arguments: arguments, apiKey: keys[0])
            let secondSession = try await second.session()
            #expect(firstSession != secondSession, "each process has its own session")
            #expect(try await seatsUsed(server) == 1)
            #expect(try await liveSessions(server) == [firstSession, secondSession].sorted())

            // The first exits: its session ends, the second keeps its lease and the seat stays held.
            #expect(try await first.interrupt() == 0, "\(first.text)")
            #expect(first.text.contains("released the seat"))
            #expect(try await seatsUsed(server) == 1)
            #expect(try await liveSessions(server) == [secondSession])
            let heartbeat = try await server.connect(apiKey: keys[0])
            #expect(try await heartbeat.heartbeat(sessionID: secondSession).leaseExpiresAtMs > 0, "the second lease is still live")
            await heartbeat.close()
            #expect(second.process.isRunning && !second.text.contains("the server ended the lease"), "\(second.text)")

            // The second exits: the seat is free.
            #expect(try await second.interrupt() == 0, "\(second.text)")
            #expect(try await seatsUsed(server) == 0)
            #expect(try await liveSessions(server).isEmpty)
        }
    }
}
