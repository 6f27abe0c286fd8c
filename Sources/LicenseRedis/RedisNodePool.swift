import Metrics
import NIOConcurrencyHelpers
import NIOCore

/// A fixed number of connections to one Redis node, made on first use and remade after a
/// failure, with exponential backoff and jitter between failed attempts.
///
/// Nothing runs in the background: a caller that finds its slot closed reconnects inline, and
/// while the node is in backoff every caller fails at once (fast UNAVAILABLE instead of a queue
/// of callers waiting on a dead node). Commands are spread over the connections round-robin.
final class RedisNodePool: Sendable {
    /// A connection to use now, or one being made.
    private enum Choice {
        case ready(RedisConnection)
        case pending(EventLoopFuture<RedisConnection>)
    }

    private enum Slot {
        case empty
        case connecting(EventLoopFuture<RedisConnection>)
        case ready(RedisConnection)
    }

    private struct State {
        var slots: [Slot]
        var next = 0
        var failures = 0
        var retryAt: NIODeadline = .uptimeNanoseconds(0)
        var closed = false
    }

    let host: String
    let port: Int
    private let configuration: RedisConfiguration
    private let requirePrimary: Bool
    private let group: any EventLoopGroup
    private let state: NIOLockedValueBox<State>

    init(host: String, port: Int, configuration: RedisConfiguration, requirePrimary: Bool = false, group: any EventLoopGroup) {
        self.host = host
        self.port = port
        self.configuration = configuration
        self.requirePrimary = requirePrimary
        self.group = group
        self.state = NIOLockedValueBox(State(slots: Array(repeating: .empty, count: max(1, configuration.connectionsPerNode))))
    }

    var address: String { "\(host):\(port)" }

    /// `licensed_redis_connections_open`: connections made and not yet closed, over every pool.
    static let openConnections = Meter(label: "licensed_redis_connections_open")

    /// Sends one command on one of the pool's connections.
    func send(_ command: RedisCommand) async throws -> RESPValue {
        try await connection().send(command)
    }

    /// Sends the command `make` builds from the run id of the server the chosen connection reached.
    func send(_ make: (String) -> RedisCommand) async throws -> RESPValue {
        let connection = try await connection()
        return try await connection.send(make(connection.serverID))
    }

    func connection() async throws -> RedisConnection {
        let next: Choice = try state.withLockedValue { state in
            guard !state.closed else { throw RedisClientError(.unreachable, "the Redis client is shut down") }
            let index = state.next
            state.next = (state.next + 1) % state.slots.count
            switch state.slots[index] {
            case .ready(let connection) where connection.isActive:
                // At once: awaiting a completed future would still hop to its event loop and back.
                return .ready(connection)
            case .connecting(let pending):
                return .pending(pending)
            case .ready, .empty:
                guard NIODeadline.now() >= state.retryAt else {
                    throw RedisClientError(.unreachable, "Redis at \(address) is unreachable; the next attempt is in backoff")
                }
                let attempt = RedisConnection.connect(host: host, port: port, configuration: configuration, requirePrimary: requirePrimary, group: group)
                state.slots[index] = .connecting(attempt)
                attempt.whenComplete { [self] result in connected(index: index, result: result) }
                return .pending(attempt)
            }
        }
        let future: EventLoopFuture<RedisConnection>
        switch next {
        case .ready(let connection): return connection
        case .pending(let pending): future = pending
        }
        do {
            return try await future.get()
        } catch let error as RedisClientError {
            throw error
        } catch {
            throw RedisClientError(.unreachable, "could not connect to Redis at \(address)")
        }
    }

    private func connected(index: Int, result: Result<RedisConnection, any Error>) {
        state.withLockedValue { state in
            switch result {
            case .success(let connection):
                state.failures = 0
                // Counted until it closes, for whatever reason.
                Self.openConnections.increment()
                connection.channel.closeFuture.whenComplete { _ in Self.openConnections.decrement() }
                if state.closed { connection.close() } else { state.slots[index] = .ready(connection) }
            case .failure:
                state.slots[index] = .empty
                state.failures += 1
                let exponent = min(state.failures - 1, 16)
                let base = min(configuration.initialBackoff * (1 << exponent), configuration.maximumBackoff)
                // Full jitter between half and all of the backoff, so replicas do not retry in step.
                let nanos = TimeAmount(base).nanoseconds
                let jittered = nanos / 2 + Int64.random(in: 0...max(1, nanos / 2))
                state.retryAt = .now() + .nanoseconds(jittered)
            }
        }
    }

    /// Closes every connection; later sends fail.
    func close() {
        let connections: [RedisConnection] = state.withLockedValue { state in
            state.closed = true
            defer { state.slots = state.slots.map { _ in .empty } }
            return state.slots.compactMap { if case .ready(let c) = $0 { c } else { nil } }
        }
        for connection in connections { connection.close() }
    }
}
