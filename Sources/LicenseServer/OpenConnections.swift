import Synchronization

/// The open connections' drain actions, so that graceful shutdown reaches every connection from
/// the listener's one shutdown handler.
///
/// A connection used to register a graceful-shutdown handler of its own around its reader. That
/// kept the handler's frames on every reader task's stack for the connection's whole life, about
/// 1.8 KiB per idle connection (docs/benchmarks.md); one dictionary entry costs a tenth of that.
final class OpenConnections: Sendable {
    private struct State {
        var drains: [UInt64: @Sendable () -> Void] = [:]
        var draining = false
    }

    private let state = Mutex(State())

    /// Registers a connection's drain action; runs it at once if the server is draining already
    /// (a connection accepted just before the listener closed).
    func opened(_ connection: UInt64, drain: @escaping @Sendable () -> Void) {
        let drainNow = state.withLock { state -> Bool in
            if state.draining { return true }
            state.drains[connection] = drain
            return false
        }
        if drainNow { drain() }
    }

    /// Forgets a connection that closed.
    func closed(_ connection: UInt64) {
        _ = state.withLock { $0.drains.removeValue(forKey: connection) }
    }

    /// Runs every open connection's drain action once; connections opened later drain at once.
    func drainAll() {
        let drains = state.withLock { state -> [@Sendable () -> Void] in
            state.draining = true
            defer { state.drains.removeAll() }
            return Array(state.drains.values)
        }
        for drain in drains { drain() }
    }
}
