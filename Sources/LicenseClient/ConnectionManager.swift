import LicenseWire
import Synchronization

/// Keeps the one connection a ``LicenseClient`` shares among its calls: opens it on demand
/// (trying the endpoints in the configured order and authenticating with `Hello`), replaces it
/// when it closes, and, after a going-away notice, reconnects no sooner than the server asked,
/// starting with the next endpoint. Concurrent callers wait for a single connection attempt.
actor ConnectionManager {
    /// What a going-away notice tells about one connection; set on its event loop.
    final class Drain: Sendable {
        private let state = Mutex<Duration?>(nil)
        func record(reconnectAfter: Duration) { state.withLock { $0 = reconnectAfter } }
        var reconnectAfter: Duration? { state.withLock { $0 } }
    }

    private let configuration: LicenseClientConfiguration
    private let onHello: @Sendable (Coditect_License_V1_HelloResult, Duration) -> Void
    private let onNotice: @Sendable (Coditect_License_V1_Notice) -> Void
    private var current: (connection: LicenseConnection, drain: Drain)?
    private var connecting = false
    private var waiters: [CheckedContinuation<Void, Never>] = []
    /// The endpoint that answered last (in-order failover starts there).
    private var preferred = 0

    init(
        configuration: LicenseClientConfiguration,
        onHello: @escaping @Sendable (Coditect_License_V1_HelloResult, Duration) -> Void,
        onNotice: @escaping @Sendable (Coditect_License_V1_Notice) -> Void
    ) {
        self.configuration = configuration
        self.onHello = onHello
        self.onNotice = onNotice
    }

    /// An open, authenticated connection.
    func connection() async throws -> LicenseConnection {
        while true {
            if let current, current.connection.isActive, current.drain.reconnectAfter == nil {
                return current.connection
            }
            if connecting {
                await withCheckedContinuation { waiters.append($0) }
                continue
            }
            connecting = true
            defer {
                connecting = false
                let waiting = waiters
                waiters.removeAll()
                for waiter in waiting { waiter.resume() }
            }
            var start = preferred
            if let previous = current, let reconnectAfter = previous.drain.reconnectAfter {
                // Going away: honour the server's delay (with up to 25% jitter so a fleet spreads),
                // and try the next endpoint first.
                current = nil
                start = (preferred + 1) % configuration.endpoints.count
                try await configuration.clock.sleep(for: reconnectAfter * Double.random(in: 1...1.25))
            }
            current = try await establish(startingAt: start)
            return current!.connection
        }
    }

    /// Presents a fresh credential on `connection` (after the server refused the current one).
    func reauthenticate(_ connection: LicenseConnection) async throws {
        let credential = try await configuration.credentials.credential(refresh: true)
        try await hello(connection, credential)
    }

    /// Closes the current connection.
    func close() async {
        let connection = current?.connection
        current = nil
        await connection?.close()
    }

    private func establish(startingAt start: Int) async throws -> (LicenseConnection, Drain) {
        let count = configuration.endpoints.count
        let order: [Int] = switch configuration.endpointOrder {
        case .inOrder: (0..<count).map { (start + $0) % count }
        case .random: (0..<count).shuffled()
        }
        var lastError = LicenseCallError(code: .unavailable, reason: "NO_ENDPOINT", message: "no license server endpoint is configured")
        for index in order {
            let drain = Drain()
            let onNotice = self.onNotice
            let connection: LicenseConnection
            do {
                connection = try await LicenseConnection.connect(to: configuration.endpoints[index]) { notice in
                    if case .goingAway(let away) = notice.kind {
                        drain.record(reconnectAfter: .milliseconds(Int64(clamping: away.reconnectAfterMs)))
                    }
                    onNotice(notice)
                }
            } catch let error as LicenseCallError {
                lastError = error
                continue
            }
            do {
                try await authenticate(connection)
                preferred = index
                return (connection, drain)
            } catch let error as LicenseCallError where error.isTransient {
                await connection.close()
                lastError = error
            } catch {
                await connection.close()
                throw error
            }
        }
        throw lastError
    }

    /// Hello with the provider's credential; a refused credential is refreshed and tried once more.
    private func authenticate(_ connection: LicenseConnection) async throws {
        do {
            try await hello(connection, try await configuration.credentials.credential(refresh: false))
        } catch let error as LicenseCallError where error.code == .unauthenticated {
            try await hello(connection, try await configuration.credentials.credential(refresh: true))
        }
    }

    private func hello(_ connection: LicenseConnection, _ credential: LicenseCredential) async throws {
        let sent = configuration.clock.monotonicTime()
        let result = try await connection.hello(credential, clientName: configuration.clientName, clientVersion: configuration.clientVersion)
        // The server read its clock about half-way through the round trip.
        let received = configuration.clock.monotonicTime()
        onHello(result, sent + (received - sent) / 2)
    }
}
