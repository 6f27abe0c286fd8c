import Foundation
import LicenseCore
import LicenseTokens
import LicenseWire
import Logging
import NIOConcurrencyHelpers
import Synchronization

/// The client CODITECT links: one shared connection to the license server (with failover,
/// reconnection and credential refresh), retries within a budget, offline token verification with
/// keys cached on disk, and leases that survive outages (``withLease(licenseID:options:_:)``).
///
/// ```swift
/// let client = try LicenseClient(configuration: .init(
///     endpoints: [try LicenseServerEndpoint(parsing: "licenses.example.com:7443")],
///     credentials: .apiKey(key)))
/// try await client.withLease(licenseID: "acme-pro") { lease in
///     try await runTheTool(features: lease.grant.features)
/// }
/// ```
public final class LicenseClient: Sendable {
    /// The configuration the client was created with.
    public let configuration: LicenseClientConfiguration
    /// This machine's hardware id (a SHA-256 fingerprint), sent with every acquire.
    public let hardwareID: String
    let logger: Logger
    let store: ClientStateStore?
    private let connections: ConnectionManager
    private let time: NIOLockedValueBox<ServerClock>
    private let keys: Mutex<KeySet?>
    private let listeners = NIOLockedValueBox<[UInt64: AsyncStream<String>.Continuation]>([:])
    private let nextListener = Atomic<UInt64>(1)

    struct KeySet: Sendable {
        var verifier: LeaseTokenVerifier
        var fetchedAt: Timestamp
        var lastRefresh: Duration?
    }

    /// Creates a client; nothing is connected until the first call. Throws when the configuration
    /// names no endpoint or no hardware id can be determined.
    public init(configuration: LicenseClientConfiguration, logger: Logger = Logger(label: "coditect.license.client")) throws {
        guard !configuration.endpoints.isEmpty else {
            throw LicenseCallError(code: .invalidArgument, reason: "NO_ENDPOINT", message: "configure at least one license server endpoint")
        }
        self.configuration = configuration
        self.logger = logger
        self.hardwareID = try HardwareFingerprint.resolve(override: configuration.hardwareID, stateDirectory: configuration.stateDirectory)
        let store = configuration.stateDirectory.map { ClientStateStore(root: $0, endpoints: configuration.endpoints, issuer: configuration.issuer) }
        self.store = store
        let saved = store?.clock()
        let time = NIOLockedValueBox(ServerClock(
            offset: .milliseconds(saved?.offsetMs ?? 0),
            highWater: Timestamp(millisecondsSinceEpoch: saved?.highWaterMs ?? 0)
        ))
        self.time = time
        self.keys = Mutex(store?.keys().flatMap { cached in
            (try? JWKS.decode(cached.jwks)).map {
                KeySet(verifier: LeaseTokenVerifier(keys: $0, issuer: configuration.issuer), fetchedAt: Timestamp(millisecondsSinceEpoch: cached.fetchedAtMs))
            }
        })
        let clock = configuration.clock
        let listeners = self.listeners
        self.connections = ConnectionManager(
            configuration: configuration,
            onHello: { hello, monotonic in
                let wall = clock.wallTime().advanced(by: monotonic - clock.monotonicTime())
                time.withLockedValue {
                    $0.synchronize(serverTime: Timestamp(millisecondsSinceEpoch: Int64(clamping: hello.serverTimeMs)), wall: wall, monotonic: monotonic)
                }
            },
            onNotice: { notice in
                guard case .sessionRevoked(let revoked) = notice.kind else { return }
                for listener in listeners.withLockedValue({ Array($0.values) }) { listener.yield(revoked.sessionID) }
            }
        )
    }

    /// Closes the connection. Leases in progress are not released; use their scope for that.
    public func close() async {
        await connections.close()
    }

    // MARK: - Calls

    /// Runs `operation` on the shared connection, retrying `UNAVAILABLE`, timeouts and
    /// connection failures with jittered backoff (honouring `retry_after_ms`) until `budget`
    /// (default: the configuration's) is spent; a refused credential is refreshed and the call
    /// retried once.
    func perform<T: Sendable>(budget: Duration? = nil, _ operation: @Sendable (LicenseConnection) async throws -> T) async throws -> T {
        let clock = configuration.clock
        let start = clock.monotonicTime()
        let budget = budget ?? configuration.retryBudget
        var failures = 0
        var reauthenticated = false
        var retriedClosed = false
        while true {
            var connection: LicenseConnection?
            do {
                let open = try await connections.connection()
                connection = open
                return try await operation(open)
            } catch let error as LicenseCallError {
                if error.code == .unauthenticated, !reauthenticated, let connection {
                    reauthenticated = true
                    try await connections.reauthenticate(connection)
                    continue
                }
                guard error.isTransient else { throw error }
                if error.reason == "CONNECTION_CLOSED", !retriedClosed {
                    // The shared connection closed under the call (a server that went away, an idle
                    // connection dropped by a middlebox): every call is idempotent, so try once
                    // more at once on a new connection.
                    retriedClosed = true
                    continue
                }
                failures += 1
                let wait = max(configuration.backoff.delay(afterFailures: failures), .milliseconds(Int64(clamping: error.retryAfterMs)))
                guard clock.monotonicTime() - start + wait <= budget else { throw error }
                logger.debug("license server call failed; retrying", metadata: ["reason": "\(error.reason)", "wait_ms": "\(wait.milliseconds)"])
                try await clock.sleep(for: wait)
            }
        }
    }

    /// Acquires a seat of `licenseID` for this machine and verifies the lease token it returns.
    /// `NO_SEATS` is thrown at once (its ``LicenseCallError/seatsTotal`` says how many seats the
    /// license has); transient failures are retried within the budget with the same idempotency key.
    public func acquire(licenseID: String, idempotencyKey: String = UUID().uuidString, clientInfo: [String: String] = [:], budget: Duration? = nil) async throws -> LeaseGrant {
        let hardwareID = self.hardwareID
        let result = try await perform(budget: budget) { connection in
            try await connection.acquire(licenseID: licenseID, hardwareID: hardwareID, idempotencyKey: idempotencyKey, clientInfo: clientInfo)
        }
        let claims = try await verifyToken(result.leaseToken, licenseID: licenseID, sessionID: result.sessionID)
        return LeaseGrant(
            licenseID: licenseID, sessionID: result.sessionID, token: result.leaseToken, claims: claims,
            leaseExpiresAt: Timestamp(millisecondsSinceEpoch: Int64(clamping: result.leaseExpiresAtMs)),
            nextHeartbeatAt: Timestamp(millisecondsSinceEpoch: Int64(clamping: result.leaseExpiresAtMs)).advanced(by: .seconds(Int64(result.heartbeatIntervalS) - Int64(result.leaseTtlS))),
            heartbeatInterval: .seconds(Int64(result.heartbeatIntervalS)), resumed: result.resumed
        )
    }

    /// Renews `grant`'s lease; returns it with the new expiry (and a fresh token when the server
    /// sent one, verified). `budget` zero makes a single attempt.
    public func heartbeat(_ grant: LeaseGrant, budget: Duration? = nil) async throws -> LeaseGrant {
        let result = try await perform(budget: budget) { connection in
            try await connection.heartbeat(sessionID: grant.sessionID, tokenExpiresAtMs: UInt64(grant.claims.expiresAt * 1000))
        }
        var renewed = grant
        renewed.leaseExpiresAt = Timestamp(millisecondsSinceEpoch: Int64(clamping: result.leaseExpiresAtMs))
        renewed.nextHeartbeatAt = Timestamp(millisecondsSinceEpoch: Int64(clamping: result.nextHeartbeatAtMs))
        if !result.leaseToken.isEmpty {
            renewed.claims = try await verifyToken(result.leaseToken, licenseID: grant.licenseID, sessionID: grant.sessionID)
            renewed.token = result.leaseToken
        }
        return renewed
    }

    /// Gives a seat back. Releasing an ended session succeeds.
    public func release(sessionID: String, budget: Duration? = nil) async throws {
        try await perform(budget: budget) { connection in try await connection.release(sessionID: sessionID) }
    }

    // MARK: - Time

    /// The estimated server time (see ``ServerClock``), and whether the wall clock has been turned back.
    public func serverTime() -> ServerClock.Reading {
        let clock = configuration.clock
        let reading = time.withLockedValue { $0.read(wall: clock.wallTime(), monotonic: clock.monotonicTime()) }
        return reading
    }

    /// Stores the clock's offset and high-water mark so a restart cannot move time back.
    func persistClock() {
        guard let store else { return }
        let state = time.withLockedValue { ClientStateStore.ClockState(offsetMs: $0.offset.milliseconds, highWaterMs: $0.highWater.millisecondsSinceEpoch) }
        do { try store.saveClock(state) } catch { logger.warning("cannot store the clock state", metadata: ["error": "\(error)"]) }
    }

    // MARK: - Tokens

    /// Verifies a lease token offline: signature by a known key (refreshing the keys from the
    /// server once when they are missing, stale, or do not know the token's key), issuer, expiry
    /// against the estimated server time, this machine's hardware binding, and, when given, the
    /// license and session it must be for.
    public func verifyToken(_ token: String, licenseID: String? = nil, sessionID: String? = nil, online: Bool = true) async throws -> LeaseClaims {
        let now = serverTime().now
        var refreshed = false
        if online, keySet(usableAt: now) == nil {
            try await refreshKeys()
            refreshed = true
        }
        while true {
            guard let set = keySet(usableAt: now) else {
                throw LicenseCallError(code: .unavailable, reason: "KEYS_UNAVAILABLE", message: "the server's signing keys are not cached and the server cannot be reached")
            }
            do {
                let claims = try set.verifier.verify(token, now: now, hardwareID: hardwareID)
                guard licenseID == nil || claims.licenseID == licenseID, sessionID == nil || claims.sessionID == sessionID else {
                    throw LicenseCallError.invalidToken("the lease token is for another license or session")
                }
                return claims
            } catch let error as LicenseError {
                let mapped = LicenseCallError(WireStatus(error))
                // An unknown key may be a new one: refresh once (at most once a minute).
                guard error.reason == .unknownSigningKey, online, !refreshed, refreshAllowed() else { throw mapped }
                try await refreshKeys()
                refreshed = true
            }
        }
    }

    /// Fetches the server's signing keys and caches them (on disk too).
    public func refreshKeys() async throws {
        let json = try await perform { connection in try await connection.signingKeysJSON() }
        let decoded: [VerificationKey]
        do { decoded = try JWKS.decode(json) } catch {
            throw LicenseCallError(code: .internal, reason: "INVALID_JWKS", message: "the server's signing keys could not be read")
        }
        let now = serverTime().now
        let monotonic = configuration.clock.monotonicTime()
        keys.withLock { $0 = KeySet(verifier: LeaseTokenVerifier(keys: decoded, issuer: configuration.issuer), fetchedAt: now, lastRefresh: monotonic) }
        do { try store?.saveKeys(.init(jwks: json, fetchedAtMs: now.millisecondsSinceEpoch)) } catch {
            logger.warning("cannot cache the signing keys", metadata: ["error": "\(error)"])
        }
    }

    private func keySet(usableAt now: Timestamp) -> KeySet? {
        keys.withLock { $0 }.flatMap { $0.fetchedAt.advanced(by: configuration.keyCacheLifetime) > now ? $0 : nil }
    }

    private func refreshAllowed() -> Bool {
        let now = configuration.clock.monotonicTime()
        return keys.withLock { $0?.lastRefresh.map { now - $0 >= .seconds(60) } ?? true }
    }

    // MARK: - Revocation notices

    /// A stream of session ids the server said were revoked, until `body` returns.
    func withRevocations<T>(_ body: (AsyncStream<String>) async throws -> T) async rethrows -> T {
        let id = nextListener.wrappingAdd(1, ordering: .relaxed).oldValue
        let (stream, continuation) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingNewest(16))
        listeners.withLockedValue { $0[id] = continuation }
        defer {
            listeners.withLockedValue { _ = $0.removeValue(forKey: id) }
            continuation.finish()
        }
        return try await body(stream)
    }
}
