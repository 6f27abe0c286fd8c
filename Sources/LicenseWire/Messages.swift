import LicenseCore
import NIOCore
import SwiftProtobuf

/// A message the frame encoder can serialise (every generated type).
public protocol SwiftProtobufEncodable {
    func encodedBytes() throws -> [UInt8]
}

extension ServerFrame: SwiftProtobufEncodable {
    public func encodedBytes() throws -> [UInt8] { try serializedBytes() }
}

extension ClientFrame: SwiftProtobufEncodable {
    public func encodedBytes() throws -> [UInt8] { try serializedBytes() }
}

extension ClientFrame {
    /// Decodes a frame body; a body that is not a `ClientFrame` is `MALFORMED_FRAME`.
    public static func decode(_ body: ByteBuffer) throws -> ClientFrame {
        do {
            return try ClientFrame(serializedBytes: Array(body.readableBytesView))
        } catch {
            throw LicenseError(.invalidArgument, .malformedFrame, "the frame is not a valid ClientFrame")
        }
    }
}

extension ServerFrame {
    /// Decodes a frame body; a body that is not a `ServerFrame` is `MALFORMED_FRAME`.
    public static func decode(_ body: ByteBuffer) throws -> ServerFrame {
        do {
            return try ServerFrame(serializedBytes: Array(body.readableBytesView))
        } catch {
            throw LicenseError(.invalidArgument, .malformedFrame, "the frame is not a valid ServerFrame")
        }
    }

    /// An error answer to request `id` (0 for a connection-level error).
    public static func failure(id: UInt64, _ error: LicenseError) -> ServerFrame {
        var frame = ServerFrame()
        frame.id = id
        frame.status = WireStatus(error)
        return frame
    }

    /// A server notice asking the client to reconnect elsewhere.
    public static func goingAway(reason: String, reconnectAfter: Duration) -> ServerFrame {
        var notice = Coditect_License_V1_Notice()
        notice.goingAway.reason = reason
        notice.goingAway.reconnectAfterMs = UInt64(max(0, reconnectAfter.milliseconds))
        var frame = ServerFrame()
        frame.status = WireStatus()
        frame.notice = notice
        return frame
    }

    /// A server notice that a session was revoked.
    public static func sessionRevoked(_ sessionID: String) -> ServerFrame {
        var notice = Coditect_License_V1_Notice()
        notice.sessionRevoked.sessionID = sessionID
        var frame = ServerFrame()
        frame.status = WireStatus()
        frame.notice = notice
        return frame
    }
}

extension WireStatus {
    private static let codes: [String: WireStatus.Code] = Dictionary(
        uniqueKeysWithValues: WireStatus.Code.allCases.map { (Self.name(of: $0), $0) }
    )

    /// The gRPC-style name of a code, e.g. `RESOURCE_EXHAUSTED`.
    public static func name(of code: WireStatus.Code) -> String {
        switch code {
        case .ok: "OK"
        case .cancelled: "CANCELLED"
        case .unknown: "UNKNOWN"
        case .invalidArgument: "INVALID_ARGUMENT"
        case .deadlineExceeded: "DEADLINE_EXCEEDED"
        case .notFound: "NOT_FOUND"
        case .alreadyExists: "ALREADY_EXISTS"
        case .permissionDenied: "PERMISSION_DENIED"
        case .resourceExhausted: "RESOURCE_EXHAUSTED"
        case .failedPrecondition: "FAILED_PRECONDITION"
        case .aborted: "ABORTED"
        case .outOfRange: "OUT_OF_RANGE"
        case .unimplemented: "UNIMPLEMENTED"
        case .internal: "INTERNAL"
        case .unavailable: "UNAVAILABLE"
        case .dataLoss: "DATA_LOSS"
        case .unauthenticated: "UNAUTHENTICATED"
        case .UNRECOGNIZED(let value): "CODE_\(value)"
        }
    }

    /// The wire status of a domain error: the one place codes are mapped.
    public init(_ error: LicenseError) {
        self.init()
        code = Self.codes[error.code.name] ?? .internal
        reason = error.reason.rawValue
        message = error.message
        if let retry = error.retryAfter { retryAfterMs = UInt64(max(0, retry.milliseconds)) }
        details = error.details
    }

    /// Whether the status is OK.
    public var isOK: Bool { code == .ok }
}
