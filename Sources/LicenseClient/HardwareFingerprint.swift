import Crypto
import Foundation
import LicenseCore

/// A stable, anonymous identifier of this machine, sent as the `hardware_id` of each acquire.
///
/// Derived from the OS installation's machine id, the hardware addresses of the network
/// interfaces backed by a device, the CPU model and the disks' identifiers, sorted so their order does not matter,
/// and hashed with SHA-256: no raw identifier leaves the machine. Virtual interfaces (Docker
/// bridges, veth pairs, VPN tunnels) are ignored, so starting a container or a VPN does not change
/// it. `CODITECT_HARDWARE_ID` (or ``LicenseClientConfiguration/hardwareID``) overrides it for
/// containers and CI, where there is no stable hardware; its value is hashed the same way.
///
/// The result is cached in the state folder together with a hash of the machine id, so that a
/// network card added later does not change the machine's identity, while a new OS installation
/// (or a cloned VM given a new machine id) does.
public struct HardwareFingerprint: Sendable {
    /// The environment variable that overrides the fingerprint.
    public static let overrideVariable = "CODITECT_HARDWARE_ID"

    /// The root of the file system to read (`/`; tests point it at a fake tree).
    public var root: String

    /// Reads the real machine.
    public init(root: String = "/") {
        self.root = root.hasSuffix("/") ? String(root.dropLast()) : root
    }

    /// The identifiers found, as `kind=value` lines, sorted. They stay on this machine.
    public func components() -> [String] {
        var lines: [String] = []
        if let machineID = machineID() { lines.append("machine=" + machineID) }
        lines += networkAddresses().map { "mac=" + $0 }
        lines += cpu().map { "cpu=" + $0 }
        lines += disks().map { "disk=" + $0 }
        return lines.sorted()
    }

    /// The fingerprint: 64 lowercase hex digits. Throws when the machine offers no identifier at
    /// all (a bare container): set `CODITECT_HARDWARE_ID` there.
    public func compute() throws -> String {
        let lines = components()
        guard !lines.isEmpty else {
            throw LicenseCallError(
                code: .failedPrecondition, reason: "NO_HARDWARE_ID",
                message: "this machine exposes no hardware identifiers; set \(Self.overrideVariable)"
            )
        }
        return Self.hash("coditect-hwid-v1", lines)
    }

    /// The fingerprint to use: the override when given (argument, then environment), else the
    /// cached value for this machine id in `stateDirectory`, else a fresh computation (cached).
    public static func resolve(override: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment, stateDirectory: String?, root: String = "/") throws -> String {
        if let value = override ?? environment[overrideVariable], !value.isEmpty {
            return hash("coditect-hwid-override-v1", [value])
        }
        let fingerprint = HardwareFingerprint(root: root)
        let machine = hash("coditect-machine-v1", [fingerprint.machineID() ?? ""])
        let cacheFile = stateDirectory.map { $0 + "/hardware-id.json" }
        if let cacheFile, let data = SecureFile.read(cacheFile),
           let cached = try? JSONDecoder().decode(Cached.self, from: data), cached.machine == machine, cached.id.count == 64 {
            return cached.id
        }
        let id = try fingerprint.compute()
        if let stateDirectory, let cacheFile {
            try? SecureFile.ensureDirectory(stateDirectory)
            try? SecureFile.write(try JSONEncoder().encode(Cached(machine: machine, id: id)), to: cacheFile)
        }
        return id
    }

    private struct Cached: Codable {
        var machine: String
        var id: String
    }

    static func hash(_ domain: String, _ lines: [String]) -> String {
        let input = ([domain] + lines).joined(separator: "\n")
        return Hex.encode(SHA256.hash(data: Data(input.utf8)))
    }

    // MARK: - Sources (Linux paths; missing files simply contribute nothing)

    func machineID() -> String? {
        for path in ["/etc/machine-id", "/var/lib/dbus/machine-id"] {
            if let value = text(path), !value.isEmpty { return value }
        }
        return nil
    }

    /// Addresses of interfaces backed by a device (a physical NIC or a VM's virtual one).
    func networkAddresses() -> [String] {
        let base = root + "/sys/class/net"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []
        return names.compactMap { name -> String? in
            guard FileManager.default.fileExists(atPath: "\(base)/\(name)/device") else { return nil }
            guard let address = text("/sys/class/net/\(name)/address")?.lowercased(),
                  address.count >= 17, address != "00:00:00:00:00:00"
            else { return nil }
            return address
        }.sorted()
    }

    /// Vendor and model of the first CPU (not its speed, which varies).
    func cpu() -> [String] {
        guard let info = text("/proc/cpuinfo") else { return [] }
        let wanted = ["vendor_id", "model name", "cpu family", "model", "stepping", "Hardware", "Serial", "CPU implementer", "CPU part"]
        var values: [String] = []
        for line in info.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.trimmingCharacters(in: .whitespaces).isEmpty, !values.isEmpty { break }
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let key = parts[0].trimmingCharacters(in: .whitespaces)
            if wanted.contains(key) { values.append(key + ":" + parts[1].trimmingCharacters(in: .whitespaces)) }
        }
        return values.isEmpty ? [] : [values.joined(separator: ";")]
    }

    /// Disk serials and WWNs (`/dev/disk/by-id`, partitions left out).
    func disks() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root + "/dev/disk/by-id")) ?? []
        return names.filter { !$0.contains("-part") }.sorted()
    }

    private func text(_ path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: root + path) else { return nil }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
