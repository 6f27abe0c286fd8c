import Foundation
import Synchronization

/// How far Redis's clock is ahead of this process's wall clock, learned from the times the seat
/// script answers with, so that deadlines can be given in Redis time.
///
/// Starts at zero (hosts kept by NTP agree to milliseconds); a clock that disagrees more shows
/// as a deadline refused too early, and the store learns the offset from that answer.
final class RedisClockOffset: Sendable {
    private let milliseconds = Atomic<Int64>(0)

    /// This process's idea of Redis's current time (ms since the epoch).
    func redisNow() -> Int64 {
        Self.localNow() + milliseconds.load(ordering: .relaxed)
    }

    /// Records Redis's time as seen in an answer that has just arrived. The answer left Redis
    /// a moment ago, so the offset comes out low by up to the round trip: a deadline is then
    /// early by as much, never late.
    func learn(redisNow: Int64) {
        milliseconds.store(redisNow - Self.localNow(), ordering: .relaxed)
    }

    private static func localNow() -> Int64 {
        Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
    }
}
