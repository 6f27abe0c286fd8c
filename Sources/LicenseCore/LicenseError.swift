/// The one error type of the license domain: an opaque code (mapped to a wire status code in one
/// place), a stable machine-readable reason, and a message safe to show to anyone.
///
/// The message never contains a credential, token or key; `description` is the message.
public struct LicenseError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The class of failure. New codes can be added without breaking callers.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String, Hashable, Sendable {
            case invalidArgument = "INVALID_ARGUMENT"
            case unauthenticated = "UNAUTHENTICATED"
            case permissionDenied = "PERMISSION_DENIED"
            case notFound = "NOT_FOUND"
            case alreadyExists = "ALREADY_EXISTS"
            case resourceExhausted = "RESOURCE_EXHAUSTED"
            case failedPrecondition = "FAILED_PRECONDITION"
            case unavailable = "UNAVAILABLE"
            case deadlineExceeded = "DEADLINE_EXCEEDED"
            case unimplemented = "UNIMPLEMENTED"
            case `internal` = "INTERNAL"
        }

        fileprivate let base: Base
        fileprivate init(_ base: Base) { self.base = base }

        /// The request is malformed; retrying it unchanged fails again.
        public static let invalidArgument = Code(.invalidArgument)
        /// No valid credential was presented.
        public static let unauthenticated = Code(.unauthenticated)
        /// The principal may not perform this call.
        public static let permissionDenied = Code(.permissionDenied)
        /// The named entity does not exist, or belongs to another tenant.
        public static let notFound = Code(.notFound)
        /// The entity to be created exists already.
        public static let alreadyExists = Code(.alreadyExists)
        /// A limit was reached: seats, frame size, in-flight requests.
        public static let resourceExhausted = Code(.resourceExhausted)
        /// The system is not in a state that allows the call (license expired, suspended…).
        public static let failedPrecondition = Code(.failedPrecondition)
        /// A backend is unreachable; the call may be retried.
        public static let unavailable = Code(.unavailable)
        /// The call did not finish in the time allowed.
        public static let deadlineExceeded = Code(.deadlineExceeded)
        /// The call is not known to this server.
        public static let unimplemented = Code(.unimplemented)
        /// A bug or an unexpected failure inside the server.
        public static let `internal` = Code(.internal)

        /// The gRPC-style name of the code, e.g. `RESOURCE_EXHAUSTED`.
        public var name: String { base.rawValue }
        public var description: String { base.rawValue }
    }

    /// The class of failure.
    public var code: Code
    /// A stable machine-readable reason such as `NO_SEATS`.
    public var reason: Reason
    /// A human-readable explanation, safe to log and to show.
    public var message: String
    /// When set, the earliest time after which a retry may succeed.
    public var retryAfter: Duration?
    /// Machine-readable facts about the failure (e.g. `seats_total` with `NO_SEATS`); safe to show.
    public var details: [String: String]

    /// Creates an error.
    public init(_ code: Code, _ reason: Reason, _ message: String, retryAfter: Duration? = nil, details: [String: String] = [:]) {
        self.code = code
        self.reason = reason
        self.message = message
        self.retryAfter = retryAfter
        self.details = details
    }

    public var description: String { "\(code.name) \(reason.rawValue): \(message)" }
}

extension LicenseError {
    /// A stable, machine-readable reason carried on the wire next to the status code.
    public struct Reason: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public static let noSeats = Reason(rawValue: "NO_SEATS")
        public static let licenseExpired = Reason(rawValue: "LICENSE_EXPIRED")
        public static let licenseNotYetValid = Reason(rawValue: "LICENSE_NOT_YET_VALID")
        public static let licenseSuspended = Reason(rawValue: "LICENSE_SUSPENDED")
        public static let licenseUnknown = Reason(rawValue: "LICENSE_UNKNOWN")
        public static let tenantUnknown = Reason(rawValue: "TENANT_UNKNOWN")
        public static let tenantSuspended = Reason(rawValue: "TENANT_SUSPENDED")
        public static let userUnknown = Reason(rawValue: "USER_UNKNOWN")
        public static let sessionUnknown = Reason(rawValue: "SESSION_UNKNOWN")
        public static let apiKeyUnknown = Reason(rawValue: "API_KEY_UNKNOWN")
        /// The ID token is valid but no user of any tenant matches it (and none may be created).
        public static let identityNotProvisioned = Reason(rawValue: "IDENTITY_NOT_PROVISIONED")
        /// The identity provider's keys could not be fetched; retry later.
        public static let identityProviderUnavailable = Reason(rawValue: "IDENTITY_PROVIDER_UNAVAILABLE")
        public static let sessionEnded = Reason(rawValue: "SESSION_ENDED")
        public static let sessionRevoked = Reason(rawValue: "SESSION_REVOKED")
        public static let leaseLapsed = Reason(rawValue: "LEASE_LAPSED")
        public static let tokenExpired = Reason(rawValue: "TOKEN_EXPIRED")
        public static let invalidCredential = Reason(rawValue: "INVALID_CREDENTIAL")
        public static let credentialRequired = Reason(rawValue: "CREDENTIAL_REQUIRED")
        public static let unsupportedCredential = Reason(rawValue: "UNSUPPORTED_CREDENTIAL")
        public static let helloRequired = Reason(rawValue: "HELLO_REQUIRED")
        public static let protocolVersion = Reason(rawValue: "UNSUPPORTED_PROTOCOL_VERSION")
        public static let forbidden = Reason(rawValue: "FORBIDDEN")
        public static let invalidRequest = Reason(rawValue: "INVALID_REQUEST")
        public static let alreadyExists = Reason(rawValue: "ALREADY_EXISTS")
        public static let frameTooLarge = Reason(rawValue: "FRAME_TOO_LARGE")
        public static let malformedFrame = Reason(rawValue: "MALFORMED_FRAME")
        public static let frameTimeout = Reason(rawValue: "FRAME_TIMEOUT")
        public static let idleTimeout = Reason(rawValue: "IDLE_TIMEOUT")
        public static let signInTimeout = Reason(rawValue: "SIGN_IN_TIMEOUT")
        public static let tooManyRefusedHellos = Reason(rawValue: "TOO_MANY_REFUSED_HELLOS")
        /// Too many refused sign-ins from this address (or for this API key): wait `retry_after_ms`.
        public static let signInThrottled = Reason(rawValue: "SIGN_IN_THROTTLED")
        /// The server has as many connections as it allows, in total or from this address.
        public static let tooManyConnections = Reason(rawValue: "TOO_MANY_CONNECTIONS")
        /// The answer would not fit in a frame the client accepts (even one item of a page).
        public static let answerTooLarge = Reason(rawValue: "ANSWER_TOO_LARGE")
        public static let tlsRequired = Reason(rawValue: "TLS_REQUIRED")
        public static let unknownCall = Reason(rawValue: "UNKNOWN_CALL")
        public static let duplicateRequestID = Reason(rawValue: "DUPLICATE_REQUEST_ID")
        public static let tooManyInFlight = Reason(rawValue: "TOO_MANY_IN_FLIGHT")
        public static let deadlineExceeded = Reason(rawValue: "DEADLINE_EXCEEDED")
        public static let shuttingDown = Reason(rawValue: "SHUTTING_DOWN")
        public static let backendUnavailable = Reason(rawValue: "BACKEND_UNAVAILABLE")
        /// The lease token could not be signed (the key's HSM or KMS is slow, gone or failing).
        public static let signingUnavailable = Reason(rawValue: "SIGNING_UNAVAILABLE")
        public static let internalError = Reason(rawValue: "INTERNAL")
    }
}

extension LicenseError {
    static func invalid(_ message: String) -> LicenseError {
        LicenseError(.invalidArgument, .invalidRequest, message)
    }

    /// NOT_FOUND naming the id asked for (the caller's own input: naming it reveals nothing,
    /// and another tenant's entities answer the same as missing ones).
    public static func licenseNotFound(_ id: LicenseID) -> LicenseError {
        LicenseError(.notFound, .licenseUnknown, "license '\(id.rawValue)' not found")
    }

    public static func sessionNotFound(_ id: SessionID) -> LicenseError {
        LicenseError(.notFound, .sessionUnknown, "session '\(id.rawValue)' not found")
    }

    public static func tenantNotFound(_ id: TenantID) -> LicenseError {
        LicenseError(.notFound, .tenantUnknown, "tenant '\(id.rawValue)' not found")
    }

    public static func userNotFound(_ id: UserID) -> LicenseError {
        LicenseError(.notFound, .userUnknown, "user '\(id.rawValue)' not found")
    }

    /// NOT_FOUND for a signing key id the repository lacks.
    public static func signingKeyNotFound(_ keyID: String) -> LicenseError {
        LicenseError(.notFound, .invalidRequest, "signing key '\(keyID)' not found")
    }

    /// ALREADY_EXISTS naming the kind of entity and its id.
    public static func alreadyExists(_ what: String, _ id: String) -> LicenseError {
        LicenseError(.alreadyExists, .alreadyExists, "\(what) '\(id)' already exists")
    }

    static func forbidden(_ message: String) -> LicenseError {
        LicenseError(.permissionDenied, .forbidden, message)
    }

    /// Wraps a backend failure without exposing its text (which may contain connection strings).
    public static func backendUnavailable(_ what: String) -> LicenseError {
        LicenseError(.unavailable, .backendUnavailable, "\(what) is unavailable", retryAfter: .seconds(1))
    }
}
