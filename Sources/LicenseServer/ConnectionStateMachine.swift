import LicenseCore
import LicenseWire

/// The life of one client connection as plain data: which calls are allowed, how many are in
/// flight, and when the connection may close. Each event returns the action the handler must
/// carry out; the handler owns no booleans of its own.
public struct ConnectionStateMachine: Sendable {
    public enum State: Sendable, Equatable {
        /// Connected; nothing but `Hello` is served yet.
        case awaitingHello
        /// A `Hello` is being checked.
        case authenticating(previous: Principal?)
        /// Authenticated.
        case ready(Principal)
        /// Shutting down: no new calls, in-flight calls finish, then close.
        case draining
        /// The stream is finished; nothing more is read or written.
        case closed
    }

    /// What to do with a received request.
    public enum RequestAction: Sendable, Equatable {
        /// Check the `Hello` credential (inline, before reading further).
        case authenticate
        /// Run the call as `principal`.
        case dispatch(Principal)
        /// Answer with this error.
        case reject(LicenseError)
    }

    /// Whether the connection should now finish its output and close.
    public enum CloseAction: Sendable, Equatable {
        case none
        case close
    }

    public private(set) var state: State = .awaitingHello
    /// Requests read whose answers are not yet written.
    public private(set) var inFlight = 0
    /// `Hello`s refused on this connection so far.
    public private(set) var refusedHellos = 0
    /// How many refused `Hello`s end the connection.
    public let maxRefusedHellos: Int
    /// The largest answer frame body the client accepts: what its last accepted `Hello`
    /// announced (bounded by the server's limit), or the protocol default before one.
    public private(set) var answerLimit: Int
    private var signedIn = false
    private var inputEnded = false

    /// - Parameters:
    ///   - maxRefusedHellos: refused `Hello`s after which the connection is closed (the last
    ///     refusal is still answered). Default 3.
    ///   - answerLimit: the answer limit until a `Hello` announces one.
    public init(maxRefusedHellos: Int = 3, answerLimit: Int = WireProtocol.defaultMaxFrameBytes) {
        self.maxRefusedHellos = max(1, maxRefusedHellos)
        self.answerLimit = answerLimit
    }

    /// A request frame arrived. Every request counts as in flight until `answerWritten()`.
    public mutating func requestReceived(isHello: Bool) -> RequestAction {
        switch state {
        case .closed:
            return .reject(LicenseError(.unavailable, .shuttingDown, "the connection is closing"))
        case .draining:
            inFlight += 1
            return .reject(LicenseError(.unavailable, .shuttingDown, "the server is shutting down; reconnect", retryAfter: .seconds(1)))
        case .authenticating:
            // Hello is handled inline, so nothing else can arrive while it is checked.
            inFlight += 1
            return .reject(LicenseError(.unauthenticated, .helloRequired, "wait for the Hello answer before other calls"))
        case .awaitingHello:
            inFlight += 1
            guard isHello else {
                return .reject(LicenseError(.unauthenticated, .helloRequired, "the first call on a connection must be Hello"))
            }
            state = .authenticating(previous: nil)
            return .authenticate
        case .ready(let principal):
            inFlight += 1
            if isHello {
                state = .authenticating(previous: principal)
                return .authenticate
            }
            return .dispatch(principal)
        }
    }

    /// The `Hello` credential was accepted; its client accepts answers of up to `answerLimit`
    /// bytes (`nil`: unchanged).
    public mutating func helloSucceeded(_ principal: Principal, answerLimit: Int? = nil) {
        if case .authenticating = state {
            state = .ready(principal)
            signedIn = true
            if let answerLimit { self.answerLimit = answerLimit }
        }
    }

    /// The credential `principal` signed in with no longer holds (a revoked key, a disabled user,
    /// an expired ID token): the connection is unauthenticated again until the next `Hello`.
    /// Nothing changes if another `Hello` has replaced that principal meanwhile.
    public mutating func credentialLapsed(_ principal: Principal) {
        if case .ready(let current) = state, current == principal { state = .awaitingHello }
    }

    /// The `Hello` credential was refused: the connection is unauthenticated again. After
    /// `maxRefusedHellos` refusals it is done: `.close` once that refusal is answered.
    @discardableResult
    public mutating func helloFailed() -> CloseAction {
        guard case .authenticating = state else { return .none }
        refusedHellos += 1
        guard refusedHellos < maxRefusedHellos else {
            state = .closed
            return .close
        }
        state = .awaitingHello
        return .none
    }

    /// The sign-in deadline passed. A connection that has never signed in is refused (`.close`:
    /// answer with `SIGN_IN_TIMEOUT` and close); one that has is left alone.
    public mutating func signInDeadlinePassed() -> CloseAction {
        guard !signedIn, state != .closed, state != .draining else { return .none }
        state = .closed
        return .close
    }

    /// An answer (or rejection) was written.
    public mutating func answerWritten() -> CloseAction {
        inFlight = max(0, inFlight - 1)
        return closeIfIdle()
    }

    /// The peer closed its side (or the read loop ended).
    public mutating func inputClosed() -> CloseAction {
        inputEnded = true
        return closeIfIdle()
    }

    /// Graceful shutdown began. Returns whether to send the going-away notice, and whether the
    /// connection can close at once (nothing in flight).
    public mutating func beginDrain() -> (notify: Bool, close: CloseAction) {
        switch state {
        case .closed, .draining:
            return (false, .none)
        default:
            state = .draining
            return (true, closeIfIdle())
        }
    }

    /// The stream can no longer be trusted (oversized or zero frame, frame deadline, idle).
    public mutating func fatal() -> CloseAction {
        guard state != .closed else { return .none }
        state = .closed
        return .close
    }

    private mutating func closeIfIdle() -> CloseAction {
        guard inFlight == 0, state != .closed else { return .none }
        if state == .draining || inputEnded {
            state = .closed
            return .close
        }
        return .none
    }
}
