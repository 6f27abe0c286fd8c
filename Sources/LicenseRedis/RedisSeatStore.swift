import Crypto
import Foundation
import LicenseCore
import Logging

/// The production seat store: live seats in Redis (or Redis Cluster), changed only by one Lua
/// script (`Scripts/seats.lua`) so that each operation is atomic per license.
///
/// - All keys of a license share its `{license}` hash tag, so the script runs unchanged on a
///   cluster.
/// - The script is run with EVALSHA; a Redis that answers NOSCRIPT (restarted, failed over) is
///   sent the script once with EVAL, which also caches it again.
/// - Time comes from the Redis server (`TIME`), so replicas with skewed clocks agree. Tests may
///   inject a clock instead; the script then uses the time it is given.
/// - A license is rebuilt from the durable sessions that `seedSource` returns before any
///   operation runs on a Redis server that did not rebuild it itself: its `seeded` marker holds
///   the run id of the server that did, so a restarted server or a promoted replica (whose copy
///   may miss the last claims) is recognised although the marker replicated.
/// - Claims are *pending* until `confirm` (see `SeatLease`), and a claim, confirm or renew
///   carries a deadline in Redis time (the command timeout): one that waited in a socket buffer
///   while its caller was answered UNAVAILABLE changes nothing when it finally runs.
public final class RedisSeatStore: SeatStore {
    private let client: RedisClient
    private let seedSource: any SeatSeedSource
    private let clock: (any WallClock)?
    private let keyPrefix: String
    private let logger: Logger
    private let clockOffset = RedisClockOffset()
    static let script: String = {
        guard let url = Bundle.module.url(forResource: "seats", withExtension: "lua", subdirectory: "Scripts"),
              let text = try? String(contentsOf: url, encoding: .utf8)
        else { fatalError("the seat script resource Scripts/seats.lua is missing from the LicenseRedis bundle") }
        return text
    }()
    /// The SHA-1 of the seat script, as EVALSHA and SCRIPT EXISTS name it.
    public static let scriptSHA: String = Hex.encode(Insecure.SHA1.hash(data: Array(script.utf8)))

    /// - Parameters:
    ///   - client: The Redis client (standalone or cluster).
    ///   - seedSource: Where a lost license's seats are rebuilt from (the repository).
    ///   - clock: `nil` in production (Redis's clock); a clock only for tests.
    public init(client: RedisClient, seedSource: any SeatSeedSource, clock: (any WallClock)? = nil, logger: Logger = Logger(label: "coditect.license.redis")) {
        self.client = client
        self.seedSource = seedSource
        self.clock = clock
        self.keyPrefix = client.configuration.keyPrefix
        self.logger = logger
    }

    public func claim(_ request: SeatClaimRequest) async throws -> SeatClaimOutcome {
        let reply = try await run(request.licenseID, "claim", deadline: true, [
            request.sessionID.rawValue, request.holder.userID.rawValue, request.holder.hardwareID,
            request.holder.idempotencyKey, String(request.seatLimit), String(request.leaseTTL.milliseconds),
            request.pendingTTL.map { String($0.milliseconds) } ?? "",
        ])
        switch try Self.outcome(reply) {
        case ("GRANTED", let id, let value):
            return .granted(SeatLease(sessionID: SessionID(id), expiresAt: Timestamp(millisecondsSinceEpoch: value), isPending: request.pendingTTL != nil))
        case ("EXISTING", let id, let value): return .existing(SeatLease(sessionID: SessionID(id), expiresAt: Timestamp(millisecondsSinceEpoch: value)))
        case ("PENDING", let id, let value): return .pending(SeatLease(sessionID: SessionID(id), expiresAt: Timestamp(millisecondsSinceEpoch: value), isPending: true))
        case ("FULL", _, let used): return .full(used: Int(used), limit: request.seatLimit)
        default: throw RedisClientError(.unexpectedReply, "the seat script answered claim unexpectedly")
        }
    }

    public func confirm(licenseID: LicenseID, sessionID: SessionID, leaseTTL: Duration) async throws -> SeatLease? {
        // The script confirms any number of ids; one acquire confirms its own. (Batching the
        // confirms of concurrent acquires cost more latency than it saved: docs/benchmarks.md.)
        let reply = try await run(licenseID, "confirm", deadline: true, [String(leaseTTL.milliseconds), sessionID.rawValue])
        guard case .array(let pair) = reply, pair.count == 2, pair[0].string == sessionID.rawValue, let expiry = pair[1].int64 else {
            throw RedisClientError(.unexpectedReply, "the seat script answered confirm unexpectedly")
        }
        return expiry > 0 ? SeatLease(sessionID: sessionID, expiresAt: Timestamp(millisecondsSinceEpoch: expiry)) : nil
    }

    public func renew(licenseID: LicenseID, sessionID: SessionID, holder: SeatHolder, seatLimit: Int, leaseTTL: Duration) async throws -> SeatRenewOutcome {
        let reply = try await run(licenseID, "renew", deadline: true, [
            sessionID.rawValue, holder.userID.rawValue, holder.hardwareID, holder.idempotencyKey,
            String(seatLimit), String(leaseTTL.milliseconds),
        ])
        switch try Self.outcome(reply) {
        case ("RENEWED", let id, let value): return .renewed(SeatLease(sessionID: SessionID(id), expiresAt: Timestamp(millisecondsSinceEpoch: value)))
        case ("RECLAIMED", let id, let value): return .reclaimed(SeatLease(sessionID: SessionID(id), expiresAt: Timestamp(millisecondsSinceEpoch: value)))
        case ("NOSEAT", _, let used): return .noSeat(used: Int(used), limit: seatLimit)
        default: throw RedisClientError(.unexpectedReply, "the seat script answered renew unexpectedly")
        }
    }

    @discardableResult
    public func release(licenseID: LicenseID, sessionID: SessionID) async throws -> Bool {
        let reply = try await run(licenseID, "release", deadline: false, [sessionID.rawValue])
        guard let freed = reply.int64 else { throw RedisClientError(.unexpectedReply, "the seat script answered release unexpectedly") }
        return freed == 1
    }

    public func leases(licenseID: LicenseID) async throws -> [SeatLease] {
        let reply = try await run(licenseID, "leases", deadline: false, [])
        guard case .array(let flat) = reply, flat.count % 3 == 0 else {
            throw RedisClientError(.unexpectedReply, "the seat script answered leases unexpectedly")
        }
        var leases: [SeatLease] = []
        for i in stride(from: 0, to: flat.count, by: 3) {
            guard let id = flat[i].string, let score = flat[i + 1].string.flatMap(Double.init), let pending = flat[i + 2].int64 else {
                throw RedisClientError(.unexpectedReply, "the seat script answered leases unexpectedly")
            }
            leases.append(SeatLease(sessionID: SessionID(id), expiresAt: Timestamp(millisecondsSinceEpoch: Int64(score)), isPending: pending == 1))
        }
        return leases.sorted { $0.sessionID < $1.sessionID }
    }

    public func ping() async throws {
        _ = try await client.send(RedisCommand("PING"))
    }

    public func seatsInUse(licenseID: LicenseID) async throws -> Int {
        let reply = try await run(licenseID, "usage", deadline: false, [])
        guard let used = reply.int64 else { throw RedisClientError(.unexpectedReply, "the seat script answered usage unexpectedly") }
        return Int(used)
    }

    /// Rebuilds a license's seats from the seed source if Redis does not have them. Returns how
    /// many seats were restored (0 when Redis already had the license).
    @discardableResult
    public func rebuild(_ licenseID: LicenseID) async throws -> Int {
        let seed = try await seedSource.seatSeed(for: licenseID)
        var arguments = [String(seed.seatLimit)]
        arguments.reserveCapacity(1 + seed.sessions.count * 5)
        // Newest lease first, so a shrunken license keeps the seats most recently renewed.
        for session in seed.sessions.sorted(by: { $0.leaseExpiresAt > $1.leaseExpiresAt }) where session.endedAt == nil {
            arguments += [session.id.rawValue, session.userID.rawValue, session.hardwareID, session.idempotencyKey,
                          String(session.leaseExpiresAt.millisecondsSinceEpoch)]
        }
        let reply = try await evaluate(licenseID, "seed", deadline: nil, arguments)
        guard let restored = reply.int64 else { throw RedisClientError(.unexpectedReply, "the seat script answered seed unexpectedly") }
        if restored > 0 {
            logger.info("rebuilt seats from durable sessions", metadata: ["license": "\(licenseID)", "restored": "\(restored)"])
        }
        return Int(restored)
    }

    // MARK: - Script calls

    /// Runs an operation, rebuilding the license first when this Redis server has not (a
    /// restart, a promoted replica). With `deadline`, the script refuses to act once the
    /// command timeout has passed in Redis time (the caller has then been answered already).
    private func run(_ licenseID: LicenseID, _ operation: String, deadline: Bool, _ arguments: [String]) async throws -> RESPValue {
        var rebuilt = false
        var clockChecked = false
        while true {
            let reply = try await evaluate(licenseID, operation, deadline: deadline ? self.deadline() : nil, arguments)
            if Self.asksForRebuild(reply), !rebuilt {
                rebuilt = true
                try await rebuild(licenseID)
                continue
            }
            if Self.asksForRebuild(reply) {
                throw RedisClientError(.unexpectedReply, "the license's seats were not rebuilt")
            }
            if case .array(let items) = reply, items.count == 3, items[0].string == "LATE" {
                // The deadline was computed with a wrong idea of Redis's clock (the first call,
                // or a clock step); learn the offset from the answer and try once more.
                if let redisNow = items[2].int64 { clockOffset.learn(redisNow: redisNow) }
                guard !clockChecked else { throw RedisClientError(.timeout, "the seat command reached Redis after its deadline") }
                clockChecked = true
                continue
            }
            return reply
        }
    }

    /// The latest moment (in Redis time, or the injected clock's) at which a command sent now
    /// may still take effect: its timeout, after which the caller has been answered.
    private func deadline() -> Int64 {
        if let clock { return clock.now().millisecondsSinceEpoch + client.configuration.commandTimeout.milliseconds }
        return clockOffset.redisNow() + client.configuration.commandTimeout.milliseconds
    }

    private func evaluate(_ licenseID: LicenseID, _ operation: String, deadline: Int64?, _ arguments: [String]) async throws -> RESPValue {
        let keys = keys(licenseID)
        let now = clock.map { String($0.now().millisecondsSinceEpoch) } ?? ""
        let head = [String(keys.count)] + keys + [operation, now, deadline.map(String.init) ?? ""]
        func command(_ verb: [String], server: String) -> RedisCommand {
            RedisCommand(verb + head + [server] + arguments)
        }
        var reply = try await client.send(routingKey: keys[0]) { command(["EVALSHA", Self.scriptSHA], server: $0) }
        if case .error(let message) = reply, message.hasPrefix("NOSCRIPT") {
            logger.debug("seat script not cached by Redis; sending it again")
            reply = try await client.send(routingKey: keys[0]) { command(["EVAL", Self.script], server: $0) }
        }
        if case .error(let message) = reply {
            // Only the error's first word: the rest can quote script source or arguments.
            let kind = message.split(separator: " ").first.map(String.init) ?? "ERR"
            throw RedisClientError(.server, "Redis refused the seat script (\(kind))")
        }
        if clock == nil, case .array(let items) = reply, items.count == 3, let kind = items[0].string,
           Self.leaseAnswers.contains(kind), let expiry = items[2].int64,
           let ttl = Self.leaseTTLArgument(operation, arguments) {
            clockOffset.learn(redisNow: expiry - ttl)
        }
        return reply
    }

    /// Claim and renew answers whose third value is the expiry `now + lease TTL`.
    private static let leaseAnswers: Set<String> = ["GRANTED", "EXISTING", "RENEWED", "RECLAIMED"]

    /// The lease TTL (ms) a claim's or renew's arguments carry, which with the answered expiry
    /// gives Redis's time.
    private static func leaseTTLArgument(_ operation: String, _ arguments: [String]) -> Int64? {
        guard operation == "claim" || operation == "renew", arguments.count > 5 else { return nil }
        return Int64(arguments[5])
    }

    /// Whether the script answered `{'SEED'}`: Redis does not have the license's seats.
    private static func asksForRebuild(_ reply: RESPValue) -> Bool {
        guard case .array(let items) = reply, items.count == 1 else { return false }
        return items[0].string == "SEED"
    }

    /// The license's keys; the `{id}` hash tag puts them all in one cluster slot. (Layout 2:
    /// seats per machine with a handle per process. The names differ from layout 1's `seats`,
    /// `holders`, `index` and `seeded`, so a Redis written by an older daemon is rebuilt from
    /// the repository rather than misread.)
    func keys(_ licenseID: LicenseID) -> [String] {
        let base = "\(keyPrefix)lic:{\(licenseID.rawValue)}:"
        return [base + "handles", base + "holders:2", base + "index:2", base + "seeded:2", base + "machines", base + "pending"]
    }

    private static func outcome(_ reply: RESPValue) throws -> (String, String, Int64) {
        guard case .array(let items) = reply, items.count == 3, let kind = items[0].string,
              let id = items[1].string, let value = items[2].int64
        else { throw RedisClientError(.unexpectedReply, "the seat script's answer had an unexpected shape") }
        return (kind, id, value)
    }
}

