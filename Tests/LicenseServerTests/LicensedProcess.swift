#if canImport(Glibc)
import Glibc
#endif
import BackendTestSupport
import Foundation
import LicenseClient
import LicenseWire
import NIOConcurrencyHelpers

/// A real `licensed` process (the debug build) on a free loopback port with a data folder of its
/// own, for tests that kill, restart and drain the daemon itself.
///
/// To look into a failure: `FAULT_LOG_LEVEL=debug` sets the daemons' log level and
/// `FAULT_KEEP_LOGS=DIR` copies each daemon's log into DIR when the test ends.
final class LicensedProcess: Sendable {
    static let operatorKey = "lk_fault_tests_operator_key_0001"

    let port: Int
    let folder: String
    private let currentArguments: NIOLockedValueBox<[String]>
    var arguments: [String] { currentArguments.withLockedValue { $0 } }
    /// Environment variables the daemon gets besides the bootstrap operator key.
    let environment: [String: String]
    /// The open-file limit (`ulimit -n`) the daemon runs under, when one is set.
    let openFileLimit: Int?
    /// Turns the daemon's command line into the one to run (e.g. inside an image's root).
    let launcher: @Sendable ([String]) -> [String]
    private let child = NIOLockedValueBox<ChildProcess?>(nil)

    var dataDirectory: String { folder + "/data" }
    var logFile: String { folder + "/licensed.log" }
    var pid: pid_t? { child.withLockedValue { $0?.pid } }

    /// Starts a daemon with `arguments` added to its data folder and listen address.
    static func start(
        _ arguments: [String], environment: [String: String] = [:], openFileLimit: Int? = nil,
        launcher: @escaping @Sendable ([String]) -> [String] = { $0 }
    ) async throws -> LicensedProcess {
        let process = LicensedProcess(
            port: try FreePort.next(), folder: try makeTemporaryDirectory("licensed-process"), arguments: arguments,
            environment: environment, openFileLimit: openFileLimit, launcher: launcher
        )
        try await process.launch()
        return process
    }

    private init(
        port: Int, folder: String, arguments: [String], environment: [String: String], openFileLimit: Int?,
        launcher: @escaping @Sendable ([String]) -> [String]
    ) {
        self.port = port
        self.folder = folder
        self.currentArguments = NIOLockedValueBox(arguments)
        self.environment = environment
        self.openFileLimit = openFileLimit
        self.launcher = launcher
    }

    /// Starts the daemon again on the same folder and port with other `arguments`.
    func launch(with arguments: [String]) async throws {
        currentArguments.withLockedValue { $0 = arguments }
        try await launch()
    }

    /// Starts the daemon (again, after `kill`) and waits until it listens.
    func launch() async throws {
        let offset = (try? FileManager.default.attributesOfItem(atPath: logFile)[.size] as? Int) ?? 0
        // An ops port of its own (a free one) unless the test names one.
        let ops = arguments.contains("--ops-listen") ? [] : ["--ops-listen", "127.0.0.1:0"]
        var command = [LicensedBinaryTests.binary, "--data-dir", dataDirectory, "--listen", "127.0.0.1:\(port)", "--log-level", ProcessInfo.processInfo.environment["FAULT_LOG_LEVEL"] ?? "warning"] + ops + arguments
        if let openFileLimit {
            // The shell sets the limit (soft and hard) and becomes the daemon.
            command = ["/bin/sh", "-c", "ulimit -n \(openFileLimit) && exec \"$0\" \"$@\""] + command
        }
        let process = try ChildProcess(launcher(command), logFile: logFile, environment: environment.merging(["LICENSED_BOOTSTRAP_API_KEY": Self.operatorKey]) { $1 })
        child.withLockedValue { $0 = process }
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if log(from: offset).contains("listening on") { return }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestServerError("licensed did not start: \(log(from: offset))")
    }

    /// The log written since byte `offset`.
    func log(from offset: Int = 0) -> String {
        guard let data = FileManager.default.contents(atPath: logFile), data.count > offset else { return "" }
        return String(decoding: data[offset...], as: UTF8.self)
    }

    /// Sends `signal` and waits (without blocking a thread) until the process has exited;
    /// returns how long that took, or `nil` if it still ran after `limit` (it is then killed).
    @discardableResult
    func stop(signal: Int32, within limit: Duration = .seconds(30)) async -> Duration? {
        guard let process = child.withLockedValue({ $0 }) else { return .zero }
        let started = ContinuousClock.now
        kill(process.pid, signal)
        while started.duration(to: .now) < limit {
            if !process.isRunning {
                child.withLockedValue { $0 = nil }
                return started.duration(to: .now)
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
        process.stop(signal: SIGKILL)
        child.withLockedValue { $0 = nil }
        return nil
    }

    /// A connection to this daemon (not signed in).
    func connect(callTimeout: Duration = .seconds(15)) async throws -> LicenseConnection {
        var endpoint = LicenseServerEndpoint(host: "127.0.0.1", port: port, caFile: dataDirectory + "/tls/ca.pem")
        endpoint.callTimeout = callTimeout
        endpoint.connectTimeout = .seconds(5)
        return try await LicenseConnection.connect(to: endpoint)
    }

    /// A connection signed in with `apiKey`.
    func connect(apiKey: String, callTimeout: Duration = .seconds(15)) async throws -> LicenseConnection {
        let connection = try await connect(callTimeout: callTimeout)
        _ = try await connection.hello(apiKey: apiKey)
        return connection
    }

    /// Creates tenant `t-<license>`, the license and `users` users through this daemon; returns
    /// the users' API keys.
    func setUpLicense(_ license: String, seats: UInt32, users: Int, leaseTTL: UInt32, heartbeat: UInt32) async throws -> [String] {
        let admin = try await connect(apiKey: Self.operatorKey)
        let keys = try await admin.setUpLicense(license, seats: seats, users: users, leaseTTL: leaseTTL, heartbeat: heartbeat)
        await admin.close()
        return keys
    }

    /// A test stops its daemon at its end; one that fails (throws) earlier leaves the daemon to
    /// this: it is killed when the test lets go of it.
    deinit {
        child.withLockedValue { $0?.stop(signal: SIGKILL) }
        if let keep = ProcessInfo.processInfo.environment["FAULT_KEEP_LOGS"] {
            try? FileManager.default.copyItem(atPath: logFile, toPath: keep + "/licensed-\(port).log")
        }
        try? FileManager.default.removeItem(atPath: folder)
    }
}
