/// One Redis reply, as `RESPDecoder` parsed it (RESP2, and the RESP3 types Redis 7 can send).
public enum RESPValue: Hashable, Sendable {
    /// A status reply such as `OK`.
    case simpleString(String)
    /// An error reply (simple or RESP3 blob error): the server's message, e.g. `NOSCRIPT No matching script.`
    case error(String)
    case integer(Int64)
    /// A bulk string; a RESP3 verbatim string arrives here too, without its three-letter format.
    case bulkString([UInt8])
    /// A nil bulk string, a nil array or the RESP3 null.
    case null
    indirect case array([RESPValue])
    /// RESP3 boolean (`#t` / `#f`).
    case boolean(Bool)
    /// RESP3 double, `inf`, `-inf` and `nan` included.
    case double(Double)
    /// RESP3 big number, as the decimal digits Redis sent.
    case bigNumber(String)
    /// RESP3 map, in the order Redis sent its entries.
    indirect case map([RESPMapEntry])
    /// RESP3 set, in the order Redis sent its members.
    indirect case set([RESPValue])
    /// RESP3 out-of-band push (pub/sub, client tracking). Never the answer to a command.
    indirect case push([RESPValue])

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

/// One key and value of a RESP3 map reply.
public struct RESPMapEntry: Hashable, Sendable {
    public var key: RESPValue
    public var value: RESPValue

    public init(key: RESPValue, value: RESPValue) {
        self.key = key
        self.value = value
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
