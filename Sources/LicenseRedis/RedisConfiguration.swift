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
    /// With Redis Sentinel: the sentinels to ask for the primary of `sentinelService`; `host`
    /// and `port` are then unused. Empty: `host` and `port` name the server itself.
    public var sentinels: [RedisSentinelAddress] = []
    /// The name the sentinels monitor the primary under (`sentinel monitor NAME …`).
    public var sentinelService: String = ""
    /// The password of the sentinels themselves, when they require one.
    public var sentinelPassword: String?
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

    /// Parses `redis://[user[:password]@]host[:port][/db][?cluster=true&prefix=NAME]`, or, to
    /// follow the primary that Redis Sentinel names,
    /// `redis+sentinel://[user[:password]@]sentinel1:26379[,sentinel2:26379…]/SERVICE[/db][?sentinel_password=…]`.
    public init(url text: String) throws {
        if text.lowercased().hasPrefix("redis+sentinel://") {
            try self.init(sentinelURL: text)
            return
        }
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
        try apply(url.queryItems ?? [])
    }

    /// Parses the Sentinel form: several `host:port` (not one URL host), then the service name.
    private init(sentinelURL text: String) throws {
        let rest = text.dropFirst("redis+sentinel://".count)
        let (main, query) = rest.firstIndex(of: "?").map { (rest[..<$0], String(rest[rest.index(after: $0)...])) } ?? (rest, "")
        var authority = main.prefix { $0 != "/" }
        let path = main.dropFirst(authority.count).split(separator: "/", omittingEmptySubsequences: true)
        self.init()
        if let at = authority.lastIndex(of: "@") {
            let credentials = authority[..<at]
            authority = authority[authority.index(after: at)...]
            let parts = credentials.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            let user = (parts.first.map(String.init) ?? "").removingPercentEncoding ?? ""
            if !user.isEmpty { username = user }
            if parts.count == 2 { password = String(parts[1]).removingPercentEncoding }
        }
        sentinels = try authority.split(separator: ",").map { try RedisSentinelAddress(parsing: String($0)) }
        guard !sentinels.isEmpty else { throw RedisClientError(.configuration, "the Redis Sentinel URL names no sentinel (expected redis+sentinel://host:26379/SERVICE)") }
        guard let service = path.first, !service.isEmpty else {
            throw RedisClientError(.configuration, "the Redis Sentinel URL names no service (expected redis+sentinel://host:26379/SERVICE)")
        }
        sentinelService = String(service).removingPercentEncoding ?? String(service)
        if path.count > 1 {
            guard path.count == 2, let db = Int(path[1]), db >= 0 else { throw RedisClientError(.configuration, "the Redis Sentinel URL's path must be /SERVICE or /SERVICE/db") }
            database = db
        }
        var items = URLComponents(string: "x:?" + query)?.queryItems ?? []
        if let index = items.firstIndex(where: { $0.name == "sentinel_password" }) {
            sentinelPassword = items[index].value
            items.remove(at: index)
        }
        try apply(items)
        if cluster { throw RedisClientError(.configuration, "Redis Sentinel and Redis Cluster exclude each other (a cluster fails over by itself)") }
    }

    private mutating func apply(_ items: [URLQueryItem]) throws {
        for item in items {
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
                throw RedisClientError(.configuration, "unknown Redis URL option '\(item.name)' (known: cluster, prefix, timeout_ms, connections, and sentinel_password with redis+sentinel://)")
            }
        }
        if cluster && database != 0 { throw RedisClientError(.configuration, "Redis Cluster has only database 0") }
        guard !keyPrefix.contains("{") && !keyPrefix.contains("}") else {
            throw RedisClientError(.configuration, "the key prefix may not contain '{' or '}' (they mark the hash tag)")
        }
    }
}

/// One sentinel's address.
public struct RedisSentinelAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int = 26_379) {
        self.host = host
        self.port = port
    }

    /// Parses `host[:port]` (`[v6]:port` for IPv6); the port defaults to 26379.
    init(parsing text: String) throws {
        var host = text
        var port = 26_379
        if let colon = text.lastIndex(of: ":"), !text.hasSuffix("]") {
            guard let value = Int(text[text.index(after: colon)...]), (1...65_535).contains(value) else {
                throw RedisClientError(.configuration, "the sentinel address '\(text)' has no valid port")
            }
            host = String(text[..<colon])
            port = value
        }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw RedisClientError(.configuration, "a sentinel address has no host") }
        self.init(host: host, port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
