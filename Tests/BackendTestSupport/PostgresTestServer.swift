#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LicensePostgres
import Logging
import NIOConcurrencyHelpers
import PostgresNIO

/// A real PostgreSQL 15 server on a free loopback port in a temporary folder, run as the
/// `postgres` user when the tests run as root (Postgres refuses to run as root).
///
/// The daemon's role `licensed` is an ordinary role (not a superuser), so row-level security
/// applies to it exactly as in production.
public final class PostgresTestServer: Sendable {
    public static let daemonRole = "licensed"
    public let port: Int
    public let directory: String
    private let process: NIOLockedValueBox<ChildProcess?>
    private let databases = NIOLockedValueBox(0)

    /// Starts a server of its own (for tests that stop it).
    public static func start() async throws -> PostgresTestServer {
        let template = try await PostgresTemplate.shared.directory()
        let directory = try makeTemporaryDirectory("postgres")
        try run(["cp", "-a", template + "/.", directory])
        try chownToPostgres(directory)
        let server = PostgresTestServer(port: try FreePort.next(), directory: directory)
        try await server.launch()
        try await server.superuser("CREATE ROLE \(daemonRole) LOGIN PASSWORD 'licensed' NOSUPERUSER NOBYPASSRLS")
        return server
    }

    /// One server shared by every test in this process; stopped when the process exits.
    public static func shared() async throws -> PostgresTestServer {
        try await SharedPostgres.once.value()
    }

    private init(port: Int, directory: String) {
        self.port = port
        self.directory = directory
        self.process = NIOLockedValueBox(nil)
    }

    var pid: pid_t? { process.withLockedValue { $0?.pid } }

    /// Starts (or restarts after `stop()`) the server and waits until it accepts connections.
    public func launch() async throws {
        let child = try ChildProcess([
            "postgres", "-D", directory, "-p", String(port), "-k", directory,
            "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300", "-c", "fsync=off",
        ], logFile: directory + "/postgres.log", asUser: "postgres")
        process.withLockedValue { $0 = child }
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if (try? await superuser("SELECT 1")) != nil { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestServerError("postgres on port \(port) did not start; see \(directory)/postgres.log")
    }

    /// Stops the server by pid (fast shutdown: open connections are closed).
    public func stop() {
        process.withLockedValue { process in
            process?.stop(signal: SIGINT)
            process = nil
        }
    }

    /// Creates an empty database owned by the daemon's role and returns settings for it.
    public func createDatabase() async throws -> PostgresSettings {
        let number = databases.withLockedValue { value in
            value += 1
            return value
        }
        let name = "licenses_\(number)_\(UInt32.random(in: 0...UInt32.max))"
        try await superuser("CREATE DATABASE \(name) OWNER \(Self.daemonRole)")
        var settings = PostgresSettings(host: "127.0.0.1", port: port, username: Self.daemonRole, password: "licensed", database: name)
        settings.tls = .disable
        return settings
    }

    /// The URL `licensed --postgres-url` takes for `settings`.
    public static func url(_ settings: PostgresSettings) -> String {
        "postgres://\(settings.username):\(settings.password ?? "")@\(settings.host):\(settings.port)/\(settings.database)?sslmode=disable"
    }

    /// Runs one statement as the superuser, or as `user` (fixtures, assertions, fault injection).
    @discardableResult
    public func superuser(_ sql: String, database: String = "postgres", user: String = "postgres") async throws -> [PostgresRow] {
        var logger = Logger(label: "test.postgres")
        logger.logLevel = .critical
        let connection = try await connect(database: database, user: user, id: 1, logger: logger)
        do {
            let rows = try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger).collect()
            try await connection.close()
            return rows
        } catch {
            try? await connection.close()
            throw error
        }
    }

    /// Opens a superuser session in `database` that takes `LOCK TABLE table IN mode` in an open
    /// transaction and keeps it (fault injection: the daemon's statements on that table wait).
    /// The caller ends the lock with `COMMIT` and closes the connection, also when it fails.
    public func holdLock(on table: String, mode: String, database: String) async throws -> PostgresConnection {
        let logger = Logger(label: "test.lock")
        let connection = try await connect(database: database, user: "postgres", id: 7, logger: logger)
        do {
            try await connection.query("BEGIN", logger: logger)
            try await connection.query(PostgresQuery(unsafeSQL: "LOCK TABLE \(table) IN \(mode) MODE"), logger: logger)
            return connection
        } catch {
            try? await connection.close()
            throw error
        }
    }

    /// A connection of `user` to `database` (local connections are trusted, so no password).
    private func connect(database: String, user: String, id: Int, logger: Logger) async throws -> PostgresConnection {
        let configuration = PostgresConnection.Configuration(host: "127.0.0.1", port: port, username: user, password: nil, database: database, tls: .disable)
        return try await PostgresConnection.connect(configuration: configuration, id: id, logger: logger)
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    static func run(_ arguments: [String], asUser user: String? = nil) throws {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("cmd-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        let child = try ChildProcess(arguments, logFile: log, asUser: user)
        var status: Int32 = 0
        waitpid(child.pid, &status, 0)
        child.markReaped()
        guard status == 0 else {
            let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw TestServerError("\(arguments.joined(separator: " ")) failed: \(output)")
        }
    }

    static func chownToPostgres(_ path: String) throws {
        guard geteuid() == 0 else { return }
        try run(["chown", "-R", "postgres:postgres", path])
        chmod(path, 0o700)
    }
}

/// initdb is slow (seconds); it runs once per test process and each server copies the result.
actor PostgresTemplate {
    static let shared = PostgresTemplate()
    private var path: String?

    func directory() throws -> String {
        if let path { return path }
        let directory = try makeTemporaryDirectory("postgres-template")
        try PostgresTestServer.chownToPostgres(directory)
        try PostgresTestServer.run(["initdb", "-D", directory, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"], asUser: "postgres")
        path = directory
        ExitCleanup.register(pid: nil, directory: directory)
        return directory
    }
}

/// The process-wide shared server, stopped by pid at exit (SIGQUIT: immediate shutdown).
enum SharedPostgres {
    static let once = AsyncOnce<PostgresTestServer> {
        let server = try await PostgresTestServer.start()
        ExitCleanup.register(pid: server.pid, signal: SIGQUIT, directory: server.directory)
        return server
    }
}

extension PostgresTestServer {
    /// Runs `body` with a Postgres repository whose pool and subscription run meanwhile.
    public static func withRepository<T: Sendable>(
        _ settings: PostgresSettings, _ body: @Sendable (PostgresLicenseRepository) async throws -> T
    ) async throws -> T {
        var logger = Logger(label: "test.postgres")
        logger.logLevel = .critical
        return try await PostgresLicenseRepository(settings: settings, logger: logger).withRunning(body)
    }
}
