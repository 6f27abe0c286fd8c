#if canImport(Glibc)
import Glibc
#endif
import BackendTestSupport
import Foundation
import LicenseClient
import Testing

/// The image `Tools/build-image.sh` assembles (umoci, no Docker engine), run the way a container
/// runtime would: its root filesystem mounted read-only in a mount namespace of its own, a
/// writable data volume, /proc, a tmpfs /tmp and the usual device nodes, the process started
/// as the image's user with the image's entrypoint and environment. The debug build goes in (its
/// Swift libraries come along by `ldd`); the release image differs only in the binary.
@Suite("Container image (OCI, run in a chroot)", .serialized, .timeLimit(.minutes(5)))
struct ContainerImageTests {
    struct RuntimeConfig: Decodable {
        struct Process: Decodable {
            struct User: Decodable { var uid: Int; var gid: Int }
            var user: User
            var args: [String]
            var env: [String]
            var cwd: String
        }
        var process: Process
    }

    static func run(_ command: String) async throws -> CommandRun {
        try await CommandRun.run("/bin/sh", ["-c", command])
    }

    /// The script that mounts the bundle's root read-only with the data folder on its volume and
    /// becomes the entrypoint, as the image's user. It first proves the root is read-only (even
    /// root cannot write to it).
    static func containerScript(rootfs: String, data: String, user: RuntimeConfig.Process.User) -> String {
        """
        set -e
        mkdir -p '\(data)' && chown \(user.uid):\(user.gid) '\(data)' && chmod 0700 '\(data)'
        mount --bind '\(rootfs)' '\(rootfs)'
        mount -o remount,bind,ro '\(rootfs)'
        if touch '\(rootfs)/written' 2>/dev/null; then echo 'the root filesystem is writable' >&2; exit 99; fi
        mount --bind '\(data)' '\(rootfs)/var/lib/licensed'
        mount -t proc proc '\(rootfs)/proc'
        mount -t tmpfs -o mode=1777,size=16m tmpfs '\(rootfs)/tmp'
        mount -t tmpfs -o mode=0755,size=64k tmpfs '\(rootfs)/dev'
        for node in null zero random urandom; do touch "\(rootfs)/dev/$node"; mount --bind "/dev/$node" "\(rootfs)/dev/$node"; done
        exec chroot --userspec=\(user.uid):\(user.gid) '\(rootfs)' "$@"
        """
    }

    @Test func theImageRunsAsItsUserOnAReadOnlyRootAndServesALease() async throws {
        let folder = try makeTemporaryDirectory("oci-image")
        defer { try? FileManager.default.removeItem(atPath: folder) }

        // Assemble the image and unpack it as a runtime would.
        let build = try await Self.run("cd \(PackagingTests.root) && Tools/build-image.sh --binary \(LicensedBinaryTests.binary) --out \(folder)/oci --tag test --archive \(folder)/licensed.tar 2>&1")
        try #require(build.status == 0, "\(build.output)")
        print(build.output.split(separator: "\n").last.map(String.init) ?? "")
        let inspect = try await Self.run("skopeo inspect --config oci:\(folder)/oci:test && skopeo inspect docker-archive:\(folder)/licensed.tar >/dev/null")
        try #require(inspect.status == 0, "\(inspect.output)")
        #expect(inspect.stdout.contains("\"User\": \"10001:10001\"") && inspect.stdout.contains("/usr/local/bin/licensed"), "\(inspect.stdout)")
        let unpack = try await Self.run("umoci unpack --image \(folder)/oci:test \(folder)/bundle 2>&1")
        try #require(unpack.status == 0, "\(unpack.output)")
        let config = try JSONDecoder().decode(RuntimeConfig.self, from: Data(contentsOf: URL(fileURLWithPath: folder + "/bundle/config.json")))
        #expect(config.process.user.uid == 10001 && config.process.user.gid == 10001)
        #expect(config.process.args.first == "/usr/local/bin/licensed" && config.process.cwd == "/var/lib/licensed")
        #expect(config.process.env.contains { $0.hasPrefix("SWIFT_BACKTRACE=enable=yes") })
        let rootfs = folder + "/bundle/rootfs"
        let owner = try FileManager.default.attributesOfItem(atPath: rootfs + "/var/lib/licensed")
        #expect(owner[.ownerAccountID] as? Int == 10001 && owner[.posixPermissions] as? Int == 0o700)

        // Run it: the test's daemon command line, moved into the image.
        let script = folder + "/container.sh"
        let user = config.process.user
        let daemon = try await LicensedProcess.start([]) { command in
            let data = command[command.firstIndex(of: "--data-dir")! + 1]
            try? Self.containerScript(rootfs: rootfs, data: data, user: user).write(toFile: script, atomically: true, encoding: .utf8)
            let inside = command.map { $0 == data ? "/var/lib/licensed" : $0 }.dropFirst()
            return ["/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", script, "/usr/local/bin/licensed"] + inside
        }
        let status = try String(contentsOfFile: "/proc/\(daemon.pid ?? 0)/status", encoding: .utf8)
        #expect(status.split(separator: "\n").contains { $0.hasPrefix("Uid:") && $0.split(separator: "\t").dropFirst().allSatisfy { $0 == "10001" } }, "\(status)")
        #expect(!FileManager.default.fileExists(atPath: rootfs + "/written"))

        try await Self.leaseRoundTrip(daemon)
        // A client that is not root connects too: `licensed ping` (the helm test's client, on the
        // client library) as the image's user. Both ends once asked for SO_DEBUG instead of
        // TCP_NODELAY, which only root may set: the first connection stopped the server.
        let ca = folder + "/ca.pem"
        try FileManager.default.copyItem(atPath: daemon.dataDirectory + "/tls/ca.pem", toPath: ca)
        try LicensedProcess.operatorKey.write(toFile: folder + "/api-key", atomically: true, encoding: .utf8)
        let ping = try await Self.run("chmod 0755 \(folder) && chmod 0644 \(ca) \(folder)/api-key && setpriv --reuid=\(user.uid) --regid=\(user.gid) --clear-groups \(LicensedBinaryTests.binary) ping 127.0.0.1:\(daemon.port) --ca \(ca) --api-key-file \(folder)/api-key")
        #expect(ping.status == 0 && ping.stdout.contains("signed in; 1 signing key published"), "\(ping.output)")
        #expect(await daemon.stop(signal: SIGTERM) != nil)
        // Everything it wrote is on the data volume.
        let written = try FileManager.default.contentsOfDirectory(atPath: daemon.dataDirectory)
        #expect(written.contains("licensed.sqlite") && written.contains("tls"), "\(written)")
    }

    /// An operator sets up a license; a user takes a lease, heartbeats and releases it.
    static func leaseRoundTrip(_ daemon: LicensedProcess) async throws {
        let keys = try await daemon.setUpLicense("image-pro", seats: 1, users: 1, leaseTTL: 60, heartbeat: 20)
        let connection = try await daemon.connect(apiKey: keys[0])
        let lease = try await connection.acquire(licenseID: "image-pro", hardwareID: "container-test")
        #expect(!lease.leaseToken.isEmpty)
        _ = try await connection.heartbeat(sessionID: lease.sessionID)
        try await connection.release(sessionID: lease.sessionID)
        await connection.close()
    }
}
