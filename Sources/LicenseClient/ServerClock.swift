import LicenseCore

/// The client's estimate of the server's time, and the guard against a clock turned back.
///
/// Lease tokens carry server times (the grace horizon is the token's `exp`). The estimate is:
/// - within a process, after a server answer: that server time plus the monotonic time elapsed
///   since, so neither a wrong nor a changed wall clock matters;
/// - otherwise (a restart while offline): the wall clock plus the offset to the server last seen.
///
/// Either way the estimate never goes below the high-water mark, the largest server time ever
/// estimated, which the client keeps on disk. A wall clock that reads more than `tolerance`
/// behind what the estimate says is reported as a rollback; turning the clock back therefore
/// never extends a grace period.
public struct ServerClock: Sendable {
    /// How far the wall clock may lag the estimate before it counts as turned back (NTP slews and
    /// small corrections stay below this).
    public var tolerance: Duration
    /// Server time minus wall time at the last server answer.
    public private(set) var offset: Duration
    /// The largest server time estimated so far.
    public private(set) var highWater: Timestamp
    private var anchor: (server: Timestamp, monotonic: Duration)?

    /// A reading of the estimate.
    public struct Reading: Hashable, Sendable {
        /// The estimated server time.
        public var now: Timestamp
        /// Whether the wall clock reads earlier than the estimate by more than the tolerance.
        public var wallClockTurnedBack: Bool
    }

    /// Starts from a stored offset and high-water mark (zero and the distant past when new).
    public init(offset: Duration = .zero, highWater: Timestamp = Timestamp(millisecondsSinceEpoch: 0), tolerance: Duration = .seconds(120)) {
        self.offset = offset
        self.highWater = highWater
        self.tolerance = tolerance
    }

    /// Records a server time read at local `wall` / `monotonic` time.
    public mutating func synchronize(serverTime: Timestamp, wall: Timestamp, monotonic: Duration) {
        anchor = (serverTime, monotonic)
        offset = wall.duration(to: serverTime)
        highWater = max(highWater, serverTime)
    }

    /// The estimated server time at local `wall` / `monotonic` time; raises the high-water mark.
    public mutating func read(wall: Timestamp, monotonic: Duration) -> Reading {
        let fromWall = wall.advanced(by: offset)
        let estimate = anchor.map { $0.server.advanced(by: monotonic - $0.monotonic) } ?? fromWall
        let floor = max(estimate, highWater)
        let turnedBack = fromWall.advanced(by: tolerance) < floor
        highWater = floor
        return Reading(now: floor, wallClockTurnedBack: turnedBack)
    }
}
