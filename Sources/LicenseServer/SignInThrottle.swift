import Foundation
import LicenseCore
import Synchronization

/// Throttles refused sign-ins per client address, as plain data: a few refusals are free, then
/// each one (and each `Hello` that arrives while the address must wait) makes the address wait
/// twice as long, up to a ceiling. An address that has been quiet for a while starts afresh.
///
/// While an address waits, its `Hello`s are refused at once with `SIGN_IN_THROTTLED` and the
/// time left as `retry_after_ms`, before any credential is looked at: a guessing client costs a
/// table lookup, not a hash and a database read. Other addresses are unaffected.
public struct SignInThrottleState: Sendable {
    /// When refusals start to cost waiting, and how much.
    public struct Policy: Sendable, Equatable {
        /// Refusals an address may have before it must wait.
        public var freeRefusals: Int = 5
        /// The first wait; each further refusal doubles it.
        public var firstDelay: Duration = .seconds(1)
        /// The longest wait.
        public var maximumDelay: Duration = .seconds(60)
        /// An address without a refusal for this long starts afresh.
        public var quietPeriod: Duration = .seconds(300)
        /// Addresses remembered at most; past it the quiet ones, then the oldest, are forgotten.
        public var maximumAddresses: Int = 65_536

        public init() {}
    }

    struct Entry: Sendable {
        var refusals: Int
        var lastRefusal: Timestamp
        var waitUntil: Timestamp
    }

    public let policy: Policy
    private(set) var entries: [String: Entry] = [:]

    public init(policy: Policy = Policy()) {
        self.policy = policy
    }

    /// How long a `Hello` from `address` must still wait (`nil`: it may be checked now).
    public func wait(for address: String, now: Timestamp) -> Duration? {
        guard let entry = entries[Self.key(address)], entry.waitUntil > now else { return nil }
        return now.duration(to: entry.waitUntil)
    }

    /// A `Hello` from `address` was refused (a bad credential, or sent while it had to wait).
    /// Returns how long the address must now wait before its next `Hello` (`nil`: no wait).
    public mutating func refused(_ address: String, now: Timestamp) -> Duration? {
        let key = Self.key(address)
        var entry = entries[key] ?? Entry(refusals: 0, lastRefusal: now, waitUntil: now)
        if entry.lastRefusal.duration(to: now) > policy.quietPeriod { entry.refusals = 0 }
        entry.refusals += 1
        entry.lastRefusal = now
        var delay: Duration?
        let excess = entry.refusals - policy.freeRefusals
        if excess > 0 {
            let doubled = policy.firstDelay * Double(1 << min(excess - 1, 30))
            delay = min(doubled, policy.maximumDelay)
            entry.waitUntil = now.advanced(by: delay!)
        }
        if entries[key] == nil, entries.count >= policy.maximumAddresses { forget(now: now) }
        entries[key] = entry
        return delay
    }

    /// Forgets the quiet addresses, and when that is not enough the older half.
    private mutating func forget(now: Timestamp) {
        entries = entries.filter { $0.value.lastRefusal.duration(to: now) <= policy.quietPeriod || $0.value.waitUntil > now }
        if entries.count >= policy.maximumAddresses {
            let kept = entries.sorted { $0.value.lastRefusal > $1.value.lastRefusal }.prefix(policy.maximumAddresses / 2)
            entries = Dictionary(uniqueKeysWithValues: kept.map { ($0.key, $0.value) })
        }
    }

    /// The key an address is throttled under: an IPv4 address itself; for IPv6 its /64, since
    /// one subscriber commonly holds a whole /64 and could otherwise rotate through it.
    static func key(_ address: String) -> String {
        guard address.contains(":") else { return address }
        var bytes = in6_addr()
        guard inet_pton(AF_INET6, address, &bytes) == 1 else { return address }
        let prefix = withUnsafeBytes(of: &bytes) { Array($0.prefix(8)) }
        if prefix == [0, 0, 0, 0, 0, 0, 0, 0] { return address }  // ::1, IPv4-mapped: the address itself
        return stride(from: 0, to: 8, by: 2).map { String(UInt16(prefix[$0]) << 8 | UInt16(prefix[$0 + 1]), radix: 16) }.joined(separator: ":") + "::/64"
    }
}

/// `SignInThrottleState` shared by every connection of a server.
public final class SignInThrottle: Sendable {
    private let state: Mutex<SignInThrottleState>

    public init(policy: SignInThrottleState.Policy = .init()) {
        state = Mutex(SignInThrottleState(policy: policy))
    }

    /// The refusal for a `Hello` from `address` that must wait, or `nil`. A `Hello` that must
    /// wait counts as refused, so a client that ignores `retry_after_ms` waits ever longer.
    func admit(_ address: String, now: Timestamp) -> LicenseError? {
        state.withLock { state in
            guard state.wait(for: address, now: now) != nil else { return nil }
            let wait = state.refused(address, now: now) ?? .seconds(1)
            return LicenseError(.resourceExhausted, .signInThrottled, "too many refused sign-ins from this address; retry later", retryAfter: wait)
        }
    }

    /// A credential from `address` was refused; returns how long the address must now wait.
    func refused(_ address: String, now: Timestamp) -> Duration? {
        state.withLock { $0.refused(address, now: now) }
    }
}
