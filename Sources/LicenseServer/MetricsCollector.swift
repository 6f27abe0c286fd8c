import LicenseCore
import Logging
import Metrics
import ServiceLifecycle

/// Keeps the gauges that need a backend read up to date, on a timer, so that a scrape of
/// `/metrics` only reads memory (`docs/metrics.md`): per license (up to `maxLicenseSeries`)
/// seats in use, seat capacity and expiry time; the license count; the signing key's age; the
/// TLS certificate's expiry time.
public struct MetricsCollector: Service {
    /// How often, and how many licenses get series of their own.
    public struct Configuration: Sendable {
        /// Pause between refreshes. Default 15 s.
        public var interval: Duration = .seconds(15)
        /// Licenses with series of their own, at most. Default 200. The rest are counted in
        /// `licensed_license_series_omitted`.
        public var maxLicenseSeries = 200

        public init() {}
    }

    let service: LicenseService
    let configuration: Configuration
    let certificateExpiry: Timestamp?
    let logger: Logger
    private let series = LicenseSeriesGauges()

    /// `certificateExpiry` is the TLS certificate's (`ServerEnvironment.certificateExpiry`).
    public init(service: LicenseService, configuration: Configuration = .init(), certificateExpiry: Timestamp?, logger: Logger) {
        self.service = service
        self.configuration = configuration
        self.certificateExpiry = certificateExpiry
        self.logger = logger
    }

    public func run() async throws {
        // Counters that only errors move exist from the start at 0, so rates and alerts see the first.
        LicenseService.signingErrors.increment(by: 0)
        if let certificateExpiry {
            Gauge(label: "licensed_tls_certificate_expiry_timestamp_seconds").record(Double(certificateExpiry.millisecondsSinceEpoch) / 1000)
        }
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try await refresh()
                } catch {
                    // The gauges keep their last values; `licensed_backend_up` says why.
                    logger.debug("metrics refresh failed", metadata: ["error": "\(type(of: error))"])
                }
                do { try await Task.sleep(for: configuration.interval) } catch { return }
            }
        }
    }

    /// Reads the licenses, their seats in use and the signing keys once, and sets the gauges.
    public func refresh() async throws {
        let now = service.clock.now()
        let licenses = try await service.repository.licenses(tenant: nil)
        let live = Set(try await service.repository.licensesWithLiveSessions())
        let chosen = Self.licensesWithSeries(licenses, live: live, cap: configuration.maxLicenseSeries)
        var values: [LicenseSeriesGauges.Key: LicenseSeriesGauges.Values] = [:]
        for license in chosen {
            let inUse = live.contains(license.id) ? try await service.seats.seatsInUse(licenseID: license.id) : 0
            values[.init(tenant: license.tenantID.rawValue, license: license.id.rawValue)] = .init(
                inUse: inUse, capacity: license.seats, expiry: license.validUntil
            )
        }
        series.set(values)
        Gauge(label: "licensed_licenses").record(licenses.count)
        Gauge(label: "licensed_license_series_omitted").record(licenses.count - chosen.count)
        let signing = try await service.repository.signingKeys().signingKey
        if let signing {
            Gauge(label: "licensed_signing_key_age_seconds").record(Double(now.millisecondsSinceEpoch - signing.createdAt.millisecondsSinceEpoch) / 1000)
        }
    }

    /// The licenses that get series of their own: active ones first, those with live sessions
    /// before the rest, then by tenant and id (a stable choice from refresh to refresh), at
    /// most `cap`.
    static func licensesWithSeries(_ licenses: [License], live: Set<LicenseID>, cap: Int) -> [License] {
        let ordered = licenses.sorted { a, b in
            let rankA = (a.status == .active ? 0 : 2) + (live.contains(a.id) ? 0 : 1)
            let rankB = (b.status == .active ? 0 : 2) + (live.contains(b.id) ? 0 : 1)
            if rankA != rankB { return rankA < rankB }
            return (a.tenantID.rawValue, a.id.rawValue) < (b.tenantID.rawValue, b.id.rawValue)
        }
        return Array(ordered.prefix(max(0, cap)))
    }
}
