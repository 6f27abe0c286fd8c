import Synchronization

/// A daemon's copy of licenses, read on every acquire and heartbeat.
///
/// The repository that owns it drops an entry whenever that license changes. A generation
/// counter, bumped by every invalidation, keeps a read that began before a change from storing
/// what it read after the change was made.
///
/// - The SQLite repository trusts its cache always: the file belongs to one daemon, so its own
///   updates are all the changes there are.
/// - The Postgres repository trusts it only while subscribed to the license-change channel
///   (LISTEN): every change sends the license id, and each daemon drops that entry. While the
///   subscription is down nothing is served, and when it comes back the cache starts empty
///   (notifications sent meanwhile were missed). `maxAge` is a safety net should a notification
///   be lost without the subscription noticing (a silently dead connection).
public final class LicenseCache: Sendable {
    private struct State {
        var trusted: Bool
        var generation: UInt64 = 0
        var entries: [LicenseID: (license: License, storedAt: ContinuousClock.Instant)] = [:]
        /// Every license read (trusted or not), kept for `lastKnown` until a change names it.
        var known: [LicenseID: License] = [:]
    }

    private let state: Mutex<State>
    /// The most licenses kept; when full, the cache empties and refills.
    public let capacity: Int
    /// No entry is served longer than this (`nil`: no limit).
    public let maxAge: Duration?

    /// An empty cache; `trusted: false` serves nothing until `setTrusted(true)`.
    public init(capacity: Int = 100_000, maxAge: Duration? = nil, trusted: Bool = true) {
        self.capacity = capacity
        self.maxAge = maxAge
        state = Mutex(State(trusted: trusted))
    }

    /// Whether entries are being served.
    public var isTrusted: Bool { state.withLock { $0.trusted } }

    /// The cached license and the generation to pass to `store` after a miss.
    public func lookup(_ id: LicenseID) -> (License?, UInt64) {
        state.withLock { state in
            guard state.trusted, let entry = state.entries[id], maxAge.map({ entry.storedAt.duration(to: .now) < $0 }) ?? true else {
                return (nil, state.generation)
            }
            return (entry.license, state.generation)
        }
    }

    /// Stores a license read from the repository, unless an invalidation happened since the read began.
    public func store(_ license: License, readAt generation: UInt64) {
        state.withLock { state in
            guard state.generation == generation else { return }
            if state.known.count >= capacity { state.known.removeAll(keepingCapacity: true) }
            state.known[license.id] = license
            guard state.trusted else { return }
            if state.entries.count >= capacity { state.entries.removeAll(keepingCapacity: true) }
            state.entries[license.id] = (license, .now)
        }
    }

    /// The license as last read, whether or not the cache is trusted now, unless it was changed
    /// since: what a caller may fall back on while the repository is unreachable.
    public func lastKnown(_ id: LicenseID) -> License? {
        state.withLock { $0.known[id] }
    }

    /// Drops a license (it changed).
    public func invalidate(_ id: LicenseID) {
        state.withLock { state in
            state.generation &+= 1
            state.entries[id] = nil
            state.known[id] = nil
        }
    }

    /// Starts (`true`) or stops serving; either way the cache empties.
    public func setTrusted(_ trusted: Bool) {
        state.withLock { state in
            state.trusted = trusted
            state.generation &+= 1
            state.entries.removeAll()
        }
    }
}
