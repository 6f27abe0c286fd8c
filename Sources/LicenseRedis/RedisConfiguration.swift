import Foundation

/// How to reach Redis: parsed from a URL such as `redis://:secret@10.0.0.5:6379/0`.
///
/// `rediss://` (TLS) is refused with a clear error for now; `?cluster=true` (or the `cluster`
/// property) makes the client discover a Redis Cluster's slot map from the given node.
public struct RedisConfiguration: Sendable, Hashable {
    public var host: String
    public var port: Int
    public var username: String?
    public var password: String?
    /// The logical database (standalone Redis only; Redis Cluster has only database 0).
    public var database: Int
    /// Whether the nodes form a Redis Cluster: commands are routed by hash slot.
    public var cluster: Bool
    /// Connections per Redis node; concurrent commands are pipelined on each.
    public var connectionsPerNode: Int = 4
    /// How long a command may wait for its answer before it fails (and its connection closes).
    public var commandTimeout: Duration = .milliseconds(500)
    /// How long a connection attempt may take.
    public var connectTimeout: Duration = .milliseconds(500)
    /// The first pause before reconnecting to a node that refused; doubled up to `maximumBackoff`, with jitter.
    public var initialBackoff: Duration = .milliseconds(50)
    public var maximumBackoff: Duration = .seconds(5)
    /// Prefix of every key, so several deployments can share one Redis.
    public var keyPrefix: String = "coditect:"

    public init(host: String = "127.0.0.1", port: Int = 6379, username: String? = nil, password: String? = nil, database: Int = 0, cluster: Bool = false) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.cluster = cluster
    }

    /// Parses `redis://[user[:password]@]host[:port][/db][?cluster=true&prefix=NAME]`.
    public init(url text: String) throws {
        guard let url = URLComponents(string: text), let scheme = url.scheme?.lowercased() else {
            throw RedisClientError(.configuration, "the Redis URL is not a URL (expected redis://host:port)")
        }
        if scheme == "rediss" {
            throw RedisClientError(.configuration, "rediss:// (TLS to Redis) is not supported yet; use redis:// on a private network")
        }
        guard scheme == "redis" else {
            throw RedisClientError(.configuration, "the Redis URL must start with redis:// (got \(scheme)://)")
        }
        guard let host = url.host, !host.isEmpty else { throw RedisClientError(.configuration, "the Redis URL has no host") }
        self.init(host: host, port: url.port ?? 6379)
        guard (1...65_535).contains(port) else { throw RedisClientError(.configuration, "the Redis port must be 1-65535") }
        if let user = url.user, !user.isEmpty { username = user }
        password = url.password
        let path = url.path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        if !path.isEmpty {
            guard let db = Int(path), db >= 0 else { throw RedisClientError(.configuration, "the Redis URL's path must be a database number") }
            database = db
        }
        for item in url.queryItems ?? [] {
            switch item.name {
            case "cluster":
                cluster = ["1", "true", "yes"].contains(item.value?.lowercased() ?? "true")
            case "prefix":
                keyPrefix = item.value ?? ""
            case "timeout_ms":
                guard let ms = item.value.flatMap(Int.init), ms > 0 else { throw RedisClientError(.configuration, "timeout_ms must be a positive number") }
                commandTimeout = .milliseconds(ms)
            case "connections":
                guard let n = item.value.flatMap(Int.init), (1...64).contains(n) else { throw RedisClientError(.configuration, "connections must be 1-64") }
                connectionsPerNode = n
            default:
                throw RedisClientError(.configuration, "unknown Redis URL option '\(item.name)' (known: cluster, prefix, timeout_ms, connections)")
            }
        }
        if cluster && database != 0 { throw RedisClientError(.configuration, "Redis Cluster has only database 0") }
        guard !keyPrefix.contains("{") && !keyPrefix.contains("}") else {
            throw RedisClientError(.configuration, "the key prefix may not contain '{' or '}' (they mark the hash tag)")
        }
    }
}
