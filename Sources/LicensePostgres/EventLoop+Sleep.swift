import NIOCore
import NIOPosix

extension EventLoop {
    /// Waits `duration` on this event loop's timer, or throws `CancellationError` as soon as the
    /// task is cancelled, taking the timer off the loop.
    ///
    /// Cheaper than `Task.sleep` where most sleeps are cancelled early (a deadline that is
    /// rarely reached): scheduling wakes the loop only when no wake-up is pending already, and a
    /// cancelled timer is removed rather than left to fire (`Task.sleep` is a dispatch timer
    /// that still fires, on dispatch's timer thread, after its task was cancelled).
    func sleep(for duration: Duration) async throws {
        let timer = scheduleTask(in: TimeAmount(duration)) {}
        do {
            try await withTaskCancellationHandler {
                try await timer.futureResult.get()
            } onCancel: {
                timer.cancel()
            }
        } catch EventLoopError.cancelled {
            throw CancellationError()
        }
    }
}

/// Sleeps on the timer of one of the shared event loops (the group `PostgresClient` runs on).
@Sendable func eventLoopSleep(_ duration: Duration) async throws {
    try await MultiThreadedEventLoopGroup.singleton.any().sleep(for: duration)
}
