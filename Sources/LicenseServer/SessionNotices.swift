import LicenseWire
import Synchronization

/// Which connection holds which session, so that a revocation reaches the holder at once as a
/// `session_revoked` notice (besides failing its next heartbeat).
///
/// A session is held by the connection that last acquired or renewed it; it is forgotten on
/// release and when that connection ends. The registry is per daemon: a revocation made on another
/// replica reaches the holder through its next heartbeat instead.
final class SessionNotices: Sendable {
    private struct Holder {
        var connection: UInt64
        var writer: AnswerWriter
    }

    private struct Registry {
        var holders: [String: Holder] = [:]
        /// Each connection's sessions, so that closing one costs its own sessions, not all.
        var sessions: [UInt64: Set<String>] = [:]

        mutating func hold(_ session: String, _ holder: Holder) {
            if let previous = holders.updateValue(holder, forKey: session), previous.connection != holder.connection {
                sessions[previous.connection]?.remove(session)
            }
            sessions[holder.connection, default: []].insert(session)
        }

        mutating func drop(_ session: String) -> Holder? {
            guard let holder = holders.removeValue(forKey: session) else { return nil }
            sessions[holder.connection]?.remove(session)
            return holder
        }
    }

    private let registry = Mutex(Registry())
    private let nextConnection = Atomic<UInt64>(1)

    /// A new id for a connection.
    func connectionID() -> UInt64 { nextConnection.wrappingAdd(1, ordering: .relaxed).oldValue }

    /// Records what a successful answer on `connection` means for the registry.
    func answered(_ request: ClientFrame, with answer: ServerFrame, on connection: UInt64, writer: AnswerWriter) {
        guard answer.status.isOK else { return }
        switch request.call {
        case .acquire:
            registry.withLock { $0.hold(answer.acquire.sessionID, Holder(connection: connection, writer: writer)) }
        case .heartbeat(let heartbeat):
            registry.withLock { $0.hold(heartbeat.sessionID, Holder(connection: connection, writer: writer)) }
        case .release(let release):
            _ = registry.withLock { $0.drop(release.sessionID) }
        case .revokeSession(let revoke):
            notify(revoke.sessionID)
        case .setUserDisabled:
            answer.setUserDisabled.revokedSessionIds.forEach(notify)
        default:
            break
        }
    }

    private func notify(_ session: String) {
        if let holder = registry.withLock({ $0.drop(session) }) {
            holder.writer.send(.sessionRevoked(session))
        }
    }

    /// Forgets every session held by `connection` (it closed).
    func closed(_ connection: UInt64) {
        registry.withLock { registry in
            for session in registry.sessions.removeValue(forKey: connection) ?? [] { registry.holders[session] = nil }
        }
    }
}
