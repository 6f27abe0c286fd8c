#if canImport(Glibc)
import Glibc
#endif
import BackendTestSupport
import Foundation
import LicenseClient
import Testing

/// The `licensed` executable as an operator meets it: its help, its files, its first start, and
/// recovering a lost operator key while it serves.
@Suite("licensed executable", .serialized, .timeLimit(.minutes(2)))
struct LicensedBinaryTests {
    static var binary: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/debug/licensed").path
    }

    /// Runs `licensed` to completion, with no `LICENSED_` settings from the test's environment.
    func run(_ arguments: [String]) async throws -> CommandRun {
        try await CommandRun.run(Self.binary, arguments, environment: ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("LICENSED_") })
    }

    func mode(_ path: String) throws -> Int {
        try #require(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
    }

    @Test func helpShowsTheServersOptionsAndEveryCommandHasAnExample() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary), "build first: Tools/test.sh")
        let help = try await run(["--help"])
        #expect(help.status == 0)
        let text = help.output.split(whereSeparator: \.isWhitespace).joined(separator: " ")  // help wraps lines
        for option in ["--listen", "--redis-url", "--postgres-url", "--tls-cert", "--signing-alg", "operator-key", "migrate", "64 usage error"] {
            #expect(text.contains(option), "licensed --help lacks \(option)")
        }
        for command in [["serve"], ["migrate"], ["operator-key", "create"], ["operator-certificate"]] {
            let sub = try await run(command + ["--help"])
            #expect(sub.status == 0 && sub.output.contains("Example"), "\(command)")
        }
        let negative = try await run(["--max-frame-bytes", "-5"])
        #expect(negative.status == 64 && negative.output.contains("not '-5'"), "\(negative.output)")
    }

    @Test func aFirstStartKeepsItsFilesPrivateAndNeverShowsAGivenKey() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary), "build first: Tools/test.sh")
        let folder = try makeTemporaryDirectory("licensed-binary")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let data = folder + "/data"
        // An existing, world-readable data folder is made private.
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        let port = try FreePort.next()
        let givenKey = "lk_given_by_the_environment_0001"
        let log = folder + "/licensed.log"
        let daemon = try ChildProcess([Self.binary, "--data-dir", data, "--listen", "127.0.0.1:\(port)", "--log-level", "warning"],
                                      logFile: log, environment: ["LICENSED_BOOTSTRAP_API_KEY": givenKey])
        defer { daemon.stop(signal: SIGINT) }
        var output = ""
        let deadline = ContinuousClock.now + .seconds(30)
        while !output.contains("listening on"), ContinuousClock.now < deadline, daemon.isRunning {
            try await Task.sleep(for: .milliseconds(50))
            output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        }
        #expect(output.contains("listening on"), "\(output)")
        #expect(!output.contains(givenKey), "a key from the environment must never be printed")
        #expect(output.contains("LICENSED_BOOTSTRAP_API_KEY (not shown)"))
        #expect(try mode(data) == 0o700)
        for file in ["licensed.sqlite", "licensed.sqlite-wal", "licensed.sqlite-shm", "tls/server-key.pem", "tls/ca-key.pem"] {
            #expect(try mode(data + "/" + file) == 0o600, "\(file)")
        }
        for keyFile in try FileManager.default.contentsOfDirectory(atPath: data + "/keys") {
            #expect(try mode(data + "/keys/" + keyFile) == 0o600, "\(keyFile)")
        }

        // A lost operator key: a new one, made on the data folder while the daemon serves.
        let recovered = try await run(["operator-key", "create", "--data-dir", data, "--name", "laptop"])
        #expect(recovered.status == 0, "\(recovered.output)")
        let key = try #require(recovered.output.split(whereSeparator: \.isWhitespace).first { $0.hasPrefix("lk_") }.map(String.init))
        let connection = try await LicenseConnection.connect(to: LicenseServerEndpoint(host: "127.0.0.1", port: port, caFile: data + "/tls/ca.pem"))
        let hello = try await connection.hello(apiKey: key)
        #expect(hello.principal == "usr_bootstrap" && hello.roles.contains("operator"), "\(hello)")
        await connection.close()
    }

    /// Secrets mounted as files (Kubernetes Secret volumes): NAME_FILE names the file that holds
    /// what NAME would.
    @Test func settingsCanComeFromFilesNamedByFILEVariables() async throws {
        let folder = try makeTemporaryDirectory("licensed-file-settings")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let keyFile = folder + "/api-key", urlFile = folder + "/postgres-url"
        let givenKey = "lk_given_by_a_mounted_file_00001"
        try (givenKey + "\n").write(toFile: keyFile, atomically: true, encoding: .utf8)
        try "mysql://nowhere/db\n".write(toFile: urlFile, atomically: true, encoding: .utf8)
        let clean = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("LICENSED_") }
        func migrate(_ extra: [String: String]) async throws -> CommandRun {
            try await CommandRun.run(Self.binary, ["migrate", "--data-dir", folder + "/data"], environment: clean.merging(extra) { $1 })
        }
        // The file is read (its URL is refused for its scheme), a missing one is named, and
        // setting both is refused.
        let fromFile = try await migrate(["LICENSED_POSTGRES_URL_FILE": urlFile])
        #expect(fromFile.status == 64 && fromFile.output.contains("the Postgres URL must start with postgres://"), "\(fromFile.output)")
        let missing = try await migrate(["LICENSED_POSTGRES_URL_FILE": folder + "/absent"])
        #expect(missing.status == 64 && missing.output.contains("cannot read \(folder)/absent, which LICENSED_POSTGRES_URL_FILE names"), "\(missing.output)")
        let both = try await migrate(["LICENSED_POSTGRES_URL_FILE": urlFile, "LICENSED_POSTGRES_URL": "postgres://x/y"])
        #expect(both.status == 64 && both.output.contains("set LICENSED_POSTGRES_URL or LICENSED_POSTGRES_URL_FILE, not both"), "\(both.output)")

        // A bootstrap key from a file signs in (its trailing newline dropped).
        let port = try FreePort.next()
        let log = folder + "/licensed.log"
        let daemon = try ChildProcess([Self.binary, "--data-dir", folder + "/data", "--listen", "127.0.0.1:\(port)", "--ops-listen", "none", "--log-level", "warning"],
                                      logFile: log, environment: ["LICENSED_BOOTSTRAP_API_KEY_FILE": keyFile])
        defer { daemon.stop(signal: SIGINT) }
        let deadline = ContinuousClock.now + .seconds(30)
        while !((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("listening on"), ContinuousClock.now < deadline, daemon.isRunning {
            try await Task.sleep(for: .milliseconds(50))
        }
        let connection = try await LicenseConnection.connect(to: LicenseServerEndpoint(host: "127.0.0.1", port: port, caFile: folder + "/data/tls/ca.pem"))
        let hello = try await connection.hello(apiKey: givenKey)
        #expect(hello.principal == "usr_bootstrap", "\(hello)")
        await connection.close()
    }
}
