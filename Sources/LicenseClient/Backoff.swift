/// Exponential backoff with full jitter: the n-th wait is a random duration between half of
/// `initial × 2ⁿ⁻¹` and all of it, capped at `maximum`. Jitter spreads a fleet that lost the
/// server at the same moment, so the server is not met by every client at once when it returns.
public struct Backoff: Hashable, Sendable {
    /// The first wait (before jitter).
    public var initial: Duration
    /// The longest wait.
    public var maximum: Duration

    /// Creates a backoff; `initial` and `maximum` must be positive and `initial ≤ maximum`.
    public init(initial: Duration, maximum: Duration) {
        precondition(initial > .zero && maximum >= initial, "backoff needs 0 < initial <= maximum")
        self.initial = initial
        self.maximum = maximum
    }

    /// The wait before attempt `attempt + 1` (`attempt` ≥ 1 failures so far), drawing jitter from
    /// `random`, which returns a value in `0...1`.
    public func delay(afterFailures attempt: Int, random: () -> Double = { Double.random(in: 0...1) }) -> Duration {
        let exponent = min(max(attempt - 1, 0), 30)
        let ceiling = min(initial * Double(1 << exponent), maximum)
        let share = 0.5 + 0.5 * min(max(random(), 0), 1)
        return ceiling * share
    }
}
