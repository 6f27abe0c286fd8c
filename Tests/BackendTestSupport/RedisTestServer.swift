#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LicenseCore
import LicenseRedis
import NIOConcurrencyHelpers

/// A real `redis-server` on a free loopback port in a temporary folder, without persistence, so
/// a restart comes back empty (as after losing its data).
public final class RedisTestServer: Sendable {
    public let port: Int
    public let directory: String
    private let extraArguments: [String]
    private let process: NIOLockedValueBox<ChildProcess?>

    /// Starts a server (on `port`, or a free one) and waits until it answers.
    public static func start(port: Int? = nil, extraArguments: [String] = []) async throws -> RedisTestServer {
        let server = RedisTestServer(port: try port ?? FreePort.next(), directory: try makeTemporaryDirectory("redis"), extraArguments: extraArguments)
        try await server.launch()
        return server
    }

    private init(port: Int, directory: String, extraArguments: [String]) {
        self.port = port
        self.directory = directory
        self.extraArguments = extraArguments
        self.process = NIOLockedValueBox(nil)
    }

    public var url: String { "redis://127.0.0.1:\(port)" }

    /// The running server's pid.
    public var pid: pid_t? { process.withLockedValue { $0?.pid } }

    public var configuration: RedisConfiguration { RedisConfiguration(host: "127.0.0.1", port: port) }

    /// Starts the server again after `stop()`, on the same port, with no data.
    public func launch() async throws {
        let child = try ChildProcess([
            "redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", directory, "--daemonize", "no", "--protected-mode", "no", "--enable-debug-command", "local",
        ] + extraArguments, logFile: directory + "/redis.log")
        process.withLockedValue { $0 = child }
        try await waitUntilReady()
    }

    /// Stops the server by pid (its data is gone: nothing is persisted).
    public func stop() {
        process.withLockedValue { process in
            process?.stop()
            process = nil
        }
    }

    /// Runs a command with a one-off client (for assertions and fault injection).
    public func command(_ arguments: String...) async throws -> RESPValue {
        let client = RedisClient(configuration: configuration)
        defer { client.close() }
        return try await client.send(RedisCommand(arguments))
    }

    private func waitUntilReady() async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if let reply = try? await command("PING"), reply.string == "PONG" { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestServerError("redis-server on port \(port) did not start; see \(directory)/redis.log")
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// Redis masters (three by default) started in cluster mode and joined into one cluster covering
/// all slots, each with `replicas` replicas.
public final class RedisTestCluster: Sendable {
    public let nodes: [RedisTestServer]

    public static func start(masters: Int = 3, replicas: Int = 0) async throws -> RedisTestCluster {
        var nodes: [RedisTestServer] = []
        for _ in 0..<(masters * (1 + replicas)) {
            // Each node also listens on port + 10000 (the cluster bus), so stay below 55536.
            var port = try FreePort.next()
            while port > 55_000 { port = try FreePort.next() }
            nodes.append(try await RedisTestServer.start(port: port, extraArguments: [
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes-\(port).conf", "--cluster-node-timeout", "2000",
            ]))
        }
        let directory = nodes[0].directory
        let create = try ChildProcess(
            ["redis-cli", "--cluster", "create"] + nodes.map { "127.0.0.1:\($0.port)" } + ["--cluster-replicas", String(replicas), "--cluster-yes"],
            logFile: directory + "/cluster-create.log")
        let deadline = ContinuousClock.now + .seconds(30)
        while create.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        create.stop()
        let cluster = RedisTestCluster(nodes: nodes)
        // Wait until every node reports the cluster as ok.
        while ContinuousClock.now < deadline {
            var ok = true
            for node in nodes {
                let info = try await node.command("CLUSTER", "INFO").string ?? ""
                if !info.contains("cluster_state:ok") { ok = false }
                if replicas > 0, case .array(let slots) = try await node.command("CLUSTER", "SLOTS"),
                   slots.contains(where: { if case .array(let range) = $0 { range.count < 3 + replicas } else { true } }) {
                    ok = false
                }
            }
            if ok { return cluster }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestServerError("the Redis cluster did not become ready; see \(directory)/cluster-create.log")
    }

    private init(nodes: [RedisTestServer]) {
        self.nodes = nodes
    }

    public func stop() {
        for node in nodes { node.stop() }
    }
}

/// One Redis server shared by every test in this process (tests keep apart by key prefix);
/// stopped by pid when the process exits.
public enum SharedRedis {
    private static let once = AsyncOnce<RedisTestServer> {
        let server = try await RedisTestServer.start()
        ExitCleanup.register(pid: server.pid, signal: SIGKILL, directory: server.directory)
        return server
    }

    public static func server() async throws -> RedisTestServer { try await once.value() }
}

/// A seed source with nothing durable (for seat-store tests that do not need a repository).
public struct EmptySeatSeedSource: SeatSeedSource {
    public init() {}
    public func seatSeed(for license: LicenseID) async throws -> SeatSeed { SeatSeed(seatLimit: 0, sessions: []) }
}

/// A seed source with fixed sessions.
public struct FixedSeatSeedSource: SeatSeedSource {
    public var seed: SeatSeed
    public init(_ seed: SeatSeed) { self.seed = seed }
    public func seatSeed(for license: LicenseID) async throws -> SeatSeed { seed }
}

/// Seeds that a test changes as it records sessions (the rows a repository would hold).
public final class RecordedSeatSeedSource: SeatSeedSource, Sendable {
    private let seed: NIOLockedValueBox<SeatSeed>
    public init(_ seed: SeatSeed) { self.seed = NIOLockedValueBox(seed) }
    public func record(_ session: LeaseSession) { seed.withLockedValue { $0.sessions.append(session) } }
    public func seatSeed(for license: LicenseID) async throws -> SeatSeed { seed.withLockedValue { $0 } }
}
