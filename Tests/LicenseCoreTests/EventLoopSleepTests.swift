import LicenseCore
@testable import LicensePostgres
import NIOCore
import NIOPosix
import Testing

/// The event-loop timer that bounds every Postgres batch and read: it must still end a call that
/// never finishes, and a cancelled sleep must end at once instead of waiting out its timer.
@Suite("Event-loop sleep", .timeLimit(.minutes(1)))
struct EventLoopSleepTests {
    private let loop = MultiThreadedEventLoopGroup.singleton.any()

    @Test func aSleepEndsWhenItsTimeHasPassedOnTheLoop() async throws {
        let start = ContinuousClock.now
        try await loop.sleep(for: .milliseconds(20))
        #expect(start.duration(to: .now) >= .milliseconds(20))
    }

    @Test func aCancelledSleepThrowsCancellationAtOnce() async throws {
        // An hour-long timer: the test's time limit fails the test if cancelling waited for it.
        let sleeper = loop
        await #expect(throws: CancellationError.self) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await sleeper.sleep(for: .seconds(3_600)) }
                group.cancelAll()
                try await group.next()
            }
        }
        // Already cancelled before it starts: no timer is waited for either.
        await #expect(throws: CancellationError.self) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.cancelAll()
                group.addTask { try await sleeper.sleep(for: .seconds(3_600)) }
                try await group.next()
            }
        }
    }

    @Test func aPostgresDeadlineEndsABodyThatNeverFinishes() async throws {
        let (never, _) = AsyncStream<Int>.makeStream()
        let start = ContinuousClock.now
        await #expect(throws: PostgresTimeout.self) {
            try await withDeadline(.milliseconds(50)) {
                for await _ in never {}
                return 1
            }
        }
        #expect(start.duration(to: .now) >= .milliseconds(50))
    }

    @Test func aPostgresDeadlineReturnsWhatTheBodyReturnsInTime() async throws {
        // Many deadlines that are never reached, as in service: each returns its body's value.
        for value in 0..<1_000 {
            let answer = try await withDeadline(.seconds(3_600)) { value }
            #expect(answer == value)
        }
    }
}
