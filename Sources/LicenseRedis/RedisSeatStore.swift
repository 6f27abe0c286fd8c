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
/// - A license whose keys Redis lost (its `seeded` marker is gone) is rebuilt from the durable
///   sessions that `seedSource` returns before the operation runs.
public final class RedisSeatStore: SeatStore {
    private let client: RedisClient
    private let seedSource: any SeatSeedSource
    private let clock: (any WallClock)?
    private let keyPrefix: String
    private let logger: Logger
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
        let reply = try await run(request.licenseID, "claim", [
            request.sessionID.rawValue, request.holder.userID.rawValue, request.holder.hardwareID,
            request.holder.idempotencyKey, String(request.seatLimit), String(request.leaseTTL.milliseconds),
        ])
        switch try Self.outcome(reply) {
        case ("GRANTED", let id, let value): return .granted(SeatLease(sessionID: SessionID(id), expiresAt: Timestamp(millisecondsSinceEpoch: value)))
        case ("EXISTING", let id, let value): return .existing(SeatLease(sessionID: SessionID(id), expiresAt: Timestamp(millisecondsSinceEpoch: value)))
        case ("FULL", _, let used): return .full(used: Int(used), limit: request.seatLimit)
        default: throw RedisClientError(.unexpectedReply, "the seat script answered claim unexpectedly")
        }
    }

    public func renew(licenseID: LicenseID, sessionID: SessionID, holder: SeatHolder, seatLimit: Int, leaseTTL: Duration) async throws -> SeatRenewOutcome {
        let reply = try await run(licenseID, "renew", [
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
        let reply = try await run(licenseID, "release", [sessionID.rawValue])
        guard let freed = reply.int64 else { throw RedisClientError(.unexpectedReply, "the seat script answered release unexpectedly") }
        return freed == 1
    }

    public func leases(licenseID: LicenseID) async throws -> [SeatLease] {
        let reply = try await run(licenseID, "leases", [])
        guard case .array(let flat) = reply, flat.count % 2 == 0 else {
            throw RedisClientError(.unexpectedReply, "the seat script answered leases unexpectedly")
        }
        var leases: [SeatLease] = []
        for i in stride(from: 0, to: flat.count, by: 2) {
            guard let id = flat[i].string, let score = flat[i + 1].string.flatMap(Double.init) else {
                throw RedisClientError(.unexpectedReply, "the seat script answered leases unexpectedly")
            }
            leases.append(SeatLease(sessionID: SessionID(id), expiresAt: Timestamp(millisecondsSinceEpoch: Int64(score))))
        }
        return leases.sorted { $0.sessionID < $1.sessionID }
    }

    public func seatsInUse(licenseID: LicenseID) async throws -> Int {
        let reply = try await run(licenseID, "usage", [])
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
        let reply = try await evaluate(licenseID, "seed", arguments)
        guard let restored = reply.int64 else { throw RedisClientError(.unexpectedReply, "the seat script answered seed unexpectedly") }
        if restored > 0 {
            logger.info("rebuilt seats from durable sessions", metadata: ["license": "\(licenseID)", "restored": "\(restored)"])
        }
        return Int(restored)
    }

    // MARK: - Script calls

    private func run(_ licenseID: LicenseID, _ operation: String, _ arguments: [String]) async throws -> RESPValue {
        let reply = try await evaluate(licenseID, operation, arguments)
        guard Self.asksForRebuild(reply) else { return reply }
        try await rebuild(licenseID)
        let again = try await evaluate(licenseID, operation, arguments)
        if Self.asksForRebuild(again) {
            throw RedisClientError(.unexpectedReply, "the license's seats were not rebuilt")
        }
        return again
    }

    private func evaluate(_ licenseID: LicenseID, _ operation: String, _ arguments: [String]) async throws -> RESPValue {
        let keys = keys(licenseID)
        let now = clock.map { String($0.now().millisecondsSinceEpoch) } ?? ""
        let tail = [String(keys.count)] + keys + [operation, now] + arguments
        var reply = try await client.send(RedisCommand(["EVALSHA", Self.scriptSHA] + tail), routingKey: keys[0])
        if case .error(let message) = reply, message.hasPrefix("NOSCRIPT") {
            logger.debug("seat script not cached by Redis; sending it again")
            reply = try await client.send(RedisCommand(["EVAL", Self.script] + tail), routingKey: keys[0])
        }
        if case .error(let message) = reply {
            // Only the error's first word: the rest can quote script source or arguments.
            let kind = message.split(separator: " ").first.map(String.init) ?? "ERR"
            throw RedisClientError(.server, "Redis refused the seat script (\(kind))")
        }
        return reply
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
        return [base + "handles", base + "holders:2", base + "index:2", base + "seeded:2", base + "machines"]
    }

    private static func outcome(_ reply: RESPValue) throws -> (String, String, Int64) {
        guard case .array(let items) = reply, items.count == 3, let kind = items[0].string,
              let id = items[1].string, let value = items[2].int64
        else { throw RedisClientError(.unexpectedReply, "the seat script's answer had an unexpected shape") }
        return (kind, id, value)
    }
}
