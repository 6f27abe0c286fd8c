/// A failure talking to Redis. Messages never include command arguments or credentials.
public struct RedisClientError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What kind of failure: callers map all of them to UNAVAILABLE except `server`.
    public struct Code: RawRepresentable, Hashable, Sendable {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        /// No connection could be made, or the node is in its reconnect backoff.
        public static let unreachable = Code(rawValue: "REDIS_UNREACHABLE")
        /// The connection closed with the command unanswered.
        public static let connectionClosed = Code(rawValue: "REDIS_CONNECTION_CLOSED")
        /// No answer within the command timeout; the connection is closed.
        public static let timeout = Code(rawValue: "REDIS_TIMEOUT")
        /// The byte stream was not valid RESP.
        public static let protocolError = Code(rawValue: "REDIS_PROTOCOL_ERROR")
        /// Redis answered with an error reply.
        public static let server = Code(rawValue: "REDIS_ERROR_REPLY")
        /// The answer had a shape the caller did not expect.
        public static let unexpectedReply = Code(rawValue: "REDIS_UNEXPECTED_REPLY")
        /// A Redis URL or option was invalid.
        public static let configuration = Code(rawValue: "REDIS_CONFIGURATION")
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
