import LicenseCore
import Logging
import ServiceLifecycle

/// Runs `LicenseService.sweepAll()` at an interval, so that every live session row whose seat is
/// gone is ended (lapsed) and every seat without a live row is freed, on any replica: sweeps
/// are idempotent, so every replica runs one and none needs to be elected.
public struct SessionSweeperService: Service {
    let service: LicenseService
    let logger: Logger
    /// The pause between sweeps (15 s, with up to a fifth more at random so replicas drift
    /// apart). A row outlives its seat by at most this plus one sweep's duration.
    public var interval: Duration

    /// A sweeper over `service`'s repository and seat store.
    public init(service: LicenseService, logger: Logger, interval: Duration = .seconds(15)) {
        self.service = service
        self.logger = logger
        self.interval = interval
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                let jitter = Duration.milliseconds(Int64.random(in: 0...max(1, interval.milliseconds / 5)))
                do {
                    try await Task.sleep(for: interval + jitter)
                } catch {
                    return
                }
                do {
                    let report = try await service.sweepAll()
                    if report.failedLicenses > 0 {
                        logger.warning("session sweep skipped licenses whose backend failed", metadata: ["failed": "\(report.failedLicenses)"])
                    }
                } catch {
                    logger.warning("session sweep failed; retrying at the next interval", metadata: ["error": "\((error as? LicenseError)?.message ?? "\(type(of: error))")"])
                }
            }
        }
    }
}
