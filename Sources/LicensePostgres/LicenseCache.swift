import LicenseCore
import NIOConcurrencyHelpers

/// The daemon's copy of licenses, read on every acquire and heartbeat.
///
/// The cache is trusted only while the repository is subscribed to the license-change channel
/// (LISTEN): every change to a license row sends its id (a trigger calls `pg_notify`), and each
/// daemon drops that entry. While the subscription is down nothing is served from the cache,
/// and when it comes back the cache starts empty (notifications sent meanwhile were missed).
final class LicenseCache: Sendable {
    private struct State {
        var trusted = false
        /// Bumped on every invalidation, so a read that raced an invalidation is not stored.
        var generation: UInt64 = 0
        var entries: [LicenseID: (license: License, storedAt: ContinuousClock.Instant)] = [:]
    }

    private let state = NIOLockedValueBox(State())
    let capacity: Int
    /// A safety net should a notification be lost without the subscription noticing (a silently
    /// dead connection): no entry is served longer than this.
    let maxAge: Duration

    init(capacity: Int = 100_000, maxAge: Duration = .seconds(30)) {
        self.capacity = capacity
        self.maxAge = maxAge
    }

    var isTrusted: Bool { state.withLockedValue { $0.trusted } }

    /// The cached license and the generation to pass to `store` after a miss.
    func lookup(_ id: LicenseID) -> (License?, UInt64) {
        state.withLockedValue { state in
            guard state.trusted, let entry = state.entries[id], entry.storedAt.duration(to: .now) < maxAge else {
                return (nil, state.generation)
            }
            return (entry.license, state.generation)
        }
    }

    /// Stores a license read from the database, unless an invalidation happened since the read began.
    func store(_ license: License, readAt generation: UInt64) {
        state.withLockedValue { state in
            guard state.trusted, state.generation == generation else { return }
            if state.entries.count >= capacity { state.entries.removeAll(keepingCapacity: true) }
            state.entries[license.id] = (license, .now)
        }
    }

    func invalidate(_ id: LicenseID) {
        state.withLockedValue { state in
            state.generation &+= 1
            state.entries[id] = nil
        }
    }

    /// Called when the subscription starts (`true`) or is lost (`false`); either way the cache empties.
    func setTrusted(_ trusted: Bool) {
        state.withLockedValue { state in
            state.trusted = trusted
            state.generation &+= 1
            state.entries.removeAll()
        }
    }
}
