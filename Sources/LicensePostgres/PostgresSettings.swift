import Foundation
import LicenseCore
import NIOSSL
import PostgresNIO

/// How to reach Postgres: parsed from a URL such as
/// `postgres://licensed:secret@db:5432/licenses?sslmode=require`.
public struct PostgresSettings: Sendable {
    public enum TLSMode: String, Sendable {
        case disable, prefer, require
    }

    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String
    public var tls: TLSMode = .prefer
    /// Connections in the pool (reads, the group-commit writer and the LISTEN connection).
    public var maximumConnections: Int = 16
    /// Group-commit lanes: writes are spread over this many connections, each committing its
    /// own batches. Default 2: more lanes make smaller batches and more WAL flushes
    /// (docs/benchmarks.md, issue 19).
    public var writers: Int = 2
    /// Postgres cancels any statement running longer than this (`statement_timeout`).
    public var statementTimeout: Duration = .seconds(5)
    /// How long a repository call may take in all (waiting for a connection included) before it
    /// fails as UNAVAILABLE.
    public var operationTimeout: Duration = .seconds(5)
    public var connectTimeout: Duration = .seconds(3)

    public init(host: String, port: Int = 5432, username: String, password: String? = nil, database: String) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
    }

    /// Parses `postgres://user[:password]@host[:port]/database[?sslmode=disable|prefer|require&pool=N&writers=N&statement_timeout_ms=N&timeout_ms=N]`.
    public init(url text: String) throws {
        func invalid(_ message: String) -> LicenseError { LicenseError(.invalidArgument, .invalidRequest, "the Postgres URL " + message) }
        guard let url = URLComponents(string: text), let scheme = url.scheme?.lowercased() else {
            throw invalid("is not a URL (expected postgres://user@host:5432/database)")
        }
        guard scheme == "postgres" || scheme == "postgresql" else { throw invalid("must start with postgres://") }
        guard let host = url.host, !host.isEmpty else { throw invalid("has no host") }
        guard let user = url.user, !user.isEmpty else { throw invalid("has no user name") }
        let database = url.path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        guard !database.isEmpty else { throw invalid("has no database name") }
        self.init(host: host, port: url.port ?? 5432, username: user, password: url.password, database: database)
        guard (1...65_535).contains(port) else { throw invalid("has a port outside 1-65535") }
        for item in url.queryItems ?? [] {
            func positive() throws -> Int {
                guard let value = item.value.flatMap(Int.init), value > 0 else { throw invalid("option \(item.name) must be a positive number") }
                return value
            }
            switch item.name {
            case "sslmode":
                guard let mode = item.value.flatMap(TLSMode.init(rawValue:)) else { throw invalid("option sslmode must be disable, prefer or require") }
                tls = mode
            case "pool": maximumConnections = try positive()
            case "writers": writers = try positive()
            case "statement_timeout_ms": statementTimeout = .milliseconds(try positive())
            case "timeout_ms": operationTimeout = .milliseconds(try positive())
            default: throw invalid("has an unknown option '\(item.name)' (known: sslmode, pool, writers, statement_timeout_ms, timeout_ms)")
            }
        }
    }

    /// The configuration of one connection outside the pool: the breaker's probe.
    func probeConfiguration() throws -> PostgresConnection.Configuration {
        let mode: PostgresConnection.Configuration.TLS = switch tls {
        case .disable: .disable
        case .prefer: .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
        case .require: .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
        }
        var configuration = PostgresConnection.Configuration(host: host, port: port, username: username, password: password, database: database, tls: mode)
        configuration.options.connectTimeout = TimeAmount(connectTimeout)
        return configuration
    }

    /// The client configuration postgres-nio needs.
    func clientConfiguration() -> PostgresClient.Configuration {
        let mode: PostgresClient.Configuration.TLS = switch tls {
        case .disable: .disable
        case .prefer: .prefer(.makeClientConfiguration())
        case .require: .require(.makeClientConfiguration())
        }
        var configuration = PostgresClient.Configuration(host: host, port: port, username: username, password: password, database: database, tls: mode)
        configuration.options.maximumConnections = maximumConnections
        configuration.options.connectTimeout = connectTimeout
        configuration.options.additionalStartupParameters = [
            ("statement_timeout", String(statementTimeout.milliseconds)),
            ("application_name", "licensed"),
        ]
        return configuration
    }
}
