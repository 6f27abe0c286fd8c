import Foundation
import LicenseCore

/// The clocks the client reads, injected so that tests (and simulations) control time.
///
/// Two clocks, because they answer different questions: the wall clock says what time it is and
/// can be changed by the machine's user; the monotonic clock only measures elapsed time, keeps
/// running while the machine sleeps, and cannot be turned back. Offline grace is measured with
/// the monotonic clock from the last server time seen (see ``ServerClock``).
public protocol LeaseClock: Sendable {
    /// The local wall-clock time.
    func wallTime() -> Timestamp
    /// Elapsed time since an arbitrary origin fixed for the life of the process.
    func monotonicTime() -> Duration
    /// Suspends for `duration` of monotonic time; throws `CancellationError` when cancelled.
    func sleep(for duration: Duration) async throws
}

/// The system's clocks: `Date` for wall time, `ContinuousClock` (which keeps counting while the
/// machine sleeps) for monotonic time.
public struct SystemLeaseClock: LeaseClock {
    private let origin = ContinuousClock.now

    /// Creates the system clock.
    public init() {}

    public func wallTime() -> Timestamp { SystemWallClock().now() }

    public func monotonicTime() -> Duration { ContinuousClock.now - origin }

    public func sleep(for duration: Duration) async throws {
        try await Task.sleep(for: max(duration, Duration.zero), clock: .continuous)
    }
}
