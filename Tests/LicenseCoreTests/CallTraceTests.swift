import LicenseCore
import Testing

/// The sampled call trace: stages in the order reached, their times adding up to the whole, and
/// the group-commit queue marking the caller's trace from the batch leader's task.
@Suite("Call trace")
struct CallTraceTests {
    @Test func stagesAreInTheOrderReachedAndAddUpToTheTotal() {
        let start = ContinuousClock.now
        let trace = CallTrace(start: start)
        trace.mark("first")
        trace.mark("second")
        trace.mark("third")
        let (stages, total) = trace.stages()
        #expect(stages.map(\.stage) == ["first", "second", "third"])
        #expect(stages.allSatisfy { $0.microseconds >= 0 })
        #expect(stages.map(\.microseconds).reduce(0, +) == total)
        #expect(trace.summary.hasPrefix("first="))
    }

    @Test func markingWithoutATraceDoesNothing() {
        #expect(CallTrace.current == nil)
        CallTrace.mark("nowhere")
    }

    @Test func theGroupCommitMarksTheTraceOfEveryCallerInItsBatch() async throws {
        let queue = GroupCommitQueue<Void> { batch in
            for unit in batch {
                do { try await unit.work(()) } catch { unit.error = error }
            }
        }
        let traces = (0..<5).map { _ in CallTrace() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for trace in traces {
                group.addTask {
                    try await CallTrace.$current.withValue(trace) {
                        try await queue.perform(payload: nil, deadline: nil) { _ in }
                    }
                }
            }
            try await group.waitForAll()
        }
        for trace in traces {
            let stages = trace.stages().stages.map(\.stage)
            #expect(stages.first == "commit.enqueued")
            #expect(stages.last == "commit.resumed")
            #expect(stages.contains("commit.batch_started") && stages.contains("commit.batch_done"))
            #expect(stages.firstIndex(of: "commit.batch_started")! < stages.firstIndex(of: "commit.batch_done")!)
        }
    }
}
