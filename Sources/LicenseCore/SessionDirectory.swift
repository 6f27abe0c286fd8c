import Synchronization

/// What never changes about a session once it is created (its owner, license and machine),
/// kept in memory so that a heartbeat or a release does not read the session row.
///
/// Whether a session has *ended* is not kept here: that changes, and the seat store answers it.
/// A heartbeat trusts this directory only while the seat store still holds the session's seat;
/// when it does not (a lapsed lease, or a session ended through another replica), the service
/// reads the row again. Entries are per daemon and need no invalidation across replicas,
/// because what they hold is immutable. When full, the directory empties and refills from the
/// repository as sessions call.
public final class SessionDirectory: Sendable {
    private let entries = Mutex<[SessionID: LeaseSession]>([:])
    /// The most sessions remembered (about 0.5 KiB each).
    public let capacity: Int

    /// An empty directory that remembers at most `capacity` sessions.
    public init(capacity: Int = 100_000) {
        precondition(capacity > 0, "a session directory needs room for at least one session")
        self.capacity = capacity
    }

    /// The remembered session, if any. Its `leaseExpiresAt`, `endedAt` and `endReason` are as
    /// they were when it was remembered: only the immutable fields may be relied on.
    public func session(_ id: SessionID) -> LeaseSession? {
        entries.withLock { $0[id] }
    }

    /// Remembers a session (as created, or as read from the repository).
    public func remember(_ session: LeaseSession) {
        entries.withLock { entries in
            if entries.count >= capacity, entries[session.id] == nil { entries.removeAll(keepingCapacity: true) }
            entries[session.id] = session
        }
    }

    /// Forgets a session (it ended).
    public func forget(_ id: SessionID) {
        _ = entries.withLock { $0.removeValue(forKey: id) }
    }

    /// How many sessions are remembered.
    public var count: Int { entries.withLock { $0.count } }
}
