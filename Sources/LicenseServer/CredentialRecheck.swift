import LicenseCore
import Synchronization

/// When a connection's credential was last checked, so that it is checked again (revoked key,
/// disabled user, suspended tenant, expired ID token) at most once per interval, at the first
/// call after the interval has passed.
final class CredentialRecheck: Sendable {
    private let checkedAt = Mutex<Timestamp?>(nil)
    let interval: Duration

    init(interval: Duration) { self.interval = interval }

    /// A `Hello` succeeded at `now`.
    func signedIn(at now: Timestamp) { checkedAt.withLock { $0 = now } }

    /// Whether a check is due at `now`. Claims it, so that concurrent calls do not all check.
    func claimDue(at now: Timestamp) -> Bool {
        checkedAt.withLock { last in
            guard let previous = last, now >= previous.advanced(by: interval) || now < previous else { return false }
            last = now
            return true
        }
    }
}
