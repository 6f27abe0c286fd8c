import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Follows the primary that Redis Sentinel names for one service, so the daemon keeps working
/// across a failover without a restart.
///
/// The primary's address is asked of the sentinels (in the configured order, first answer
/// wins) when there is none yet, and again after the current one failed: no connection, a
/// closed or timed-out connection, or a `READONLY`/`MASTERDOWN` answer (a demoted primary).
/// Every connection to the primary checks `ROLE` before use, so a sentinel that still names the
/// old primary is caught too. Pools are kept per address, so a dead address keeps its
/// reconnect backoff while the sentinels catch up.
final class RedisSentinelPrimary: Sendable {
    private struct State {
        var current: RedisNodePool?
        var pools: [String: RedisNodePool] = [:]
        var closed = false
    }

    private let configuration: RedisConfiguration
    private let group: any EventLoopGroup
    private let logger: Logger
    private let sentinels: [RedisNodePool]
    private let state = NIOLockedValueBox(State())

    init(configuration: RedisConfiguration, group: any EventLoopGroup, logger: Logger) {
        self.configuration = configuration
        self.group = group
        self.logger = logger
        var sentinelConfiguration = RedisConfiguration(password: configuration.sentinelPassword)
        sentinelConfiguration.connectionsPerNode = 1
        sentinelConfiguration.commandTimeout = configuration.commandTimeout
        sentinelConfiguration.connectTimeout = configuration.connectTimeout
        sentinelConfiguration.initialBackoff = configuration.initialBackoff
        sentinelConfiguration.maximumBackoff = configuration.maximumBackoff
        sentinels = configuration.sentinels.map {
            RedisNodePool(host: $0.host, port: $0.port, configuration: sentinelConfiguration, group: group)
        }
    }

    /// Sends the command `make` builds (from the server's run id) to the current primary.
    func send(_ make: (String) -> RedisCommand) async throws -> RESPValue {
        let pool = try await primary()
        do {
            let reply = try await pool.send(make)
            if case .error(let message) = reply, message.hasPrefix("READONLY") || message.hasPrefix("MASTERDOWN") {
                forget(pool)
            }
            return reply
        } catch let error as RedisClientError where [.unreachable, .connectionClosed, .timeout].contains(error.code) {
            forget(pool)
            throw error
        }
    }

    func close() {
        let pools = state.withLockedValue { state in
            state.closed = true
            state.current = nil
            return Array(state.pools.values)
        }
        for pool in pools + sentinels { pool.close() }
    }

    private func primary() async throws -> RedisNodePool {
        if let current = try state.withLockedValue({ state -> RedisNodePool? in
            guard !state.closed else { throw RedisClientError(.unreachable, "the Redis client is shut down") }
            return state.current
        }) { return current }
        let (host, port) = try await askSentinels()
        let address = RedisSentinelAddress(host: host, port: port).description
        let (pool, retired) = try state.withLockedValue { state -> (RedisNodePool, [RedisNodePool]) in
            guard !state.closed else { throw RedisClientError(.unreachable, "the Redis client is shut down") }
            let pool = state.pools[address] ?? RedisNodePool(host: host, port: port, configuration: configuration, requirePrimary: true, group: group)
            state.pools[address] = pool
            // Connections to a former primary are closed: it may come back as a replica.
            let retired = state.pools.filter { $0.key != address }.map(\.value)
            state.pools = [address: pool]
            if state.current !== pool {
                logger.info("following the Redis primary named by Sentinel", metadata: ["primary": "\(address)"])
            }
            state.current = pool
            return (pool, retired)
        }
        for old in retired { old.close() }
        return pool
    }

    private func forget(_ pool: RedisNodePool) {
        state.withLockedValue { state in
            if state.current === pool { state.current = nil }
        }
    }

    /// `SENTINEL GET-MASTER-ADDR-BY-NAME` of the first sentinel that answers with an address.
    private func askSentinels() async throws -> (String, Int) {
        for sentinel in sentinels {
            do {
                let reply = try await sentinel.send(RedisCommand("SENTINEL", "GET-MASTER-ADDR-BY-NAME", configuration.sentinelService))
                if case .array(let parts) = reply, parts.count == 2, let host = parts[0].string,
                   let port = parts[1].string.flatMap(Int.init) ?? parts[1].int64.map(Int.init) {
                    return (host, port)
                }
                logger.debug("a sentinel does not know the service", metadata: ["sentinel": "\(sentinel.address)"])
            } catch {
                logger.debug("a sentinel did not answer", metadata: ["sentinel": "\(sentinel.address)", "error": "\(type(of: error))"])
            }
        }
        throw RedisClientError(.unreachable, "no sentinel named a primary for '\(configuration.sentinelService)'")
    }
}
