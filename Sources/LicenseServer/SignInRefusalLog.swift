import LicenseCore
import Synchronization

/// Refused sign-ins as audit rows, as plain data: the first refusal from a client address in
/// an interval is recorded at once; the rest from that address until the interval ends become
/// one row with their count. A client refused at line rate so adds one row per interval, not
/// one per attempt, and the log still says who tried, how often and when.
public struct SignInRefusalLogState: Sendable {
    struct Burst: Sendable {
        var started: Timestamp
        var firstCounted: Timestamp?
        var counted = 0
        var outcome = ""
        var target = ""
    }

    /// The interval refusals from one address are counted over.
    public let interval: Duration
    /// Addresses counted at most at once; past it a refusal from a new address is recorded alone.
    public let maximumAddresses: Int
    private(set) var bursts: [String: Burst] = [:]

    public init(interval: Duration = .seconds(60), maximumAddresses: Int = 65_536) {
        self.interval = interval
        self.maximumAddresses = maximumAddresses
    }

    /// A `Hello` from `address` was refused. Returns the rows to record now: the count of the
    /// address's previous burst when its interval has ended, and this refusal when it is the
    /// first of an interval; nothing when it was counted into the address's burst.
    public mutating func refused(address: String, outcome: String, target: String, now: Timestamp) -> [AuditEvent] {
        var rows: [AuditEvent] = []
        if var burst = bursts[address] {
            if burst.started.duration(to: now) < interval {
                if burst.counted == 0 { burst.firstCounted = now }
                burst.counted += 1
                burst.outcome = outcome
                burst.target = target
                bursts[address] = burst
                return []
            }
            rows += Self.rows(of: burst)
            bursts[address] = nil
        }
        if bursts.count < maximumAddresses { bursts[address] = Burst(started: now) }
        return rows + [Self.row(at: now, target: target, outcome: outcome, count: 1)]
    }

    /// The rows of the bursts whose interval has ended (every burst with `all`), which are then
    /// forgotten. A burst with nothing counted after its first refusal adds no row.
    public mutating func due(now: Timestamp, all: Bool = false) -> [AuditEvent] {
        var rows: [AuditEvent] = []
        for (address, burst) in bursts where all || burst.started.duration(to: now) >= interval {
            rows += Self.rows(of: burst)
            bursts[address] = nil
        }
        return rows.sorted { $0.at < $1.at }
    }

    private static func rows(of burst: Burst) -> [AuditEvent] {
        guard burst.counted > 0, let first = burst.firstCounted else { return [] }
        return [row(at: first, target: burst.target, outcome: burst.outcome, count: burst.counted)]
    }

    private static func row(at: Timestamp, target: String, outcome: String, count: Int) -> AuditEvent {
        AuditEvent(at: at, tenantID: nil, actor: nil, action: "hello", target: target, outcome: outcome, count: count)
    }
}

/// `SignInRefusalLogState` shared by every connection of a server.
public final class SignInRefusalLog: Sendable {
    private let state: Mutex<SignInRefusalLogState>

    public init(interval: Duration = .seconds(60)) {
        state = Mutex(SignInRefusalLogState(interval: interval))
    }

    /// The interval refusals are counted over.
    public var interval: Duration { state.withLock { $0.interval } }

    /// The rows to record for a refusal (see `SignInRefusalLogState.refused`).
    func refused(address: String, outcome: String, target: String, now: Timestamp) -> [AuditEvent] {
        state.withLock { $0.refused(address: address, outcome: outcome, target: target, now: now) }
    }

    /// The rows of ended bursts (every burst with `all`, at shutdown).
    func due(now: Timestamp, all: Bool) -> [AuditEvent] {
        state.withLock { $0.due(now: now, all: all) }
    }
}
