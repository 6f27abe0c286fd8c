@testable import LicenseClient
import LicenseCore
import Testing

/// Server-time estimation, clock-rollback detection, backoff and the manual clock.
@Suite("Client time")
struct ClientTimeTests {
    let server = Timestamp(millisecondsSinceEpoch: 1_800_000_000_000)

    @Test func serverTimeFollowsTheMonotonicClockNotTheWallClock() {
        let wall = server.advanced(by: .seconds(-3600))  // the local clock is an hour slow
        var clock = ServerClock()
        clock.synchronize(serverTime: server, wall: wall, monotonic: .seconds(10))
        #expect(clock.offset == .seconds(3600))
        // Ten minutes later, the wall clock turned back a day: the estimate is unaffected.
        let reading = clock.read(wall: wall.advanced(by: .seconds(-86_400)), monotonic: .seconds(610))
        #expect(reading.now == server.advanced(by: .seconds(600)))
        #expect(reading.wallClockTurnedBack)
        // A small correction (under the tolerance) is not a rollback.
        #expect(!clock.read(wall: wall.advanced(by: .seconds(600 - 30)), monotonic: .seconds(610)).wallClockTurnedBack)
    }

    @Test func afterARestartTheHighWaterMarkKeepsTimeFromGoingBack() {
        var first = ServerClock()
        first.synchronize(serverTime: server, wall: server, monotonic: .zero)
        let seen = first.read(wall: server, monotonic: .seconds(7200)).now
        // A new process (new monotonic origin) with the stored offset and high-water mark, and a
        // wall clock turned back three hours.
        var restarted = ServerClock(offset: first.offset, highWater: first.highWater)
        let reading = restarted.read(wall: server.advanced(by: .seconds(-3 * 3600)), monotonic: .zero)
        #expect(reading.now == seen)
        #expect(reading.wallClockTurnedBack)
        // Time moves on from the wall clock once it passes the mark again.
        let later = restarted.read(wall: seen.advanced(by: .seconds(60)), monotonic: .seconds(1))
        #expect(later.now == seen.advanced(by: .seconds(60)))
        #expect(!later.wallClockTurnedBack)
    }

    @Test func backoffDoublesWithJitterUpToTheMaximum() {
        let backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(2))
        #expect(backoff.delay(afterFailures: 1, random: { 1 }) == .milliseconds(100))
        #expect(backoff.delay(afterFailures: 1, random: { 0 }) == .milliseconds(50))
        #expect(backoff.delay(afterFailures: 3, random: { 1 }) == .milliseconds(400))
        #expect(backoff.delay(afterFailures: 50, random: { 1 }) == .seconds(2))
        let spread = Set((0..<50).map { _ in backoff.delay(afterFailures: 4) })
        #expect(spread.count > 10, "jitter spreads a fleet")
        #expect(spread.allSatisfy { $0 >= .milliseconds(400) && $0 <= .milliseconds(800) })
    }

    @Test func theManualClockWakesSleepersOnlyWhenTheirTimeComes() async throws {
        let clock = ManualLeaseClock(wall: server)
        try await withThrowingTaskGroup(of: Void.self) { group in
            let (sleeping, sleepingContinuation) = AsyncStream.makeStream(of: Void.self)
            clock.observeSleeps { sleepingContinuation.yield() }
            group.addTask { try await clock.sleep(for: .seconds(300)) }
            var iterator = sleeping.makeAsyncIterator()
            await iterator.next()
            #expect(clock.nextWake == .seconds(300))
            clock.advance(by: .seconds(299))
            #expect(clock.nextWake == .seconds(1))
            clock.setWall(server)
            #expect(clock.monotonicTime() == .seconds(299))
            clock.advance(by: .seconds(1))
            try await group.waitForAll()
            #expect(clock.nextWake == nil)
            // Cancellation wakes a sleeper with CancellationError.
            group.addTask { try await clock.sleep(for: .seconds(5)) }
            await iterator.next()
            group.cancelAll()
            await #expect(throws: CancellationError.self) { try await group.waitForAll() }
        }
    }
}
