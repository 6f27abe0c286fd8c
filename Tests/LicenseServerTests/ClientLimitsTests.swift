import LicenseCore
@testable import LicenseServer
import LicenseWire
import Testing

/// The plain-data parts of the server's defences against hostile clients: the sign-in throttle,
/// the refused-sign-in audit rows, the connection caps, list pages. No I/O, no sleeping.
@Suite("Client limits")
struct ClientLimitsTests {
    let t0 = Timestamp(millisecondsSinceEpoch: 1_800_000_000_000)

    @Test func refusedSignInsCostAGrowingWaitPerAddressAndAQuietAddressStartsAfresh() {
        var throttle = SignInThrottleState()
        var waits: [Duration?] = []
        for _ in 0..<12 { waits.append(throttle.refused("192.0.2.7", now: t0)) }
        // Five are free; then 1 s, doubling, up to a minute.
        #expect(waits.prefix(5).allSatisfy { $0 == nil })
        #expect(Array(waits.dropFirst(5)) == [1, 2, 4, 8, 16, 32, 60].map { Duration.seconds($0) })
        #expect(throttle.wait(for: "192.0.2.7", now: t0.advanced(by: .seconds(59))) == .seconds(1))
        #expect(throttle.wait(for: "192.0.2.7", now: t0.advanced(by: .seconds(60))) == nil)
        // Another address is not affected.
        #expect(throttle.wait(for: "192.0.2.8", now: t0) == nil)
        #expect(throttle.refused("192.0.2.8", now: t0) == nil)
        // After the quiet period the address has its free refusals again.
        #expect(throttle.refused("192.0.2.7", now: t0.advanced(by: .seconds(301))) == nil)
    }

    @Test func anIPv6ClientIsThrottledByItsSlash64() {
        #expect(SignInThrottleState.key("2001:db8:1:2:aaaa::1") == SignInThrottleState.key("2001:db8:1:2:bbbb::9"))
        #expect(SignInThrottleState.key("2001:db8:1:2::1") != SignInThrottleState.key("2001:db8:1:3::1"))
        #expect(SignInThrottleState.key("::1") == "::1")
        #expect(SignInThrottleState.key("203.0.113.9") == "203.0.113.9")
        var throttle = SignInThrottleState()
        for index in 0..<6 { _ = throttle.refused("2001:db8:1:2::\(index + 1)", now: t0) }
        #expect(throttle.wait(for: "2001:db8:1:2::ffff", now: t0) == .seconds(1))
    }

    @Test func theThrottleForgetsQuietAddressesWhenFull() {
        var policy = SignInThrottleState.Policy()
        policy.maximumAddresses = 4
        var throttle = SignInThrottleState(policy: policy)
        for index in 0..<4 { _ = throttle.refused("198.51.100.\(index)", now: t0) }
        _ = throttle.refused("198.51.100.9", now: t0.advanced(by: .seconds(400)))
        #expect(throttle.entries.count == 1)
        for index in 0..<10 { _ = throttle.refused("198.51.100.\(index + 20)", now: t0.advanced(by: .seconds(400))) }
        #expect(throttle.entries.count <= 4)
    }

    @Test func refusedSignInsFromOneAddressBecomeOneRowPerInterval() {
        var log = SignInRefusalLogState(interval: .seconds(60))
        // The first is recorded at once, the next 999 are counted.
        let first = log.refused(address: "192.0.2.7", outcome: "INVALID_CREDENTIAL", target: "api_key from 192.0.2.7", now: t0)
        #expect(first.map(\.count) == [1])
        for second in 1..<1000 {
            #expect(log.refused(address: "192.0.2.7", outcome: "SIGN_IN_THROTTLED", target: "api_key from 192.0.2.7", now: t0.advanced(by: .milliseconds(Int64(second) * 50))).isEmpty)
        }
        // Another address has rows of its own.
        #expect(log.refused(address: "192.0.2.8", outcome: "INVALID_CREDENTIAL", target: "api_key from 192.0.2.8", now: t0).count == 1)
        #expect(log.due(now: t0.advanced(by: .seconds(59))).isEmpty)
        let due = log.due(now: t0.advanced(by: .seconds(60)))
        #expect(due.count == 1)
        #expect(due.first?.count == 999 && due.first?.outcome == "SIGN_IN_THROTTLED" && due.first?.at == t0.advanced(by: .milliseconds(50)))
        #expect(due.first?.action == "hello" && due.first?.target == "api_key from 192.0.2.7")
        // A refusal after the interval records the previous burst (if not yet due) and itself.
        _ = log.refused(address: "192.0.2.9", outcome: "INVALID_CREDENTIAL", target: "x", now: t0)
        _ = log.refused(address: "192.0.2.9", outcome: "INVALID_CREDENTIAL", target: "x", now: t0)
        #expect(log.refused(address: "192.0.2.9", outcome: "INVALID_CREDENTIAL", target: "x", now: t0.advanced(by: .seconds(61))).map(\.count) == [1, 1])
        // At shutdown every burst is recorded.
        _ = log.refused(address: "192.0.2.9", outcome: "INVALID_CREDENTIAL", target: "x", now: t0.advanced(by: .seconds(62)))
        #expect(log.due(now: t0.advanced(by: .seconds(62)), all: true).map(\.count) == [1])
        #expect(log.bursts.isEmpty)
    }

    @Test func connectionCapsRefuseInTotalAndPerAddressAndBoundTheRefusals() {
        var limits = ConnectionLimits(total: 4, perAddress: 2, refusing: 2)
        #expect(limits.arrived(from: "192.0.2.1") == .admitted)
        #expect(limits.arrived(from: "192.0.2.1") == .admitted)
        guard case .refuse(let perAddress) = limits.arrived(from: "192.0.2.1") else { Issue.record("not refused"); return }
        #expect(perAddress.reason == .tooManyConnections && perAddress.code == .resourceExhausted && perAddress.retryAfter != nil)
        #expect(limits.arrived(from: "192.0.2.2") == .admitted)
        #expect(limits.arrived(from: "192.0.2.3") == .admitted)
        guard case .refuse(let total) = limits.arrived(from: "192.0.2.4") else { Issue.record("not refused"); return }
        #expect(total.message.contains("as many connections as it allows"))
        // Two refusals are under way: a third connection is closed without one.
        #expect(limits.arrived(from: "192.0.2.5") == .close)
        limits.refusalEnded()
        limits.release("192.0.2.1")
        #expect(limits.arrived(from: "192.0.2.1") == .admitted)
        #expect(limits.open == 4 && limits.openByAddress["192.0.2.1"] == 2)
        // The default total fits the open-file limit.
        #expect(ConnectionLimits.fitting(descriptors: 1024) == 924)
        #expect(ConnectionLimits.fitting(descriptors: 1_048_576) == 10_000)
        #expect(ConnectionLimits.fitting(descriptors: 50) == 1)
    }

    @Test func answerLimitsAreTheSmallerOfTheClientsAndTheServers() async throws {
        let machine = ConnectionStateMachine(answerLimit: 65_536)
        #expect(machine.answerLimit == 65_536)
        var ready = machine
        _ = ready.requestReceived(isHello: true)
        ready.helloSucceeded(Principal(userID: "u", tenantID: nil, role: .platformOperator, name: "u"), answerLimit: 8192)
        #expect(ready.answerLimit == 8192)
    }

    @Test func aPageHoldsWhatFitsAndItsTokenResumesAfterTheLastItemSent() throws {
        var events: [Coditect_License_V1_AuditEvent] = []
        for index in 0..<100 {
            var event = Coditect_License_V1_AuditEvent()
            event.id = "aud_\(index)"
            event.target = String(repeating: "x", count: 200)
            events.append(event)
        }
        let fitting = try AnswerPage.fitting(events, frameLimit: 4096)
        #expect(fitting > 5 && fitting < 20)
        var list = Coditect_License_V1_AuditEventList()
        list.events = Array(events.prefix(fitting))
        list.nextPageToken = String(repeating: "t", count: 512)
        var frame = ServerFrame.ok(id: UInt64.max)
        frame.auditEvents = list
        #expect(try frame.encodedBytes().count <= 4096)
        #expect(try AnswerPage.fitting(events, frameLimit: 600) == 0)
    }

    @Test func pageTokensRoundTripAndForeignOnesAreRefused() throws {
        let session = LeaseSession(
            id: "ses_1", tenantID: "t", licenseID: "l", userID: "u", hardwareID: "h", idempotencyKey: "k", clientInfo: [:],
            createdAt: t0, leaseExpiresAt: t0, endedAt: nil, endReason: nil
        )
        #expect(try PageToken.sessionCursor(PageToken.sessions(after: session)) == SessionCursor(after: session))
        #expect(try PageToken.sessionCursor("") == nil)
        let event = AuditEvent(at: t0, tenantID: nil, actor: nil, action: "a", target: "t", sequence: 42)
        #expect(try PageToken.auditSequence(PageToken.audit(after: event)) == 42)
        for foreign in ["nonsense!", PageToken.audit(after: event), Base64URL.encode(Array("s\u{1F}12".utf8)), String(repeating: "A", count: 600)] {
            #expect(throws: LicenseError.self) { _ = try PageToken.sessionCursor(foreign) }
        }
        #expect(throws: LicenseError.self) { _ = try PageToken.auditSequence(PageToken.sessions(after: session)) }
    }
}

/// `ReadinessState`, the plain data behind `/ready`.
@Suite("Readiness")
struct ReadinessStateTests {
    @Test func readyOnlyWhileListeningNotDrainingWithFreshBackendsAndAKey() {
        let t0 = ContinuousClock.now
        var state = ReadinessState(freshness: .seconds(15))
        #expect(Set(state.failing(at: t0).keys) == ["listener", "signing_key", "repository", "seat_store"])
        state.listenerStarted()
        state.signingKey(loaded: true)
        state.probed("repository", at: t0, failure: nil)
        state.probed("seat_store", at: t0, failure: nil)
        #expect(state.failing(at: t0.advanced(by: .seconds(15))).isEmpty)
        // A failed probe counts at once; a success clears it; silence counts after `freshness`.
        state.probed("seat_store", at: t0.advanced(by: .seconds(5)), failure: "no answer within 2 s")
        #expect(state.failing(at: t0.advanced(by: .seconds(5))) == ["seat_store": "no answer within 2 s"])
        state.probed("seat_store", at: t0.advanced(by: .seconds(10)), failure: nil)
        #expect(state.failing(at: t0.advanced(by: .seconds(16))) == ["repository": "no answer to a probe within the last 15.0 seconds"])
        state.probed("repository", at: t0.advanced(by: .seconds(16)), failure: nil)
        #expect(state.failing(at: t0.advanced(by: .seconds(16))).isEmpty)
        state.drainStarted()
        #expect(state.failing(at: t0.advanced(by: .seconds(16)))["listener"]?.contains("draining") == true)
    }
}
