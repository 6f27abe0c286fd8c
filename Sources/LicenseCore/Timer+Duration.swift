import Metrics

extension Metrics.Timer {
    /// Records the time from `start` until now.
    public func recordSince(_ start: ContinuousClock.Instant) {
        record(ContinuousClock.now - start)
    }

    /// Records `duration` (saturating at `Int64.max` nanoseconds).
    public func record(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        recordNanoseconds(overflow ? .max : whole.addingReportingOverflow(attoseconds / 1_000_000_000).partialValue)
    }
}
