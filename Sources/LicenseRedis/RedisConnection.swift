import Foundation
import LicenseCore
import NIOCore
import NIOPosix

/// One TCP connection to one Redis node. Commands sent concurrently are pipelined.
final class RedisConnection: Sendable {
    let channel: any Channel
    /// The run id of the server this connection reached (`INFO server`), read when it was made.
    /// A server's run id changes with every start, and a replica promoted to primary keeps its
    /// own, so it names the copy of the data the connection writes to.
    let serverID: String

    private init(channel: any Channel, serverID: String = "") {
        self.channel = channel
        self.serverID = serverID
    }

    var isActive: Bool { channel.isActive }

    /// Sends a command and waits for its reply (an error reply is returned, not thrown).
    func send(_ command: RedisCommand) async throws -> RESPValue {
        let reply = sendFuture(command)
        if let trace = CallTrace.current {
            // On the event loop, as the reply is decoded: the time until the caller resumes is
            // the wait for a thread of the concurrency pool.
            trace.mark("redis.sent")
            reply.whenComplete { _ in trace.mark("redis.replied") }
        }
        return try await reply.get()
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

    /// The `run_id:` field of an `INFO` reply.
    static func runID(inInfo info: String) -> String {
        for line in info.split(whereSeparator: \.isNewline) where line.hasPrefix("run_id:") {
            return String(line.dropFirst("run_id:".count)).trimmingCharacters(in: .whitespaces)
        }
        return ""
    }

    /// Connects and authenticates (AUTH, SELECT) before the connection is handed out.
    /// With `requirePrimary`, a server whose `ROLE` is not `master` is refused (Sentinel mode:
    /// a demoted primary must not take writes meant for the new one).
    static func connect(host: String, port: Int, configuration: RedisConfiguration, requirePrimary: Bool = false, group: any EventLoopGroup) -> EventLoopFuture<RedisConnection> {
        let timeout = TimeAmount(configuration.commandTimeout)
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(TimeAmount(configuration.connectTimeout))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
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
            if requirePrimary { commands.append(RedisCommand("ROLE")) }
            commands.append(RedisCommand("INFO", "server"))
            let setup = commands
            let replies = setup.map { connection.sendFuture($0) }
            return EventLoopFuture.whenAllSucceed(replies, on: channel.eventLoop).flatMapThrowing { replies in
                var serverID = ""
                for (command, reply) in zip(setup, replies) {
                    if case .error = reply {
                        throw RedisClientError(.configuration, "Redis refused \(command.name) while connecting")
                    }
                    if command.name == "INFO" {
                        serverID = Self.runID(inInfo: reply.string ?? "")
                        guard !serverID.isEmpty else { throw RedisClientError(.unexpectedReply, "Redis's INFO named no run_id") }
                    }
                    if command.name == "ROLE" {
                        guard case .array(let role) = reply, role.first?.string == "master" else {
                            throw RedisClientError(.unreachable, "Redis at \(host):\(port) is not the primary")
                        }
                    }
                }
                return RedisConnection(channel: channel, serverID: serverID)
            }.flatMapErrorThrowing { error in
                channel.close(promise: nil)
                throw error
            }
        }
    }
}
