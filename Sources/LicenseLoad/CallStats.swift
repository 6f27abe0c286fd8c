import Histogram

/// What was measured for one call: latencies in microseconds (an HDR histogram, 3 significant
/// digits, up to 60 s) and errors by status reason.
public struct CallStats: Sendable {
    public var latency = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    public var errors: [String: Int] = [:]

    public init() {}

    /// Every call answered, OK or not.
    public var count: UInt64 { latency.totalCount }
    public var errorCount: Int { errors.values.reduce(0, +) }

    mutating func record(microseconds: UInt64, error: String?) {
        _ = latency.record(min(max(microseconds, 1), 60_000_000))
        if let error { errors[error, default: 0] += 1 }
    }

    mutating func add(_ other: CallStats) {
        latency.add(other.latency)
        errors.merge(other.errors, uniquingKeysWith: +)
    }
}
