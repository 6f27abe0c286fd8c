import LicenseCore
import LicenseServer
import Testing

@Suite("Connection state machine")
struct ConnectionStateMachineTests {
    let alice = Principal(userID: "usr-a", tenantID: "acme", role: .tenantUser, name: "alice")

    @Test func nothingButHelloBeforeAuthentication() {
        var machine = ConnectionStateMachine()
        guard case .reject(let error) = machine.requestReceived(isHello: false) else {
            Issue.record("a call before Hello must be rejected")
            return
        }
        #expect(error.reason == .helloRequired)
        #expect(error.code == .unauthenticated)
        #expect(machine.answerWritten() == .none)
        #expect(machine.requestReceived(isHello: true) == .authenticate)
        #expect(machine.state == .authenticating(previous: nil))
        machine.helloFailed()
        #expect(machine.state == .awaitingHello)
    }

    @Test func authenticatedCallsAreDispatchedConcurrently() {
        var machine = ConnectionStateMachine()
        _ = machine.requestReceived(isHello: true)
        machine.helloSucceeded(alice)
        #expect(machine.answerWritten() == .none)
        #expect(machine.requestReceived(isHello: false) == .dispatch(alice))
        #expect(machine.requestReceived(isHello: false) == .dispatch(alice))
        #expect(machine.inFlight == 2)
        #expect(machine.answerWritten() == .none)
        #expect(machine.answerWritten() == .none)
        #expect(machine.inFlight == 0)
    }

    @Test func aLapsedCredentialNeedsANewHello() {
        var machine = ConnectionStateMachine()
        _ = machine.requestReceived(isHello: true)
        machine.helloSucceeded(alice)
        let bob = Principal(userID: "usr-b", tenantID: "acme", role: .tenantUser, name: "bob")
        machine.credentialLapsed(bob)
        #expect(machine.state == .ready(alice), "a lapse of a principal the connection no longer holds changes nothing")
        machine.credentialLapsed(alice)
        #expect(machine.state == .awaitingHello)
        guard case .reject(let error) = machine.requestReceived(isHello: false) else {
            Issue.record("a call after the credential lapsed must be rejected")
            return
        }
        #expect(error.reason == .helloRequired)
        #expect(machine.requestReceived(isHello: true) == .authenticate)
    }

    @Test func aLaterHelloRefreshesTheCredential() {
        var machine = ConnectionStateMachine()
        _ = machine.requestReceived(isHello: true)
        machine.helloSucceeded(alice)
        #expect(machine.requestReceived(isHello: true) == .authenticate)
        #expect(machine.state == .authenticating(previous: alice))
        let bob = Principal(userID: "usr-b", tenantID: "acme", role: .tenantUser, name: "bob")
        machine.helloSucceeded(bob)
        #expect(machine.state == .ready(bob))
    }

    @Test func drainingFinishesInFlightCallsThenCloses() {
        var machine = ConnectionStateMachine()
        _ = machine.requestReceived(isHello: true)
        machine.helloSucceeded(alice)
        _ = machine.answerWritten()
        _ = machine.requestReceived(isHello: false)
        let drain = machine.beginDrain()
        #expect(drain.notify)
        #expect(drain.close == .none, "one call is still in flight")
        guard case .reject(let error) = machine.requestReceived(isHello: false) else {
            Issue.record("new calls are refused while draining")
            return
        }
        #expect(error.reason == .shuttingDown)
        #expect(machine.answerWritten() == .none)
        #expect(machine.answerWritten() == .close)
        #expect(machine.state == .closed)
        #expect(machine.beginDrain().notify == false)
    }

    @Test func drainingAnIdleConnectionClosesAtOnce() {
        var machine = ConnectionStateMachine()
        let drain = machine.beginDrain()
        #expect(drain.notify)
        #expect(drain.close == .close)
    }

    @Test func peerClosingWaitsForInFlightAnswers() {
        var machine = ConnectionStateMachine()
        _ = machine.requestReceived(isHello: true)
        machine.helloSucceeded(alice)
        _ = machine.answerWritten()
        _ = machine.requestReceived(isHello: false)
        #expect(machine.inputClosed() == .none)
        #expect(machine.answerWritten() == .close)
    }

    @Test func aFatalStreamErrorClosesOnce() {
        var machine = ConnectionStateMachine()
        _ = machine.requestReceived(isHello: false)
        #expect(machine.fatal() == .close)
        #expect(machine.fatal() == .none)
        #expect(machine.answerWritten() == .none)
    }

    @Test func theThirdRefusedHelloEndsTheConnection() {
        var machine = ConnectionStateMachine(maxRefusedHellos: 3)
        for attempt in 1...3 {
            #expect(machine.requestReceived(isHello: true) == .authenticate)
            let close = machine.helloFailed()
            #expect(close == (attempt < 3 ? .none : .close), "attempt \(attempt)")
            #expect(machine.answerWritten() == .none)
        }
        #expect(machine.state == .closed)
        #expect(machine.refusedHellos == 3)
    }

    @Test func theSignInDeadlineRefusesOnlyConnectionsThatNeverSignedIn() {
        var waiting = ConnectionStateMachine()
        #expect(waiting.signInDeadlinePassed() == .close)
        #expect(waiting.state == .closed)

        var refused = ConnectionStateMachine()
        _ = refused.requestReceived(isHello: true)
        refused.helloFailed()
        #expect(refused.signInDeadlinePassed() == .close)

        var signedIn = ConnectionStateMachine()
        _ = signedIn.requestReceived(isHello: true)
        signedIn.helloSucceeded(alice)
        #expect(signedIn.signInDeadlinePassed() == .none)
        #expect(signedIn.state == .ready(alice))
        // A credential that lapsed later does not bring the deadline back.
        signedIn.credentialLapsed(alice)
        #expect(signedIn.signInDeadlinePassed() == .none)
    }
}
