import LicenseServer
import Metrics
import Prometheus

extension ServeOptions {
    /// Latency buckets from 0.5 ms to 10 s: a call is 1-2 ms when all is well and the alerts
    /// look at 1 s.
    static let durationBuckets: [Duration] = [
        .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5),
        .seconds(5), .seconds(10),
    ]

    /// Bootstraps swift-metrics with Prometheus (once per process) and returns what renders
    /// the exposition for `GET /metrics`.
    static func bootstrapPrometheus() -> @Sendable () -> [UInt8] {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = durationBuckets
        factory.valueHistogramBuckets["licensed_group_commit_batch_size"] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096]
        MetricsSystem.bootstrap(factory)
        BuildInfo.record()
        return { MetricCatalogue.addingHelp(to: registry.emitToBuffer()) }
    }
}
