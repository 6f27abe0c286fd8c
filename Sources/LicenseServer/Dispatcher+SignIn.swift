import LicenseCore
import LicenseWire

/// Refused sign-ins: their audit rows per address and interval (`SignInRefusalLogState`).
extension Dispatcher {
    /// Records a refused `Hello` through the per-address refusal log.
    func recordRefusal(_ error: LicenseError, kind: String, peer: String) async {
        guard error.reason != .backendUnavailable else { return }
        for event in refusalLog.refused(address: peer, outcome: error.reason.rawValue, target: "\(kind) from \(peer)", now: service.clock.now()) {
            await audit(event)
        }
    }

    /// Records the refused-sign-in counts whose interval has ended (every one with `all`, at
    /// shutdown). The server calls it once per interval.
    public func flushRefusalLog(all: Bool = false) async {
        for event in refusalLog.due(now: service.clock.now(), all: all) { await audit(event) }
    }

    static func credentialKind(_ hello: Coditect_License_V1_Hello) -> String {
        switch hello.credential {
        case .apiKey: "api_key"
        case .idToken: "id_token"
        case nil: "none"
        }
    }
}
