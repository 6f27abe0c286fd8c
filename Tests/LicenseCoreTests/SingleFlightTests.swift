import LicenseCore
import Synchronization
import Testing

/// Concurrent requests for one key share one run: its value or its error reaches every caller
/// that waited, a cancelled runner's failure reaches none of them, and other keys run apart.
/// Runs are held open with streams; nothing sleeps.
@Suite("Single flight", .timeLimit(.minutes(1)))
struct SingleFlightTests {
    struct Refused: Error, Equatable {}

    /// How many times the work ran.
    final class Runs: Sendable {
        private let count = Atomic(0)
        func add() { count.add(1, ordering: .relaxed) }
        var value: Int { count.load(ordering: .relaxed) }
    }

    /// Opened once; any number of tasks may watch it.
    final class Latch: Sendable {
        private let opened = Atomic(false)
        func open() { opened.store(true, ordering: .releasing) }
        var isOpen: Bool { opened.load(ordering: .acquiring) }
    }

    @Test func callersThatAskDuringARunShareItsValue() async throws {
        let flight = SingleFlight<String, Int>()
        let runs = Runs()
        let (gate, open) = AsyncStream.makeStream(of: Void.self)
        let values = try await withThrowingTaskGroup(of: Int.self) { group in
            group.addTask {
                try await flight.run("acme-pro") {
                    runs.add()
                    for await _ in gate { break }
                    return 7
                }
            }
            while runs.value < 1 { await Task.yield() }
            for _ in 0..<50 {
                group.addTask { try await flight.run("acme-pro") { runs.add(); return 8 } }
            }
            while flight.waiting < 50 { await Task.yield() }
            open.yield()
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(values == Array(repeating: 7, count: 51))
        #expect(runs.value == 1)
        // Once the run is over, the next caller runs the work again.
        #expect(try await flight.run("acme-pro") { 9 } == 9)
    }

    @Test func aFailedRunFailsEveryCallerThatWaitedForIt() async throws {
        let flight = SingleFlight<String, Int>()
        let (gate, open) = AsyncStream.makeStream(of: Void.self)
        let (started, didStart) = AsyncStream.makeStream(of: Void.self)
        let outcomes = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                (try? await flight.run("acme-pro") {
                    didStart.yield()
                    for await _ in gate { break }
                    throw Refused()
                }) == nil
            }
            for await _ in started { break }
            for _ in 0..<5 {
                group.addTask {
                    do {
                        _ = try await flight.run("acme-pro") { 1 }
                        return false
                    } catch {
                        return error as? Refused == Refused()
                    }
                }
            }
            while flight.waiting < 5 { await Task.yield() }
            open.yield()
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(outcomes == Array(repeating: true, count: 6))
    }

    @Test func aCancelledRunnersFailureIsItsOwnAndAnotherCallerRunsAgain() async throws {
        let flight = SingleFlight<String, Int>()
        let runs = Runs()
        let (gate, open) = AsyncStream.makeStream(of: Void.self)
        let rerun = Latch()
        let values = try await withThrowingTaskGroup(of: Int.self) { followers in
            try await withThrowingTaskGroup(of: Int.self) { runner in
                runner.addTask {
                    try await flight.run("acme-pro") {
                        runs.add()
                        for await _ in gate { break }
                        try Task.checkCancellation()
                        return 1
                    }
                }
                while runs.value < 1 { await Task.yield() }
                for _ in 0..<5 {
                    followers.addTask {
                        try await flight.run("acme-pro") {
                            runs.add()
                            while !rerun.isOpen { await Task.yield() }
                            return 2
                        }
                    }
                }
                while flight.waiting < 5 { await Task.yield() }
                runner.cancelAll()
                open.yield()
                await #expect(throws: CancellationError.self) { _ = try await runner.next() }
            }
            // The others wait for the one that runs again.
            while flight.waiting < 4 { await Task.yield() }
            rerun.open()
            return try await followers.reduce(into: [Int]()) { $0.append($1) }
        }
        // The waiting callers started again: one ran the work, the others shared its value.
        #expect(values == Array(repeating: 2, count: 5))
        #expect(runs.value == 2)
    }

    @Test func differentKeysRunApart() async throws {
        let flight = SingleFlight<String, Int>()
        let (gate, open) = AsyncStream.makeStream(of: Void.self)
        let (started, didStart) = AsyncStream.makeStream(of: Void.self)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                _ = try await flight.run("acme-pro") {
                    didStart.yield()
                    for await _ in gate { break }
                    return 1
                }
            }
            for await _ in started { break }
            // Not held behind the other key's run, which waits until this returns.
            #expect(try await flight.run("globex-pro") { 2 } == 2)
            #expect(flight.waiting == 0)
            open.yield()
            try await group.waitForAll()
        }
    }
}
