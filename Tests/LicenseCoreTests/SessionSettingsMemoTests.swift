@testable import LicensePostgres
import Testing

/// The memo that lets a pooled Postgres connection skip its `set_config` round trip: it may only
/// ever say a connection is set when it is, in the same scope, with a timeout no longer than the
/// statement has left.
@Suite("Session settings memo")
struct SessionSettingsMemoTests {
    @Test func aConnectionIsCoveredOnlyInItsScopeAndWithATimeoutNoLongerThanWhatIsLeft() {
        let memo = SessionSettingsMemo()
        #expect(!memo.covers(7, scope: "acme", left: 5_000), "nothing is known of a new connection")
        let timeout = SessionSettingsMemo.timeout(for: 5_000)
        #expect(timeout == 4_500)
        memo.remember(7, .init(scope: "acme", timeoutMilliseconds: timeout))
        #expect(memo.covers(7, scope: "acme", left: 5_000))
        #expect(memo.covers(7, scope: "acme", left: 4_500), "exactly what is left")
        #expect(!memo.covers(7, scope: "acme", left: 4_499), "the statement could outlive its caller")
        #expect(memo.covers(7, scope: "acme", left: 5_625), "a fifth sooner than needed at most")
        #expect(!memo.covers(7, scope: "acme", left: 5_700), "a timeout far shorter than needed ends statements early")
        #expect(!memo.covers(7, scope: "globex", left: 5_000), "another tenant's scope")
        #expect(!memo.covers(7, scope: "*", left: 5_000), "the system scope is a scope of its own")
        #expect(!memo.covers(8, scope: "acme", left: 5_000), "another connection")
        #expect(!memo.covers(7, scope: "acme", left: 5_000, genericPlans: true), "another plan mode")
        memo.remember(7, .init(scope: "acme", timeoutMilliseconds: timeout, genericPlans: true))
        #expect(memo.covers(7, scope: "acme", left: 5_000, genericPlans: true))
        #expect(!memo.covers(7, scope: "acme", left: 5_000), "a read wants Postgres's own plan choice back")
        memo.remember(7, nil)
        #expect(!memo.covers(7, scope: "acme", left: 5_000), "forgotten before a change")
    }

    @Test func timeoutsAreAtLeastOneMillisecond() {
        #expect(SessionSettingsMemo.timeout(for: 1) == 1)
        #expect(SessionSettingsMemo.timeout(for: 0) == 1)
        #expect(SessionSettingsMemo.timeout(for: 10) == 9)
    }

    @Test func aFullMemoForgetsEverythingRatherThanGrow() {
        let memo = SessionSettingsMemo(capacity: 3)
        for id in 0..<3 { memo.remember(id, .init(scope: "acme", timeoutMilliseconds: 900)) }
        memo.remember(1, .init(scope: "globex", timeoutMilliseconds: 900))
        #expect(memo.current(1)?.scope == "globex", "a known connection is updated in place")
        #expect(memo.current(0) != nil)
        memo.remember(9, nil)
        #expect(memo.current(0) != nil && memo.current(2) != nil, "forgetting an unknown connection empties nothing")
        memo.remember(3, .init(scope: "acme", timeoutMilliseconds: 900))
        #expect(memo.current(0) == nil && memo.current(1) == nil && memo.current(2) == nil)
        #expect(memo.current(3) == .init(scope: "acme", timeoutMilliseconds: 900))
    }
}
