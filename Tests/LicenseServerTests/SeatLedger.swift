import BackendTestSupport
import Foundation
import LicenseClient
import LicenseCore
import LicenseRedis
import LicenseWire
import Testing

/// One license's seat ledger as Redis and Postgres hold it, read directly from both (not
/// through a daemon), for the invariants of the fault tests.
struct LedgerSnapshot: Sendable {
    struct Handle: Sendable, Hashable {
        var machine: String
        var expiresAt: Int64
        var pending: Bool
    }

    /// Live handles (expiry after Redis's now) by session id.
    var handles: [String: Handle]
    var redisNow: Int64
    /// Session rows not ended.
    var liveRows: Set<String>
    /// Every session row, ended or not.
    var rows: Set<String>
    /// `session.acquire` audit rows.
    var acquireAudits: Int

    /// Seats held: machines with at least one live handle.
    var seatsHeld: Int { Set(handles.values.map(\.machine)).count }
    var pending: [String] { handles.filter(\.value.pending).map(\.key) }
    /// Confirmed handles without a live row.
    var unrecordedSeats: Set<String> { Set(handles.filter { !$0.value.pending }.keys).subtracting(liveRows) }
    /// Live rows without a handle.
    var seatlessRows: Set<String> { liveRows.subtracting(handles.keys) }
    /// Nothing left to reconcile: no pending handle, and handles and live rows match one to one.
    var converged: Bool { pending.isEmpty && Set(handles.keys) == liveRows }

    var summary: String {
        "seats=\(seatsHeld) handles=\(handles.count) pending=\(pending.count) liveRows=\(liveRows.count) unrecordedSeats=\(unrecordedSeats.count) seatlessRows=\(seatlessRows.count)"
    }
}

/// Reads `LedgerSnapshot`s of one license.
struct SeatLedger: Sendable {
    let license: String
    let postgres: PostgresTestServer
    let database: String
    /// The Redis server holding the seats now (it changes with a failover).
    let redis: @Sendable () -> RedisConfiguration

    private var base: String { "coditect:lic:{\(license)}:" }

    func snapshot() async throws -> LedgerSnapshot {
        let client = RedisClient(configuration: redis())
        defer { client.close() }
        guard case .array(let time) = try await client.send(RedisCommand("TIME")), time.count == 2,
              let seconds = time[0].string.flatMap(Int64.init), let micros = time[1].string.flatMap(Int64.init)
        else { throw TestServerError("TIME answered oddly") }
        let now = seconds * 1000 + micros / 1000
        guard case .array(let flat) = try await client.send(RedisCommand("ZRANGE", base + "handles", "0", "-1", "WITHSCORES")) else {
            throw TestServerError("ZRANGE answered oddly")
        }
        guard case .array(let holderFlat) = try await client.send(RedisCommand("HGETALL", base + "holders:2")) else {
            throw TestServerError("HGETALL answered oddly")
        }
        guard case .array(let pendingList) = try await client.send(RedisCommand("SMEMBERS", base + "pending")) else {
            throw TestServerError("SMEMBERS answered oddly")
        }
        var holders: [String: String] = [:]
        for i in stride(from: 0, to: holderFlat.count - 1, by: 2) {
            let parts = (holderFlat[i + 1].string ?? "").split(separator: "\u{1F}", omittingEmptySubsequences: false)
            holders[holderFlat[i].string ?? ""] = parts.prefix(2).joined(separator: "/")
        }
        let pending = Set(pendingList.compactMap(\.string))
        var handles: [String: LedgerSnapshot.Handle] = [:]
        for i in stride(from: 0, to: flat.count - 1, by: 2) {
            guard let id = flat[i].string, let expiry = flat[i + 1].string.flatMap(Double.init).map(Int64.init), expiry > now else { continue }
            handles[id] = .init(machine: holders[id] ?? "?", expiresAt: expiry, pending: pending.contains(id))
        }
        let rows = try await postgres.superuser("SELECT id, ended_at_ms IS NULL FROM sessions WHERE license_id = '\(license)'", database: database)
        var all = Set<String>()
        var live = Set<String>()
        for row in rows {
            let (id, isLive) = try row.decode((String, Bool).self)
            all.insert(id)
            if isLive { live.insert(id) }
        }
        let audits = try await postgres.superuser(
            "SELECT count(*) FROM audit_log a JOIN sessions s ON s.id = a.target WHERE a.action = 'session.acquire' AND s.license_id = '\(license)'",
            database: database)
        return LedgerSnapshot(handles: handles, redisNow: now, liveRows: live, rows: all, acquireAudits: Int(try audits.first?.decode(Int64.self) ?? -1))
    }

    /// Waits until the ledger has converged (or `limit` passed); returns the last snapshot and
    /// how long it took.
    func converged(within limit: Duration) async throws -> (LedgerSnapshot, Duration) {
        let started = ContinuousClock.now
        var last = try await snapshot()
        while !last.converged, started.duration(to: .now) < limit {
            try await Task.sleep(for: .milliseconds(250))
            last = try await snapshot()
        }
        return (last, started.duration(to: .now))
    }
}

/// One acquire of a storm: who asks, for which machine, with which idempotency key.
struct AcquireAttempt: Sendable, Hashable {
    var daemon: Int
    var user: Int
    var hardwareID: String
    var idempotencyKey: String
}

/// How an acquire was answered.
enum AcquireAnswer: Sendable, Hashable {
    case ok(session: String, tokenSession: String, resumed: Bool)
    case refused(code: WireStatus.Code, reason: String)
    /// No answer: the connection broke or the call timed out.
    case lost

    var session: String? {
        if case .ok(let session, _, _) = self { return session }
        return nil
    }

    var isNoSeats: Bool {
        if case .refused(_, "NO_SEATS") = self { return true }
        return false
    }

    /// Neither granted nor refused for good: worth retrying with the same idempotency key.
    var isRetryable: Bool {
        switch self {
        case .ok: false
        case .refused(let code, _): code == .unavailable || code == .deadlineExceeded
        case .lost: true
        }
    }
}

/// Runs acquires against real daemons and records every answer.
enum AcquireStorm {
    /// The `sid` claim of a lease token (its payload read without verifying: the tests check
    /// which session a token names, not its signature).
    static func tokenSession(_ token: String) -> String {
        let parts = token.split(separator: ".")
        guard parts.count == 3, let data = Base64URL.decode(parts[1]),
              let object = try? JSONSerialization.jsonObject(with: Data(data)) as? [String: Any]
        else { return "" }
        return object["sid"] as? String ?? ""
    }

    static func answer(_ body: () async throws -> Coditect_License_V1_AcquireResult) async -> AcquireAnswer {
        do {
            let result = try await body()
            return .ok(session: result.sessionID, tokenSession: tokenSession(result.leaseToken), resumed: result.resumed)
        } catch let error as LicenseCallError where error.reason != "TEST_TIMEOUT" && error.code != .deadlineExceeded {
            return .refused(code: error.code, reason: error.reason)
        } catch {
            return .lost
        }
    }

    /// `attempts`, all at once, each on its user's connection to its daemon (made beforehand);
    /// `fault` runs beside them once they have been started.
    static func run(
        _ attempts: [AcquireAttempt], daemons: [LicensedProcess], keys: [String], license: String,
        fault: (@Sendable () async throws -> Void)? = nil
    ) async throws -> [AcquireAttempt: AcquireAnswer] {
        var connections: [String: LicenseConnection] = [:]
        for attempt in attempts where connections["\(attempt.daemon)/\(attempt.user)"] == nil {
            connections["\(attempt.daemon)/\(attempt.user)"] = try await daemons[attempt.daemon].connect(apiKey: keys[attempt.user], callTimeout: .seconds(20))
        }
        let ready = connections
        let answers = try await withThrowingTaskGroup(of: (AcquireAttempt, AcquireAnswer)?.self) { group in
            for attempt in attempts {
                let connection = ready["\(attempt.daemon)/\(attempt.user)"]!
                group.addTask {
                    (attempt, await answer { try await connection.acquire(licenseID: license, hardwareID: attempt.hardwareID, idempotencyKey: attempt.idempotencyKey) })
                }
            }
            if let fault {
                group.addTask {
                    try await fault()
                    return nil
                }
            }
            return try await group.reduce(into: [AcquireAttempt: AcquireAnswer]()) { answers, next in
                if let (attempt, answer) = next { answers[attempt] = answer }
            }
        }
        for connection in ready.values { await connection.close() }
        return answers
    }

    /// Retries every retryable attempt with its idempotency key on `daemon` until it is granted
    /// or refused for good (or `limit` passes); returns the final answers.
    static func retry(_ attempts: [AcquireAttempt], on daemon: LicensedProcess, keys: [String], license: String, limit: Duration = .seconds(30)) async throws -> [AcquireAttempt: AcquireAnswer] {
        var connections: [Int: LicenseConnection] = [:]
        var answers: [AcquireAttempt: AcquireAnswer] = [:]
        let deadline = ContinuousClock.now + limit
        for attempt in attempts {
            var answer = AcquireAnswer.lost
            repeat {
                if connections[attempt.user] == nil {
                    connections[attempt.user] = try? await daemon.connect(apiKey: keys[attempt.user], callTimeout: .seconds(10))
                }
                if let connection = connections[attempt.user] {
                    answer = await Self.answer { try await connection.acquire(licenseID: license, hardwareID: attempt.hardwareID, idempotencyKey: attempt.idempotencyKey) }
                    if answer == .lost { connections[attempt.user] = nil }
                }
                if answer.isRetryable { try await Task.sleep(for: .milliseconds(250)) }
            } while answer.isRetryable && ContinuousClock.now < deadline
            answers[attempt] = answer
        }
        for connection in connections.values { await connection.close() }
        return answers
    }
}
