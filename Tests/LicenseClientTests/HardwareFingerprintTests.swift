import Foundation
@testable import LicenseClient
import Testing

/// The hardware fingerprint over a fake `/sys`, `/proc`, `/etc` and `/dev` tree, and the private
/// state files it is cached in.
@Suite("Hardware fingerprint and state files")
struct HardwareFingerprintTests {
    /// A fake machine: machine id, two physical NICs, a Docker bridge, a CPU and a disk.
    func makeMachine(machineID: String = "4f1c0c5e0b7e4d0f9c2a7d1e8b6a5c3d", nics: [(String, String, Bool)]? = nil) throws -> String {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("hw-\(UUID().uuidString)").path
        func write(_ path: String, _ text: String) throws {
            let url = URL(fileURLWithPath: root + path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
        }
        try write("/etc/machine-id", machineID + "\n")
        for (name, address, physical) in nics ?? [("eth0", "52:54:00:12:34:56", true), ("wlan0", "a4:5e:60:aa:bb:cc", true), ("docker0", "02:42:ac:11:00:02", false)] {
            try write("/sys/class/net/\(name)/address", address + "\n")
            if physical { try FileManager.default.createDirectory(atPath: "\(root)/sys/class/net/\(name)/device", withIntermediateDirectories: true) }
        }
        try write("/proc/cpuinfo", "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\nmodel name\t: Intel(R) Xeon(R)\nstepping\t: 7\ncpu MHz\t\t: 2400.123\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\ncpu MHz\t\t: 1200.5\n")
        try write("/dev/disk/by-id/nvme-Samsung_SSD_980_S64DNX0R123456", "")
        try write("/dev/disk/by-id/nvme-Samsung_SSD_980_S64DNX0R123456-part1", "")
        return root
    }

    @Test func isAHashOfThePhysicalIdentifiersAndRevealsNone() throws {
        let root = try makeMachine()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let fingerprint = HardwareFingerprint(root: root)
        #expect(fingerprint.components() == [
            "cpu=vendor_id:GenuineIntel;cpu family:6;model:85;model name:Intel(R) Xeon(R);stepping:7",
            "disk=nvme-Samsung_SSD_980_S64DNX0R123456",
            "mac=52:54:00:12:34:56",
            "mac=a4:5e:60:aa:bb:cc",
            "machine=4f1c0c5e0b7e4d0f9c2a7d1e8b6a5c3d",
        ])
        let id = try fingerprint.compute()
        #expect(id.count == 64 && id.allSatisfy { $0.isHexDigit })
        for raw in ["4f1c0c5e", "52:54:00", "S64DNX0R", "GenuineIntel", "525400"] { #expect(!id.contains(raw)) }
        #expect(try fingerprint.compute() == id, "stable across calls (and reboots: nothing volatile is read)")
    }

    @Test func ignoresVirtualInterfacesCPUSpeedAndOrder() throws {
        let base = try makeMachine()
        let reordered = try makeMachine(nics: [
            ("wlan0", "a4:5e:60:aa:bb:cc", true), ("veth12ab", "9e:1d:00:00:00:01", false),
            ("eth0", "52:54:00:12:34:56", true), ("tun0", "00:00:00:00:00:00", false),
        ])
        defer { for root in [base, reordered] { try? FileManager.default.removeItem(atPath: root) } }
        #expect(try HardwareFingerprint(root: base).compute() == HardwareFingerprint(root: reordered).compute())
        let otherMachine = try makeMachine(machineID: "00000000000000000000000000000001")
        defer { try? FileManager.default.removeItem(atPath: otherMachine) }
        #expect(try HardwareFingerprint(root: base).compute() != HardwareFingerprint(root: otherMachine).compute())
    }

    @Test func theOverrideIsHashedAndWinsAndAnEmptyMachineNeedsIt() throws {
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("hw-empty-\(UUID().uuidString)").path
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("state-\(UUID().uuidString)").path
        defer { for path in [empty, state] { try? FileManager.default.removeItem(atPath: path) } }
        let fromEnvironment = try HardwareFingerprint.resolve(environment: ["CODITECT_HARDWARE_ID": "ci-runner-7"], stateDirectory: state, root: empty)
        #expect(fromEnvironment.count == 64 && !fromEnvironment.contains("ci-runner"))
        #expect(try HardwareFingerprint.resolve(override: "ci-runner-7", environment: [:], stateDirectory: nil, root: empty) == fromEnvironment)
        #expect(throws: LicenseCallError.self) { try HardwareFingerprint.resolve(environment: [:], stateDirectory: nil, root: empty) }
    }

    @Test func isCachedPerMachineIDSoANewNetworkCardDoesNotChangeIt() throws {
        let root = try makeMachine()
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("state-\(UUID().uuidString)").path
        defer { for path in [root, state] { try? FileManager.default.removeItem(atPath: path) } }
        let first = try HardwareFingerprint.resolve(environment: [:], stateDirectory: state, root: root)
        try FileManager.default.createDirectory(atPath: root + "/sys/class/net/eth1/device", withIntermediateDirectories: true)
        try "52:54:00:99:99:99\n".write(toFile: root + "/sys/class/net/eth1/address", atomically: true, encoding: .utf8)
        #expect(try HardwareFingerprint(root: root).compute() != first, "the raw fingerprint sees the new card")
        #expect(try HardwareFingerprint.resolve(environment: [:], stateDirectory: state, root: root) == first, "the cached identity does not")
        // A new OS installation (new machine id) is a new machine.
        try "ffffffffffffffffffffffffffffffff\n".write(toFile: root + "/etc/machine-id", atomically: true, encoding: .utf8)
        #expect(try HardwareFingerprint.resolve(environment: [:], stateDirectory: state, root: root) != first)
    }

    @Test func stateFilesArePrivateAndLooseOnesAreNotTrusted() throws {
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("state-\(UUID().uuidString)/nested").path
        defer { try? FileManager.default.removeItem(atPath: (state as NSString).deletingLastPathComponent) }
        try SecureFile.ensureDirectory(state)
        try SecureFile.write(Data("secret".utf8), to: state + "/file.json")
        let directoryMode = try FileManager.default.attributesOfItem(atPath: state)[.posixPermissions] as? Int
        let fileMode = try FileManager.default.attributesOfItem(atPath: state + "/file.json")[.posixPermissions] as? Int
        #expect(directoryMode == 0o700)
        #expect(fileMode == 0o600)
        #expect(SecureFile.read(state + "/file.json") == Data("secret".utf8))
        // A file others can write to is ignored; a loosened folder is tightened again.
        chmod(state + "/file.json", 0o666)
        #expect(SecureFile.read(state + "/file.json") == nil)
        chmod(state, 0o777)
        try SecureFile.ensureDirectory(state)
        #expect(try FileManager.default.attributesOfItem(atPath: state)[.posixPermissions] as? Int == 0o700)
        // A symbolic link is not followed.
        try SecureFile.write(Data("x".utf8), to: state + "/real.json")
        try FileManager.default.createSymbolicLink(atPath: state + "/link.json", withDestinationPath: state + "/real.json")
        #expect(SecureFile.read(state + "/link.json") == nil)
    }
}
