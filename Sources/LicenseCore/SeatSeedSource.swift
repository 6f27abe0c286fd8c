/// The durable state a license's seats are rebuilt from.
public struct SeatSeed: Hashable, Sendable {
    /// The license's seat count: no more seats than this are restored.
    public var seatLimit: Int
    /// Sessions that have not ended; those whose lease has lapsed are skipped by the store.
    public var sessions: [LeaseSession]

    public init(seatLimit: Int, sessions: [LeaseSession]) {
        self.seatLimit = seatLimit
        self.sessions = sessions
    }
}

/// Where a seat store that can lose its state (Redis after a restart or failover) finds the
/// durable truth to rebuild a license's seats from: the repository's live session rows.
public protocol SeatSeedSource: Sendable {
    func seatSeed(for license: LicenseID) async throws -> SeatSeed
}

/// Reads seeds from a `LicenseRepository`.
public struct RepositorySeatSeedSource: SeatSeedSource {
    public let repository: any LicenseRepository

    public init(repository: any LicenseRepository) {
        self.repository = repository
    }

    public func seatSeed(for license: LicenseID) async throws -> SeatSeed {
        let seats = try await repository.license(license)?.seats ?? 0
        return SeatSeed(seatLimit: seats, sessions: try await repository.sessions(license: license, includeEnded: false))
    }
}
