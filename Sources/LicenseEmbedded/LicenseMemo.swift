import LicenseCore
import Synchronization

/// Licenses kept in memory by the SQLite repository, dropped when it changes one.
///
/// A generation counter, bumped by every invalidation, keeps a read that began before a change
/// from storing what it read after the change was made.
final class LicenseMemo: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var entries: [LicenseID: License] = [:]
    }

    private let state = Mutex(State())
    let capacity: Int

    init(capacity: Int = 100_000) { self.capacity = capacity }

    /// The remembered license and the generation to pass to `store` after a miss.
    func lookup(_ id: LicenseID) -> (License?, UInt64) {
        state.withLock { ($0.entries[id], $0.generation) }
    }

    /// Remembers a license read at `generation`, unless an invalidation came since.
    func store(_ license: License, readAt generation: UInt64) {
        state.withLock { state in
            guard state.generation == generation else { return }
            if state.entries.count >= capacity { state.entries.removeAll(keepingCapacity: true) }
            state.entries[license.id] = license
        }
    }

    func invalidate(_ id: LicenseID) {
        state.withLock { state in
            state.generation &+= 1
            state.entries[id] = nil
        }
    }
}
