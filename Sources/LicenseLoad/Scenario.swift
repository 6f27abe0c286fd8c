import LicenseWire

/// The built-in scenarios, as recordings of one user.
public enum Scenario: String, CaseIterable, Sendable {
    /// The original plan: acquire → 3 heartbeats → release, in a loop.
    case plan
    /// The steady state of a large fleet: acquire once, then heartbeat in a loop, release at the end.
    case heartbeatOnly = "heartbeat-only"
    /// 9 a.m.: every user connects, signs in and acquires at once (one connection each), then releases.
    case storm

    /// The scenario's script for one user on `license`.
    public func recording(license: String) -> Recording {
        let session = "ses_recorded_0"
        let acquire = ClientFrame.OneOf_Call.acquire(.with {
            $0.licenseID = license
            $0.hardwareID = "recorded-machine"
            $0.idempotencyKey = "recorded-key"
            $0.clientInfo = ["client": "license-load"]
        })
        let heartbeat = ClientFrame.OneOf_Call.heartbeat(.with { $0.sessionID = session })
        let release = ClientFrame.OneOf_Call.release(.with { $0.sessionID = session })
        switch self {
        case .plan:
            return Recording(description: "acquire, 3 heartbeats, release, in a loop", entries: [
                .init(user: 0, atMs: 0, phase: .loop, call: acquire, sessionID: session),
                .init(user: 0, atMs: 300_000, phase: .loop, call: heartbeat),
                .init(user: 0, atMs: 600_000, phase: .loop, call: heartbeat),
                .init(user: 0, atMs: 900_000, phase: .loop, call: heartbeat),
                .init(user: 0, atMs: 900_500, phase: .loop, call: release),
            ])
        case .heartbeatOnly:
            return Recording(description: "acquire once, heartbeat in a loop, release at the end", entries: [
                .init(user: 0, atMs: 0, phase: .setup, call: acquire, sessionID: session),
                .init(user: 0, atMs: 300_000, phase: .loop, call: heartbeat),
                .init(user: 0, atMs: 600_000, phase: .teardown, call: release),
            ])
        case .storm:
            return Recording(description: "every user connects and acquires at once, then releases", entries: [
                .init(user: 0, atMs: 0, phase: .setup, call: acquire, sessionID: session),
                .init(user: 0, atMs: 1_000, phase: .teardown, call: release),
            ])
        }
    }

    /// Whether each virtual user gets a connection of its own.
    public var connectionPerUser: Bool { self == .storm }
}
