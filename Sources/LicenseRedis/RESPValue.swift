/// One Redis reply, as hiredis's reader parsed it.
public enum RESPValue: Hashable, Sendable {
    /// A status reply such as `OK`.
    case simpleString(String)
    /// An error reply: the server's message, e.g. `NOSCRIPT No matching script.`
    case error(String)
    case integer(Int64)
    case bulkString([UInt8])
    /// A nil bulk string or nil array.
    case null
    indirect case array([RESPValue])

    /// The text of a status or bulk string reply.
    public var string: String? {
        switch self {
        case .simpleString(let text): text
        case .bulkString(let bytes): String(decoding: bytes, as: UTF8.self)
        default: nil
        }
    }

    /// The value of an integer reply, or of a string reply holding a decimal integer.
    public var int64: Int64? {
        switch self {
        case .integer(let value): value
        default: string.flatMap { Int64($0) }
        }
    }
}

/// A command: its name and arguments, sent as a RESP array of bulk strings.
public struct RedisCommand: Sendable, Hashable {
    public var arguments: [String]

    public init(_ arguments: [String]) {
        self.arguments = arguments
    }

    public init(_ arguments: String...) {
        self.arguments = arguments
    }

    /// The command's name, for logs and metrics (never its arguments, which may hold secrets).
    public var name: String { arguments.first ?? "" }
}
