import LicenseCore
import Metrics
import Synchronization

/// The per-license gauges: made for licenses that gain series, destroyed for those that lose
/// them, so a deleted or displaced license leaves no stale series behind.
final class LicenseSeriesGauges: Sendable {
    struct Key: Hashable, Sendable {
        let tenant: String
        let license: String
    }

    struct Values: Sendable {
        let inUse: Int
        let capacity: Int
        let expiry: Timestamp?
    }

    private struct Gauges: Sendable {
        let inUse: Gauge
        let capacity: Gauge
        var expiry: Gauge?
    }

    private let gauges = Mutex<[Key: Gauges]>([:])

    func set(_ values: [Key: Values]) {
        gauges.withLock { gauges in
            for key in gauges.keys where values[key] == nil {
                let old = gauges.removeValue(forKey: key)!
                old.inUse.destroy()
                old.capacity.destroy()
                old.expiry?.destroy()
            }
            for (key, value) in values {
                let dimensions = [("tenant", key.tenant), ("license", key.license)]
                var entry = gauges[key] ?? Gauges(
                    inUse: Gauge(label: "licensed_seats_in_use", dimensions: dimensions),
                    capacity: Gauge(label: "licensed_seats_capacity", dimensions: dimensions)
                )
                entry.inUse.record(value.inUse)
                entry.capacity.record(value.capacity)
                switch (value.expiry, entry.expiry) {
                case (let expiry?, let gauge):
                    let gauge = gauge ?? Gauge(label: "licensed_license_expiry_timestamp_seconds", dimensions: dimensions)
                    gauge.record(Double(expiry.millisecondsSinceEpoch) / 1000)
                    entry.expiry = gauge
                case (nil, let gauge?):
                    gauge.destroy()
                    entry.expiry = nil
                case (nil, nil):
                    break
                }
                gauges[key] = entry
            }
        }
    }
}
