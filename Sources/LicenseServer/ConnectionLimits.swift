import Foundation
import LicenseCore
import Synchronization

/// The server's connection caps as plain data: open connections in total and per client
/// address (an IPv6 /64, as `SignInThrottleState.key`), and the connections being refused.
public struct ConnectionLimits: Sendable {
    /// Open connections at most.
    public let total: Int
    /// Open connections at most from one address.
    public let perAddress: Int
    /// Connections at most being answered `TOO_MANY_CONNECTIONS` at once; past it, one more is
    /// closed without an answer (a refusal costs a TLS handshake: a flood must not buy many).
    public let refusing: Int
    private(set) var open = 0
    private(set) var openByAddress: [String: Int] = [:]
    private(set) var beingRefused = 0

    /// What to do with a new connection.
    public enum Admission: Sendable, Equatable {
        /// Serve it; `release(_:)` when it closes.
        case admitted
        /// Answer this error, then close; `refusalEnded()` when it is closed.
        case refuse(LicenseError)
        /// Close it at once.
        case close
    }

    public init(total: Int, perAddress: Int, refusing: Int = 64) {
        self.total = max(1, total)
        self.perAddress = max(1, perAddress)
        self.refusing = max(0, refusing)
    }

    /// The default total cap (10,000), or what the open-file limit `descriptors` leaves after
    /// `reserve` descriptors for the listener, backends and files.
    public static func fitting(descriptors: Int, reserve: Int = 100, preferred: Int = 10_000) -> Int {
        max(1, min(preferred, descriptors - reserve))
    }

    /// The process's open-file limit (`RLIMIT_NOFILE`, soft), or `nil` when unlimited or unknown.
    public static func descriptorLimit() -> Int? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max else { return nil }
        return Int(clamping: limit.rlim_cur)
    }

    /// A connection from `address` arrived.
    public mutating func arrived(from address: String) -> Admission {
        let key = SignInThrottleState.key(address)
        let fromAddress = openByAddress[key, default: 0]
        let error: LicenseError
        if open >= total {
            error = LicenseError(.resourceExhausted, .tooManyConnections, "the server has as many connections as it allows; retry later", retryAfter: .seconds(5))
        } else if fromAddress >= perAddress {
            error = LicenseError(.resourceExhausted, .tooManyConnections, "too many connections from this address; close some or retry later", retryAfter: .seconds(5))
        } else {
            open += 1
            openByAddress[key] = fromAddress + 1
            return .admitted
        }
        guard beingRefused < refusing else { return .close }
        beingRefused += 1
        return .refuse(error)
    }

    /// An admitted connection from `address` closed.
    public mutating func release(_ address: String) {
        let key = SignInThrottleState.key(address)
        open = max(0, open - 1)
        let left = openByAddress[key, default: 1] - 1
        openByAddress[key] = left > 0 ? left : nil
    }

    /// A refused connection closed.
    public mutating func refusalEnded() {
        beingRefused = max(0, beingRefused - 1)
    }
}

/// `ConnectionLimits` shared by the listener's connections.
final class ConnectionGate: Sendable {
    private let limits: Mutex<ConnectionLimits>

    init(_ limits: ConnectionLimits) {
        self.limits = Mutex(limits)
    }

    func arrived(from address: String) -> ConnectionLimits.Admission { limits.withLock { $0.arrived(from: address) } }
    func release(_ address: String) { limits.withLock { $0.release(address) } }
    func refusalEnded() { limits.withLock { $0.refusalEnded() } }
}
