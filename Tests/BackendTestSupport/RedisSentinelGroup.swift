import Foundation
import LicenseRedis

/// A Redis primary, one replica of it, and three Sentinels monitoring it as `service` (quorum 2,
/// a primary is down after 1 s), all real processes on loopback: the setting of a failover test.
public final class RedisSentinelGroup: Sendable {
    public static let service = "seats"
    public let primary: RedisTestServer
    public let replica: RedisTestServer
    public let sentinelPorts: [Int]
    private let sentinels: [ChildProcess]
    private let directory: String

    public static func start() async throws -> RedisSentinelGroup {
        let primary = try await RedisTestServer.start()
        let replica = try await RedisTestServer.start(extraArguments: ["--replicaof", "127.0.0.1", String(primary.port)])
        let directory = try makeTemporaryDirectory("sentinels")
        var ports: [Int] = []
        var sentinels: [ChildProcess] = []
        for i in 0..<3 {
            let port = try FreePort.next()
            let config = directory + "/sentinel-\(i).conf"
            try """
            port \(port)
            bind 127.0.0.1
            protected-mode no
            daemonize no
            dir \(directory)
            sentinel monitor \(service) 127.0.0.1 \(primary.port) 2
            sentinel down-after-milliseconds \(service) 1000
            sentinel failover-timeout \(service) 10000
            sentinel parallel-syncs \(service) 1

            """.write(toFile: config, atomically: true, encoding: .utf8)
            sentinels.append(try ChildProcess(["redis-sentinel", config], logFile: directory + "/sentinel-\(i).log"))
            ports.append(port)
        }
        let group = RedisSentinelGroup(primary: primary, replica: replica, sentinelPorts: ports, sentinels: sentinels, directory: directory)
        try await group.waitUntil(within: .seconds(30), "the replica to be in sync and every sentinel to know it") {
            guard let info = try? await replica.command("INFO", "replication").string,
                  info.contains("master_link_status:up") else { return false }
            for port in ports {
                guard case .array(let replicas)? = try? await group.sentinel(port, "SENTINEL", "REPLICAS", service), !replicas.isEmpty else { return false }
            }
            return true
        }
        return group
    }

    private init(primary: RedisTestServer, replica: RedisTestServer, sentinelPorts: [Int], sentinels: [ChildProcess], directory: String) {
        self.primary = primary
        self.replica = replica
        self.sentinelPorts = sentinelPorts
        self.sentinels = sentinels
        self.directory = directory
    }

    /// `redis+sentinel://…/service`, the URL a daemon follows the primary with.
    public var url: String {
        "redis+sentinel://" + sentinelPorts.map { "127.0.0.1:\($0)" }.joined(separator: ",") + "/\(Self.service)"
    }

    /// Runs a command on the sentinel at `port`.
    public func sentinel(_ port: Int, _ arguments: String...) async throws -> RESPValue {
        let client = RedisClient(configuration: RedisConfiguration(host: "127.0.0.1", port: port))
        defer { client.close() }
        return try await client.send(RedisCommand(arguments))
    }

    /// The primary's address as the first sentinel names it.
    public func primaryPort() async throws -> Int? {
        guard case .array(let parts) = try await sentinel(sentinelPorts[0], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", Self.service), parts.count == 2 else { return nil }
        return parts[1].string.flatMap(Int.init)
    }

    /// Polls `condition` until it holds, at most `limit`; the error names the group's folder.
    public func waitUntil(within limit: Duration, _ what: String, _ condition: () async -> Bool) async throws {
        try await Polling.waitUntil(within: limit, what, detail: "see \(directory)", condition)
    }

    public func stop() {
        for sentinel in sentinels { sentinel.stop(signal: SIGKILL) }
        primary.stop()
        replica.stop()
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}
