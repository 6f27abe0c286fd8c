import NIOCore
import NIOPosix

/// One TCP connection to one Redis node. Commands sent concurrently are pipelined.
final class RedisConnection: Sendable {
    let channel: any Channel

    private init(channel: any Channel) {
        self.channel = channel
    }

    var isActive: Bool { channel.isActive }

    /// Sends a command and waits for its reply (an error reply is returned, not thrown).
    func send(_ command: RedisCommand) async throws -> RESPValue {
        try await sendFuture(command).get()
    }

    func sendFuture(_ command: RedisCommand) -> EventLoopFuture<RESPValue> {
        let promise = channel.eventLoop.makePromise(of: RESPValue.self)
        // A channel that closed a moment ago has no handlers left to answer the request: its
        // write fails instead, and so must the request (completing a promise twice is a no-op).
        let written = channel.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { _ in
            promise.fail(RedisClientError(.connectionClosed, "the Redis connection closed"))
        }
        channel.writeAndFlush(RedisRequest(command: command, promise: promise), promise: written)
        return promise.futureResult
    }

    func close() {
        channel.close(promise: nil)
    }

    /// Connects and authenticates (AUTH, SELECT) before the connection is handed out.
    static func connect(host: String, port: Int, configuration: RedisConfiguration, group: any EventLoopGroup) -> EventLoopFuture<RedisConnection> {
        let timeout = TimeAmount(configuration.commandTimeout)
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(TimeAmount(configuration.connectTimeout))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RedisCommandHandler(timeout: timeout))
                }
            }
        return bootstrap.connect(host: host, port: port).flatMap { channel in
            let connection = RedisConnection(channel: channel)
            var commands: [RedisCommand] = []
            if let password = configuration.password {
                commands.append(configuration.username.map { RedisCommand("AUTH", $0, password) } ?? RedisCommand("AUTH", password))
            }
            if configuration.database != 0 { commands.append(RedisCommand("SELECT", String(configuration.database))) }
            let setup = commands
            let replies = setup.map { connection.sendFuture($0) }
            return EventLoopFuture.whenAllSucceed(replies, on: channel.eventLoop).flatMapThrowing { replies in
                for (command, reply) in zip(setup, replies) {
                    if case .error = reply {
                        throw RedisClientError(.configuration, "Redis refused \(command.name) while connecting")
                    }
                }
                return connection
            }.flatMapErrorThrowing { error in
                channel.close(promise: nil)
                throw error
            }
        }
    }
}
