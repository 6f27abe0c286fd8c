#if canImport(Glibc)
import Glibc
#endif
import BackendTestSupport
import Foundation
import LicenseClient
import LicenseWire
import NIOCore
import NIOPosix
import Testing

/// Connection caps in total and per client address, and what the daemon does when it runs out
/// of file descriptors.
@Suite("Connection caps", .serialized, .timeLimit(.minutes(3)))
struct ConnectionCapTests {
    /// Opens a connection from `source` and sends a good `Hello`: returns the connection and the
    /// first frame it gets (the Hello's answer, or the refusal that replaces it).
    static func open(_ server: TestServer, from source: String) async throws -> (RawConnection, ServerFrame) {
        let raw = try await RawConnection(port: server.port, caFile: server.caFile, source: source)
        try? await raw.write(frame: .hello(id: 1, apiKey: TestServer.bootstrapKey))
        return (raw, try #require(try await raw.readFrame()))
    }

    static func isRefusal(_ frame: ServerFrame, saying words: String) -> Bool {
        frame.id == 0 && frame.status.code == .resourceExhausted && frame.status.reason == "TOO_MANY_CONNECTIONS"
            && frame.status.message.contains(words) && frame.status.retryAfterMs > 0
    }

    @Test func connectionsOverTheCapsAreAnsweredAndClosedAndOthersAreServed() async throws {
        try await TestServer.run(configure: { $0.maxConnections = 5; $0.maxConnectionsPerAddress = 2 }) { server in
            // Connections are admitted in the order the server accepts them; each signs in at once.
            var held: [RawConnection] = []
            for _ in 0..<2 {
                let (raw, answer) = try await Self.open(server, from: "127.0.0.2")
                #expect(answer.id == 1 && answer.status.code == .ok, "\(answer.status)")
                held.append(raw)
            }
            // A third from the same address is refused, then closed; another address is not.
            let (third, refusal) = try await Self.open(server, from: "127.0.0.2")
            #expect(Self.isRefusal(refusal, saying: "from this address"), "\(refusal.id) \(refusal.status)")
            #expect(await third.readsUntilClosed())
            for source in ["127.0.0.3", "127.0.0.3", "127.0.0.4"] {
                let (raw, answer) = try await Self.open(server, from: source)
                #expect(answer.id == 1 && answer.status.code == .ok, "\(answer.status)")
                held.append(raw)
            }
            // Five are open: the total cap refuses the next, whatever its address.
            let (sixth, full) = try await Self.open(server, from: "127.0.0.5")
            #expect(Self.isRefusal(full, saying: "as many connections as it allows"), "\(full.id) \(full.status)")
            #expect(await sixth.readsUntilClosed())
            // Once one closes, a new connection is served.
            await held.removeLast().close()
            let deadline = ContinuousClock.now + .seconds(10)
            var served = false
            while !served, ContinuousClock.now < deadline {
                let (next, answer) = try await Self.open(server, from: "127.0.0.5")
                served = answer.id == 1 && answer.status.code == .ok
                await next.close()
                if !served { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(served)
            for connection in held { await connection.close() }
        }
    }

    /// CPU time (user + system) of process `pid` so far.
    static func cpuTime(_ pid: pid_t) throws -> Duration {
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        // Fields after the command name (which is in parentheses): utime and stime are the 12th and 13th.
        let fields = stat[stat.index(after: try #require(stat.lastIndex(of: ")")))...].split(separator: " ")
        let ticks = try #require(Int(fields[11])) + (try #require(Int(fields[12])))
        return .milliseconds(ticks * 1000 / Int(sysconf(Int32(_SC_CLK_TCK))))
    }

    @Test func runningOutOfDescriptorsShedsNewConnectionsInsteadOfSpinning() async throws {
        // 128 descriptors, and caps far above them: connections exhaust the descriptors.
        let daemon = try await LicensedProcess.start(
            ["--max-connections", "100000", "--max-connections-per-address", "100000", "--sign-in-timeout", "120"], openFileLimit: 128
        )
        let pid = try #require(daemon.pid)
        #expect(daemon.log().contains("more than the open-file limit leaves room for"))
        // 300 plain TCP connections that never start TLS: the kernel completes them all (the
        // backlog is 1024); the daemon can accept only as many as it has descriptors for.
        var hogs: [any Channel] = []
        for _ in 0..<300 {
            hogs.append(try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: daemon.port).get())
        }
        try await Task.sleep(for: .seconds(1))
        let descriptors = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
        #expect(descriptors >= 120, "the daemon holds \(descriptors) descriptors")
        // Out of descriptors, with connections waiting: the daemon sleeps between accept attempts.
        let before = try Self.cpuTime(pid)
        try await Task.sleep(for: .seconds(3))
        let used = try Self.cpuTime(pid) - before
        print("out of descriptors (\(descriptors) held, 300 connecting): the daemon used \(used) of CPU in 3 s")
        #expect(used < .milliseconds(900), "the daemon used \(used) of CPU in 3 s while out of descriptors")
        // Once the hogs leave, a good client is served again.
        for hog in hogs { try? await hog.close() }
        let deadline = ContinuousClock.now + .seconds(20)
        var signedIn = false
        while !signedIn, ContinuousClock.now < deadline {
            if let connection = try? await daemon.connect(apiKey: LicensedProcess.operatorKey, callTimeout: .seconds(5)) {
                signedIn = true
                await connection.close()
            } else {
                try await Task.sleep(for: .milliseconds(200))
            }
        }
        #expect(signedIn, "no sign-in within 20 s after the descriptors were freed")
        await daemon.stop(signal: SIGKILL)
    }
}
