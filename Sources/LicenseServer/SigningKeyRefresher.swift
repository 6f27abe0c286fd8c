import LicenseCore
import Logging
import ServiceLifecycle

/// Re-reads the signing keys from the repository at an interval, so that a rotation made
/// through one replica reaches the others (and retired keys leave the JWKS when their tokens
/// have expired). With a rotation period, it also rotates the signing key once the key is
/// that old: every replica checks, and a compare-and-set in the repository lets exactly one of
/// them rotate (`LicenseRepository.rotateSigningKey(to:ifCurrent:…)`). Run it as a `Service`
/// beside the server.
public struct SigningKeyRefresher: Service {
    let repository: any LicenseRepository
    let signer: any LeaseTokenSigner
    let clock: any WallClock
    let logger: Logger
    /// How often the keys are re-read (30 s).
    public var interval: Duration = .seconds(30)
    /// Rotate the signing key once it is this old (`nil`: only operators rotate it).
    public var rotationPeriod: Duration?

    public init(repository: any LicenseRepository, signer: any LeaseTokenSigner, clock: any WallClock, logger: Logger, rotationPeriod: Duration? = nil) {
        self.repository = repository
        self.signer = signer
        self.clock = clock
        self.logger = logger
        self.rotationPeriod = rotationPeriod
    }

    /// Reads the keys once.
    public func refresh() async throws {
        try signer.load(try await repository.signingKeys(), now: clock.now())
    }

    /// Rotates the signing key if a rotation period is set and the key is at least that old;
    /// returns the new key's id, or `nil` when nothing was due or another replica rotated first.
    /// The new key has the current one's algorithm; the retired one stays published for the
    /// longest offline grace (as with `licensectl signing-key rotate`).
    @discardableResult
    public func rotateIfDue() async throws -> String? {
        try await rotateIfDue(try await repository.signingKeys())
    }

    /// `rotateIfDue()` given the stored keys just read; after a rotation the signer has the new keys.
    private func rotateIfDue(_ keys: [StoredSigningKey]) async throws -> String? {
        guard let rotationPeriod else { return nil }
        let now = clock.now()
        guard let current = keys.signingKey, current.createdAt.duration(to: now) >= rotationPeriod else { return nil }
        let key = try signer.makeKey(algorithm: current.algorithm, at: now)
        let audit = AuditEvent(at: now, tenantID: nil, actor: nil, action: "signing_key.rotate", target: key.keyID)
        let until = now.advanced(by: LicenseService.retiredKeyPublication)
        guard try await repository.rotateSigningKey(to: key, ifCurrent: current.keyID, publishRetiredUntil: until, audit: audit) else { return nil }
        logger.notice("rotated the signing key on schedule", metadata: ["kid": "\(key.keyID)", "retired": "\(current.keyID)"])
        try await refresh()
        return key.keyID
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try await Task.sleep(for: interval)
                } catch {
                    return
                }
                do {
                    // One read serves the rotation check and the refresh; a rotation reloads the keys itself.
                    let keys = try await repository.signingKeys()
                    if try await rotateIfDue(keys) == nil { try signer.load(keys, now: clock.now()) }
                } catch {
                    logger.warning("could not re-read (or rotate) the signing keys; keeping the current ones", metadata: ["error": "\((error as? LicenseError)?.message ?? "\(type(of: error))")"])
                }
            }
        }
    }
}
