import LicenseCore
import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A Redis client for a standalone server, the primary Redis Sentinel names, or a Redis Cluster.
///
/// In cluster mode a command is sent to the master that owns the hash slot of its routing key
/// (the slot map comes from `CLUSTER SLOTS` and is refreshed when a node answers `MOVED`).
/// Error replies are returned as `RESPValue.error`, not thrown; transport failures throw
/// `RedisClientError`.
public final class RedisClient: Sendable {
    public let configuration: RedisConfiguration
    private let group: any EventLoopGroup
    private let logger: Logger
    private let seed: RedisNodePool
    private let sentinel: RedisSentinelPrimary?
    private let cluster: NIOLockedValueBox<ClusterState>

    private struct ClusterState {
        /// Node address for each of the 16384 slots (empty until the map was read).
        var slots: [String] = []
        var pools: [String: RedisNodePool] = [:]
    }

    public init(configuration: RedisConfiguration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger = Logger(label: "coditect.license.redis")) {
        self.configuration = configuration
        self.group = group
        self.logger = logger
        self.seed = RedisNodePool(host: configuration.host, port: configuration.port, configuration: configuration, group: group)
        self.sentinel = configuration.sentinels.isEmpty ? nil : RedisSentinelPrimary(configuration: configuration, group: group, logger: logger)
        self.cluster = NIOLockedValueBox(ClusterState(pools: [seed.address: seed]))
        // Every error series exists from the start at 0, so rates and alerts see the first error.
        for code in [RedisClientError.Code.unreachable, .connectionClosed, .timeout, .protocolError, .server, .unexpectedReply, .configuration] {
            Counter(label: "licensed_redis_errors_total", dimensions: [("code", code.rawValue)]).increment(by: 0)
        }
    }

    /// Sends a command. `routingKey` is one of the command's keys; it picks the node in cluster mode.
    public func send(_ command: RedisCommand, routingKey: String? = nil) async throws -> RESPValue {
        try await send(routingKey: routingKey) { _ in command }
    }

    /// Sends the command `make` builds from the run id of the Redis server that will run it (the
    /// server at the other end of the connection chosen): a script can then tell whether it runs
    /// on the server that wrote what it finds. Rebuilt for every server a redirection leads to.
    public func send(routingKey: String?, _ make: (String) -> RedisCommand) async throws -> RESPValue {
        let start = ContinuousClock.now
        Self.inFlight.increment()
        defer {
            Self.inFlight.decrement()
            Self.duration.recordSince(start)
        }
        do {
            return try await routed(routingKey: routingKey, make)
        } catch {
            let code = (error as? RedisClientError)?.code.rawValue ?? RedisClientError.Code.unreachable.rawValue
            Counter(label: "licensed_redis_errors_total", dimensions: [("code", code)]).increment()
            throw error
        }
    }

    /// `licensed_redis_command_duration_seconds` and `licensed_redis_commands_in_flight`: every
    /// command from the call to its reply or failure, redirections and reconnects included.
    static let duration = Metrics.Timer(label: "licensed_redis_command_duration_seconds", preferredDisplayUnit: .seconds)
    static let inFlight = Meter(label: "licensed_redis_commands_in_flight")

    private func routed(routingKey: String?, _ make: (String) -> RedisCommand) async throws -> RESPValue {
        if let sentinel { return try await sentinel.send(make) }
        guard configuration.cluster, let routingKey else { return try await seed.send(make) }
        let slot = Int(RedisHashSlot.slot(of: routingKey))
        var pool = try await pool(forSlot: slot)
        for _ in 0..<3 {
            let reply: RESPValue
            do {
                reply = try await pool.send(make)
            } catch let error as RedisClientError where [.unreachable, .connectionClosed, .timeout].contains(error.code) {
                // The node may have failed over: read the slot map again on the next call.
                cluster.withLockedValue { $0.slots = [] }
                throw error
            }
            guard case .error(let message) = reply, message.hasPrefix("MOVED ") else { return reply }
            // "MOVED <slot> <host>:<port>": the slot has a new owner; learn it and follow.
            let parts = message.split(separator: " ")
            guard parts.count == 3 else { return reply }
            pool = self.pool(at: String(parts[2]))
            cluster.withLockedValue { state in
                if state.slots.count == RedisHashSlot.count { state.slots[slot] = pool.address }
            }
            logger.debug("redis slot moved", metadata: ["slot": "\(slot)", "node": "\(pool.address)"])
        }
        throw RedisClientError(.unexpectedReply, "Redis Cluster kept redirecting slot \(slot)")
    }

    /// Re-reads the cluster's slot map (no effect on a standalone server).
    public func refreshSlots() async throws {
        guard configuration.cluster else { return }
        let known = cluster.withLockedValue { Array($0.pools.values) }
        var lastError: any Error = RedisClientError(.unreachable, "no Redis Cluster node answered CLUSTER SLOTS")
        for node in known {
            do {
                let reply = try await node.send(RedisCommand("CLUSTER", "SLOTS"))
                let map = try Self.slotMap(reply)
                cluster.withLockedValue { $0.slots = map }
                for address in Set(map) where !address.isEmpty { _ = pool(at: address) }
                return
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    /// Closes every connection.
    public func close() {
        let pools = cluster.withLockedValue { Array($0.pools.values) }
        for pool in pools { pool.close() }
        sentinel?.close()
    }

    private func pool(forSlot slot: Int) async throws -> RedisNodePool {
        if let pool = cluster.withLockedValue({ state -> RedisNodePool? in
            guard state.slots.count == RedisHashSlot.count, !state.slots[slot].isEmpty else { return nil }
            return state.pools[state.slots[slot]]
        }) { return pool }
        try await refreshSlots()
        let address = cluster.withLockedValue { $0.slots.count == RedisHashSlot.count ? $0.slots[slot] : "" }
        guard !address.isEmpty else { throw RedisClientError(.unreachable, "no Redis Cluster node serves slot \(slot)") }
        return pool(at: address)
    }

    private func pool(at address: String) -> RedisNodePool {
        cluster.withLockedValue { state in
            if let pool = state.pools[address] { return pool }
            let separator = address.lastIndex(of: ":") ?? address.endIndex
            let host = String(address[..<separator])
            let port = Int(address[address.index(after: separator)...]) ?? 6379
            let pool = RedisNodePool(host: host.isEmpty ? configuration.host : host, port: port, configuration: configuration, group: group)
            state.pools[address] = pool
            return pool
        }
    }

    /// Parses a `CLUSTER SLOTS` reply into the owning master's address per slot.
    static func slotMap(_ reply: RESPValue) throws -> [String] {
        guard case .array(let ranges) = reply else { throw RedisClientError(.unexpectedReply, "CLUSTER SLOTS did not answer an array") }
        var map = Array(repeating: "", count: RedisHashSlot.count)
        for case .array(let range) in ranges {
            guard range.count >= 3, let start = range[0].int64, let end = range[1].int64,
                  case .array(let master) = range[2], master.count >= 2,
                  let host = master[0].string, let port = master[1].int64,
                  start >= 0, end < RedisHashSlot.count, start <= end
            else { throw RedisClientError(.unexpectedReply, "CLUSTER SLOTS answered an unexpected range") }
            for slot in Int(start)...Int(end) { map[slot] = "\(host):\(port)" }
        }
        return map
    }
}

/// Redis Cluster's key → hash slot function: CRC16 (XMODEM) of the key, or of its `{tag}`.
enum RedisHashSlot {
    static let count = 16_384

    static func slot(of key: String) -> UInt16 {
        var bytes = Array(key.utf8)
        if let open = bytes.firstIndex(of: UInt8(ascii: "{")),
           let close = bytes[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1 {
            bytes = Array(bytes[(open + 1)..<close])
        }
        return crc16(bytes) % UInt16(count)
    }

    static func crc16(_ bytes: [UInt8]) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc ^= UInt16(byte) << 8
            for _ in 0..<8 {
                crc = (crc & 0x8000) != 0 ? (crc << 1) ^ 0x1021 : crc << 1
            }
        }
        return crc
    }
}
