import LicenseClient
import LicenseWire
import NIOCore
import NIOPosix

/// One simulated user replaying its script on a shared connection: it substitutes its own
/// hardware id, idempotency keys and the session ids its server returns for the recorded ones.
struct VirtualUser {
    struct Held {
        var session: String
        var tokenExpiresAtMs: UInt64
    }

    let index: Int
    let connection: LicenseConnection
    let script: (setup: [Recording.Entry], loop: [Recording.Entry], teardown: [Recording.Entry])
    let options: LoadOptions
    let shard: StatsShard
    let totals: Totals
    /// Open loop: the next send time and the interval between this user's calls.
    var schedule: (next: ContinuousClock.Instant, interval: Duration)?
    /// Recorded session id → the live session.
    private(set) var sessions: [String: Held] = [:]
    private var sent = 0

    /// The loop entry this user starts at (`LoadOptions.Phases`); the entries before it are
    /// replayed once as setup.
    let startEntry: Int

    init(index: Int, connection: LicenseConnection, script: (setup: [Recording.Entry], loop: [Recording.Entry], teardown: [Recording.Entry]),
         options: LoadOptions, shard: StatsShard, totals: Totals, startEntry: Int = 0) {
        self.index = index
        self.startEntry = startEntry
        self.connection = connection
        self.script = script
        self.options = options
        self.shard = shard
        self.totals = totals
    }

    /// Runs setup, then (once `setupDone` gives the loop's deadline and open-loop schedule) the
    /// loop until the deadline or the call limit, then teardown, then releases what is still held.
    mutating func run(
        setupDone: () async -> (deadline: ContinuousClock.Instant, schedule: (next: ContinuousClock.Instant, interval: Duration)?),
        loopEnded: () -> Void
    ) async {
        for entry in script.setup { await send(entry) }
        // A user that starts later in its loop first replays what comes before (an acquire
        // before the heartbeats of its session), as setup.
        for var entry in script.loop.prefix(startEntry) {
            entry.phase = .setup
            await send(entry)
        }
        let (deadline, schedule) = await setupDone()
        self.schedule = schedule
        if !script.loop.isEmpty {
            var next = startEntry
            // Open loop: a send scheduled at or after the deadline is not made (nor waited for).
            while ContinuousClock.now < deadline, self.schedule.map({ $0.next < deadline }) ?? true,
                  totals.calls.load(ordering: .relaxed) < options.maxCalls, !Task.isCancelled {
                await send(script.loop[next])
                next = (next + 1) % script.loop.count
            }
        }
        loopEnded()
        for entry in script.teardown { await send(entry) }
        // Whatever a loop cut short still holds is given back.
        for recorded in Array(sessions.keys) {
            await send(Recording.Entry(user: index, phase: .teardown, call: .release(.with { $0.sessionID = recorded })))
        }
    }

    private mutating func send(_ entry: Recording.Entry) async {
        sent += 1
        var call = entry.call
        var name = "other"
        var recordedSession: String?
        switch call {
        case .acquire(var acquire):
            name = "acquire"
            if let license = options.license { acquire.licenseID = license }
            acquire.hardwareID = "\(options.runID)-vu\(index)"
            acquire.idempotencyKey = "\(options.runID)-vu\(index)-\(sent)"
            call = .acquire(acquire)
            recordedSession = entry.sessionID ?? "acquire-\(sent)"
        case .heartbeat(var heartbeat):
            name = "heartbeat"
            guard let held = sessions[heartbeat.sessionID] else { return skip(name) }
            recordedSession = heartbeat.sessionID
            heartbeat.sessionID = held.session
            heartbeat.tokenExpiresAtMs = held.tokenExpiresAtMs
            call = .heartbeat(heartbeat)
        case .release(var release):
            name = "release"
            guard let held = sessions[release.sessionID] else { return skip(name) }
            recordedSession = release.sessionID
            release.sessionID = held.session
            call = .release(release)
        default:
            break
        }

        // Around a loop, setup and teardown calls are reported apart from the loop's.
        let label = !script.loop.isEmpty && entry.phase != .loop ? "\(entry.phase.rawValue) \(name)" : name
        var started = ContinuousClock.now
        if var schedule, entry.phase == .loop {
            if schedule.next > started { await Self.sleep(until: schedule.next) }
            started = schedule.next   // measured from the intended send time
            schedule.next += schedule.interval
            self.schedule = schedule
        }
        let answer: ServerFrame
        do {
            answer = try await connection.send(call)
        } catch {
            shard.record(label, since: started, error: LoadRunner.reason(error), totals: totals)
            if name == "release", let recordedSession { sessions[recordedSession] = nil }
            return
        }
        let status = answer.status
        shard.record(label, since: started, error: status.isOK ? nil : (status.reason.isEmpty ? "\(status.code)" : status.reason), totals: totals)
        guard let recordedSession else { return }
        switch name {
        case "acquire" where status.isOK:
            sessions[recordedSession] = Held(session: answer.acquire.sessionID, tokenExpiresAtMs: answer.acquire.tokenExpiresAtMs)
        case "heartbeat" where status.isOK:
            if answer.heartbeat.tokenExpiresAtMs != 0 { sessions[recordedSession]?.tokenExpiresAtMs = answer.heartbeat.tokenExpiresAtMs }
        case "heartbeat" where status.reason == "SESSION_REVOKED" || status.reason == "SESSION_ENDED" || status.reason == "LEASE_LAPSED":
            sessions[recordedSession] = nil
        case "release":
            sessions[recordedSession] = nil
        default:
            break
        }
    }

    /// Waits until `instant` on an event loop's timer rather than `Task.sleep`, whose timer is
    /// dispatch's: its own thread wakes for every send and hands the user on to the loop. With
    /// `license-load`'s tasks on one event loop the whole wait stays on that thread. Cancelling
    /// the task ends the wait at once (the timer is taken off the loop).
    private static func sleep(until instant: ContinuousClock.Instant) async {
        let delay = ContinuousClock.now.duration(to: instant)
        guard delay > .zero else { return }
        let timer = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: .nanoseconds(delay.nanoseconds)) {}
        await withTaskCancellationHandler {
            try? await timer.futureResult.get()
        } onCancel: {
            timer.cancel()
        }
    }

    /// A heartbeat or release whose session was never acquired (its acquire failed).
    private func skip(_ name: String) {
        shard.record(name, since: ContinuousClock.now, error: "NO_SESSION", totals: totals)
    }
}
