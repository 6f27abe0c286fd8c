import Crypto
import Foundation
import LicenseCore

/// What the client keeps on disk for one deployment (one set of endpoints and issuer), under
/// `STATE/servers/<id>/`: the signing keys, the clock high-water mark, and the last lease of each
/// license, so that a restart during an outage can run on the remaining grace.
struct ClientStateStore: Sendable {
    /// The signing keys as last fetched.
    struct CachedKeys: Codable, Sendable {
        var jwks: String
        /// Server time of the fetch.
        var fetchedAtMs: Int64
    }

    /// The clock state carried across restarts.
    struct ClockState: Codable, Sendable {
        var offsetMs: Int64
        var highWaterMs: Int64
    }

    /// The last lease held for a license.
    struct StoredLease: Codable, Sendable {
        var sessionID: String
        var token: String
        var heartbeatIntervalS: UInt32
        var leaseTTLS: UInt32
    }

    let directory: String

    /// The store for `endpoints` + `issuer` under `root`; nothing is created until the first write.
    init(root: String, endpoints: [LicenseServerEndpoint], issuer: String) {
        let identity = ([issuer] + endpoints.map { "\($0.host):\($0.port)" }.sorted()).joined(separator: "\n")
        let digest = Hex.encode(SHA256.hash(data: Data(identity.utf8)))
        directory = root + "/servers/" + digest.prefix(16)
    }

    func keys() -> CachedKeys? { load(CachedKeys.self, "keys.json") }
    func saveKeys(_ keys: CachedKeys) throws { try save(keys, "keys.json") }

    func clock() -> ClockState? { load(ClockState.self, "clock.json") }
    func saveClock(_ state: ClockState) throws { try save(state, "clock.json") }

    func lease(_ licenseID: String) -> StoredLease? { load(StoredLease.self, Self.leaseFile(licenseID)) }
    func saveLease(_ lease: StoredLease, licenseID: String) throws { try save(lease, Self.leaseFile(licenseID)) }
    func removeLease(_ licenseID: String) { SecureFile.remove(directory + "/" + Self.leaseFile(licenseID)) }

    /// License ids are `[A-Za-z0-9._-]`, but the file name must not depend on that: hex of the id.
    private static func leaseFile(_ licenseID: String) -> String {
        "lease-" + Hex.encode(licenseID.utf8) + ".json"
    }

    private func load<T: Decodable>(_ type: T.Type, _ name: String) -> T? {
        guard let data = SecureFile.read(directory + "/" + name) else { return nil }
        return try? JSONDecoder().decode(T.self, from: data)
    }

    private func save<T: Encodable>(_ value: T, _ name: String) throws {
        try SecureFile.ensureDirectory(directory)
        try SecureFile.write(try JSONEncoder().encode(value), to: directory + "/" + name)
    }
}
