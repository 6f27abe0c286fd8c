import LicenseCore
import LicenseWire
import Logging
import Metrics
import NIOCore

/// Turns decoded client frames into service calls and service results (or errors) into server
/// frames. Errors become wire statuses here and nowhere else.
public struct Dispatcher: Sendable {
    public let service: LicenseService
    let authenticator: Authenticator
    let maxFrameBytes: Int
    let logger: Logger

    public init(service: LicenseService, maxFrameBytes: Int, logger: Logger = Logger(label: "coditect.license.dispatcher")) {
        self.service = service
        self.authenticator = Authenticator(repository: service.repository)
        self.maxFrameBytes = maxFrameBytes
        self.logger = logger
    }

    /// Checks a `Hello`; returns the answer and, on success, the principal.
    public func hello(id: UInt64, _ hello: Coditect_License_V1_Hello) async -> (ServerFrame, Principal?) {
        let timer = Self.timers["hello"]!
        let start = ContinuousClock.now
        defer { timer.recordNanoseconds(TimeAmount(ContinuousClock.now - start).nanoseconds) }
        do {
            guard hello.protocolVersion == WireProtocol.version else {
                throw LicenseError(.failedPrecondition, .protocolVersion, "this server speaks protocol version \(WireProtocol.version); the client sent \(hello.protocolVersion)")
            }
            let principal: Principal
            switch hello.credential {
            case .apiKey(let key):
                principal = try await authenticator.authenticate(apiKey: key)
            case .idToken:
                throw LicenseError(.unauthenticated, .unsupportedCredential, "ID-token sign-in is not enabled on this server; use an API key")
            case nil:
                throw LicenseError(.unauthenticated, .credentialRequired, "Hello must carry a credential")
            }
            var result = Coditect_License_V1_HelloResult()
            result.principal = principal.userID.rawValue
            result.tenantID = principal.tenantID?.rawValue ?? ""
            result.roles = [principal.role.rawValue]
            result.serverTimeMs = UInt64(max(0, service.clock.now().millisecondsSinceEpoch))
            result.heartbeatIntervalS = UInt32(service.configuration.defaultPolicy.heartbeatInterval.wholeSeconds)
            result.leaseTtlS = UInt32(service.configuration.defaultPolicy.leaseTTL.wholeSeconds)
            result.maxFrameBytes = UInt32(maxFrameBytes)
            var frame = ServerFrame.ok(id: id)
            frame.hello = result
            return (frame, principal)
        } catch {
            return (failure(id: id, call: "hello", error), nil)
        }
    }

    /// Runs one authenticated call.
    public func handle(_ request: ClientFrame, as principal: Principal) async -> ServerFrame {
        let call = Self.name(of: request.call)
        let start = ContinuousClock.now
        defer { Self.timers[call]?.recordNanoseconds(TimeAmount(ContinuousClock.now - start).nanoseconds) }
        do {
            var frame = ServerFrame.ok(id: request.id)
            switch request.call {
            case .acquire(let acquire):
                let outcome = try await service.acquire(AcquireCommand(
                    licenseID: acquire.licenseID, hardwareID: acquire.hardwareID,
                    idempotencyKey: acquire.idempotencyKey, clientInfo: acquire.clientInfo
                ), by: principal)
                var result = Coditect_License_V1_AcquireResult()
                result.sessionID = outcome.sessionID.rawValue
                result.leaseToken = outcome.leaseToken
                result.leaseExpiresAtMs = .wire(outcome.leaseExpiresAt)
                result.tokenExpiresAtMs = .wire(outcome.tokenExpiresAt)
                result.heartbeatIntervalS = UInt32(outcome.policy.heartbeatInterval.wholeSeconds)
                result.leaseTtlS = UInt32(outcome.policy.leaseTTL.wholeSeconds)
                result.resumed = outcome.resumed
                frame.acquire = result
            case .heartbeat(let heartbeat):
                let clientExpiry = heartbeat.tokenExpiresAtMs == 0 ? nil : Timestamp(millisecondsSinceEpoch: Int64(clamping: heartbeat.tokenExpiresAtMs))
                let outcome = try await service.heartbeat(session: heartbeat.sessionID, clientTokenExpiry: clientExpiry, by: principal)
                var result = Coditect_License_V1_HeartbeatResult()
                result.leaseExpiresAtMs = .wire(outcome.leaseExpiresAt)
                result.nextHeartbeatAtMs = .wire(outcome.nextHeartbeatAt)
                if let token = outcome.leaseToken, let expiry = outcome.tokenExpiresAt {
                    result.leaseToken = token
                    result.tokenExpiresAtMs = .wire(expiry)
                }
                frame.heartbeat = result
            case .release(let release):
                try await service.release(session: release.sessionID, by: principal)
                frame.release = Coditect_License_V1_ReleaseResult()
            case .getSigningKeys:
                var keys = Coditect_License_V1_SigningKeys()
                keys.jwksJson = service.signingKeys()
                frame.signingKeys = keys
            case .createTenant(let request):
                frame.tenant = .init(try await service.createTenant(id: request.id, name: request.name, by: principal))
            case .listTenants:
                var list = Coditect_License_V1_TenantList()
                list.tenants = try await service.listTenants(by: principal).map(Coditect_License_V1_Tenant.init)
                frame.tenants = list
            case .createLicense(let request):
                frame.license = .init(try await service.createLicense(.init(request), by: principal))
            case .listLicenses(let request):
                var list = Coditect_License_V1_LicenseList()
                list.licenses = try await service.listLicenses(tenant: request.tenantID, by: principal).map(Coditect_License_V1_License.init)
                frame.licenses = list
            case .createUser(let request):
                let created = try await service.createUser(tenant: request.tenantID, name: request.name, role: request.role, by: principal)
                var result = Coditect_License_V1_CreateUserResult()
                result.userID = created.user.id.rawValue
                result.tenantID = created.user.tenantID?.rawValue ?? ""
                result.name = created.user.name
                result.role = created.user.role.rawValue
                result.apiKey = created.apiKey
                frame.user = result
            case .licenseStatus(let request):
                var result = Coditect_License_V1_LicenseStatusResult()
                result.licenses = try await service.licenseStatus(tenant: request.tenantID, license: request.licenseID, by: principal).map { usage in
                    var wire = Coditect_License_V1_LicenseUsage()
                    wire.licenseID = usage.license.id.rawValue
                    wire.tenantID = usage.license.tenantID.rawValue
                    wire.name = usage.license.name
                    wire.seatsUsed = UInt32(usage.seatsUsed)
                    wire.seatsTotal = UInt32(usage.license.seats)
                    wire.status = usage.license.status.rawValue
                    return wire
                }
                frame.licenseStatus = result
            case .listSessions(let request):
                var list = Coditect_License_V1_SessionList()
                list.sessions = try await service.listSessions(license: request.licenseID, includeEnded: request.includeEnded, by: principal)
                    .map(Coditect_License_V1_SessionInfo.init)
                frame.sessions = list
            case .revokeSession(let request):
                _ = try await service.revoke(session: request.sessionID, by: principal)
                frame.revokeSession = Coditect_License_V1_RevokeSessionResult()
            case .hello:
                throw LicenseError(.internal, .internalError, "Hello reached the dispatcher")
            case nil:
                throw LicenseError(.unimplemented, .unknownCall, "the frame carries no call this server knows")
            }
            return frame
        } catch {
            return failure(id: request.id, call: call, error)
        }
    }

    private func failure(id: UInt64, call: String, _ error: any Error) -> ServerFrame {
        let licenseError = error as? LicenseError ?? {
            logger.error("unexpected error in call", metadata: ["call": "\(call)", "error": "\(type(of: error))"])
            return LicenseError(.internal, .internalError, "internal error")
        }()
        Counter(label: "licensed_call_errors_total", dimensions: [("call", call), ("reason", licenseError.reason.rawValue)]).increment()
        return .failure(id: id, licenseError)
    }

    static let callNames = [
        "hello", "acquire", "heartbeat", "release", "get_signing_keys", "create_tenant", "list_tenants", "create_license",
        "list_licenses", "create_user", "license_status", "list_sessions", "revoke_session", "unknown",
    ]

    static let timers: [String: Metrics.Timer] = Dictionary(uniqueKeysWithValues: callNames.map {
        ($0, Metrics.Timer(label: "licensed_call_duration_seconds", dimensions: [("call", $0)], preferredDisplayUnit: .seconds))
    })

    static func name(of call: ClientFrame.OneOf_Call?) -> String {
        switch call {
        case .hello: "hello"
        case .acquire: "acquire"
        case .heartbeat: "heartbeat"
        case .release: "release"
        case .getSigningKeys: "get_signing_keys"
        case .createTenant: "create_tenant"
        case .listTenants: "list_tenants"
        case .createLicense: "create_license"
        case .listLicenses: "list_licenses"
        case .createUser: "create_user"
        case .licenseStatus: "license_status"
        case .listSessions: "list_sessions"
        case .revokeSession: "revoke_session"
        case nil: "unknown"
        }
    }
}

extension ServerFrame {
    static func ok(id: UInt64) -> ServerFrame {
        var frame = ServerFrame()
        frame.id = id
        frame.status = WireStatus()
        return frame
    }
}

extension UInt64 {
    static func wire(_ timestamp: Timestamp) -> UInt64 { UInt64(Swift.max(0, timestamp.millisecondsSinceEpoch)) }
}

extension Coditect_License_V1_Tenant {
    init(_ tenant: Tenant) {
        self.init()
        id = tenant.id.rawValue
        name = tenant.name
        createdAtMs = .wire(tenant.createdAt)
        status = tenant.status.rawValue
    }
}

extension Coditect_License_V1_License {
    init(_ license: License) {
        self.init()
        id = license.id.rawValue
        tenantID = license.tenantID.rawValue
        name = license.name
        seats = UInt32(license.seats)
        leaseTtlS = UInt32(license.policy.leaseTTL.wholeSeconds)
        heartbeatIntervalS = UInt32(license.policy.heartbeatInterval.wholeSeconds)
        offlineGraceS = UInt32(license.policy.offlineGrace.wholeSeconds)
        validFromMs = license.validFrom.map(UInt64.wire) ?? 0
        validUntilMs = license.validUntil.map(UInt64.wire) ?? 0
        features = license.features
        status = license.status.rawValue
        createdAtMs = .wire(license.createdAt)
    }
}

extension Coditect_License_V1_SessionInfo {
    init(_ session: LeaseSession) {
        self.init()
        sessionID = session.id.rawValue
        licenseID = session.licenseID.rawValue
        tenantID = session.tenantID.rawValue
        userID = session.userID.rawValue
        hardwareID = session.hardwareID
        createdAtMs = .wire(session.createdAt)
        leaseExpiresAtMs = .wire(session.leaseExpiresAt)
        endedAtMs = session.endedAt.map(UInt64.wire) ?? 0
        endReason = session.endReason?.rawValue ?? ""
        clientInfo = session.clientInfo
    }
}

extension CreateLicenseCommand {
    init(_ request: Coditect_License_V1_CreateLicenseRequest) {
        func seconds(_ value: UInt32) -> Duration? { value == 0 ? nil : .seconds(Int64(value)) }
        func instant(_ value: UInt64) -> Timestamp? { value == 0 ? nil : Timestamp(millisecondsSinceEpoch: Int64(clamping: value)) }
        self.init(
            id: request.id, tenantID: request.tenantID, name: request.name, seats: Int(request.seats),
            leaseTTL: seconds(request.leaseTtlS), heartbeatInterval: seconds(request.heartbeatIntervalS),
            offlineGrace: seconds(request.offlineGraceS), validFrom: instant(request.validFromMs),
            validUntil: instant(request.validUntilMs), features: request.features
        )
    }
}
