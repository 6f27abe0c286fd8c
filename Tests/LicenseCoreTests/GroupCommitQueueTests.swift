import LicenseCore
import Synchronization
import Testing

/// Deadlines in group commit: no unit starts after its deadline, and none waits for a batch
/// of others once its deadline has passed. Deadlines lie in the past; nothing sleeps.
@Suite("Group commit deadlines")
struct GroupCommitQueueTests {
    /// What the commit closure saw, batch by batch (units named by their payload).
    final class Batches: Sendable {
        let seen = Mutex<[[String]]>([])
        func record(_ batch: [GroupCommitUnit<Void>]) { seen.withLock { $0.append(batch.map { $0.payload as? String ?? "?" }) } }
    }

    @Test func aUnitPastItsDeadlineNeverReachesTheDatabase() async throws {
        let batches = Batches()
        let queue = GroupCommitQueue<Void> { batch in
            batches.record(batch)
            for unit in batch { try? await unit.work(()) }
        }
        await #expect(throws: GroupCommitTimeout.self) {
            try await queue.perform(payload: "late", deadline: .now - .seconds(1)) { _ in "written" }
        }
        #expect(try await queue.perform(payload: "fresh", deadline: .now + .seconds(60)) { _ in "written" } == "written")
        #expect(batches.seen.withLock { $0 } == [["fresh"]])
    }

    @Test(.timeLimit(.minutes(1))) func aQueuedUnitWhoseDeadlinePassedNeitherLeadsNorJoinsTheNextBatch() async throws {
        let batches = Batches()
        let (gate, open) = AsyncStream.makeStream(of: Void.self)
        let (started, didStart) = AsyncStream.makeStream(of: Void.self)
        let (answered, expiredAnswered) = AsyncStream.makeStream(of: Void.self)
        let queue = GroupCommitQueue<Void> { batch in
            batches.record(batch)
            if batch.contains(where: { $0.payload as? String == "stuck" }) {
                didStart.yield()
                for await _ in gate { break }
            }
            // The next batch commits only once the expired unit has been answered: had that unit
            // been made to lead this batch, it could not have been (the test would hang).
            if batch.contains(where: { $0.payload as? String == "behind" }) {
                for await _ in answered { break }
            }
            for unit in batch { try? await unit.work(()) }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { _ = try await queue.perform(payload: "stuck", deadline: .now + .seconds(60)) { _ in 1 } }
            for await _ in started { break }
            // Queued behind the stuck batch: one past its deadline first, then one with time left.
            group.addTask {
                await #expect(throws: GroupCommitTimeout.self) {
                    try await queue.perform(payload: "expired", deadline: .now - .milliseconds(1)) { _ in 2 }
                }
                expiredAnswered.yield()
            }
            while await queue.waiting < 1 { await Task.yield() }
            group.addTask { _ = try await queue.perform(payload: "behind", deadline: .now + .seconds(60)) { _ in 3 } }
            while await queue.waiting < 2 { await Task.yield() }
            // The stuck batch ends (a real one ends by its units' deadlines): the expired unit
            // must neither lead the next batch nor join it.
            open.yield()
            try await group.waitForAll()
        }
        #expect(batches.seen.withLock { $0 }.flatMap { $0 }.contains("expired") == false)
        #expect(batches.seen.withLock { $0 }.flatMap { $0 }.sorted() == ["behind", "stuck"])
    }
}
