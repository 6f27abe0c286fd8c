import LicenseCore
import Synchronization

/// A lease being kept by ``LicenseClient/withLease(licenseID:options:_:)``: its current grant and
/// status, and the events that change them.
public final class Lease: Sendable {
    /// Where the lease stands.
    public enum Status: Hashable, Sendable {
        /// Heartbeats succeed.
        case active
        /// The server cannot be reached; licensed until the grace horizon (server time).
        case offline(graceUntil: Timestamp)
        /// The lease is over, for this reason (`GRACE_EXPIRED`, `SESSION_REVOKED`, `RELEASED`, or
        /// the server's refusal).
        case ended(LicenseCallError)
    }

    /// The license this lease is for.
    public let licenseID: String
    /// Lease events in order (single consumer; the 256 newest are kept if nobody reads them).
    public let events: AsyncStream<LeaseEvent>
    private let continuation: AsyncStream<LeaseEvent>.Continuation
    let machine: Mutex<LeaseStateMachine>
    /// How many events were put on `events` (tests wait until they have read as many).
    let emitted = Atomic<Int>(0)

    init(licenseID: String, machine: LeaseStateMachine) {
        self.licenseID = licenseID
        self.machine = Mutex(machine)
        (events, continuation) = AsyncStream.makeStream(of: LeaseEvent.self, bufferingPolicy: .bufferingNewest(256))
    }

    /// The current grant (session, verified token claims, times).
    public var grant: LeaseGrant { machine.withLock { $0.grant } }

    /// The license's features, from the current token.
    public var features: [String] { grant.features }

    /// Where the lease stands now.
    public var status: Status {
        machine.withLock { machine in
            switch machine.state {
            case .active: .active
            case .offline: .offline(graceUntil: machine.grant.graceUntil)
            case .ended(let why): .ended(why)
            }
        }
    }

    /// Applies `change` to the state machine and reports the events it returns.
    @discardableResult
    func update<T>(_ change: (inout LeaseStateMachine) -> (T, [LeaseEvent])) -> T {
        let (result, events) = machine.withLock { change(&$0) }
        emit(events)
        return result
    }

    func emit(_ events: [LeaseEvent]) {
        for event in events {
            emitted.add(1, ordering: .sequentiallyConsistent)
            continuation.yield(event)
        }
    }

    func finishEvents() { continuation.finish() }
}
