import LicenseCore
import Logging
import ServiceLifecycle

/// Re-reads the signing keys from the repository at an interval, so that a rotation made
/// through one replica reaches the others (and retired keys leave the JWKS when their tokens
/// have expired). Run it as a `Service` beside the server.
public struct SigningKeyRefresher: Service {
    let repository: any LicenseRepository
    let signer: any LeaseTokenSigner
    let clock: any WallClock
    let logger: Logger
    /// How often the keys are re-read (30 s).
    public var interval: Duration = .seconds(30)

    /// Reads the keys once.
    public func refresh() async throws {
        try signer.load(try await repository.signingKeys(), now: clock.now())
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
                    try await refresh()
                } catch {
                    logger.warning("could not re-read the signing keys; keeping the current ones", metadata: ["error": "\((error as? LicenseError)?.message ?? "\(type(of: error))")"])
                }
            }
        }
    }
}
