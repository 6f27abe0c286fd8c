import LicenseCore
import LicenseWire
import Logging
import Metrics
import NIOCore

/// Turns decoded client frames into service calls and service results (or errors) into server
/// frames. Errors become wire statuses here and nowhere else.
///
/// It also completes the audit log: the service records every change it commits together with
/// the change; the dispatcher records every administrative read and every refused call
/// (including refused `Hello`s), so the log shows who did what, when, and how it ended.
public struct Dispatcher: Sendable {
    public let service: LicenseService
    let authenticator: Authenticator
    let identity: (any IDTokenVerifying)?
    let maxFrameBytes: Int
    let logger: Logger
    /// Refused sign-ins per client address, and their audit rows.
    let throttle: SignInThrottle
    let refusalLog: SignInRefusalLog

    /// `identity` verifies ID tokens in `Hello`; without it only API keys are accepted.
    /// `throttle` and `refusalLog` are shared by every connection (see `SignInThrottleState`
    /// and `SignInRefusalLogState`).
    public init(
        service: LicenseService, maxFrameBytes: Int, identity: (any IDTokenVerifying)? = nil,
        throttle: SignInThrottle = SignInThrottle(), refusalLog: SignInRefusalLog = SignInRefusalLog(),
        logger: Logger = Logger(label: "coditect.license.dispatcher")
    ) {
        self.service = service
        self.authenticator = Authenticator(repository: service.repository, clock: service.clock)
        self.identity = identity
        self.maxFrameBytes = maxFrameBytes
        self.throttle = throttle
        self.refusalLog = refusalLog
        self.logger = logger
    }

    /// Checks a `Hello`; returns the answer and, on success, the principal. `peer` is the
    /// client's address: refusals from it are throttled (`SignInThrottleState`) and recorded
    /// per address and interval (`SignInRefusalLogState`). `clientCertificateName`
    /// is the common name of a client certificate verified against the operator client CA; a
    /// `Hello` without a credential signs in as the operator it names.
    public func hello(id: UInt64, _ hello: Coditect_License_V1_Hello, peer: String = "unknown", clientCertificateName: String? = nil) async -> (ServerFrame, Principal?) {
        let start = ContinuousClock.now
        var kind = "none"
        if let throttled = throttle.admit(peer, now: service.clock.now()) {
            await recordRefusal(throttled, kind: Self.credentialKind(hello), peer: peer)
            CallMetrics.shared.record("hello", since: start, error: throttled)
            return (.failure(id: id, throttled), nil)
        }
        do {
            guard hello.protocolVersion == WireProtocol.version else {
                throw LicenseError(.failedPrecondition, .protocolVersion, "this server speaks protocol version \(WireProtocol.version); the client sent \(hello.protocolVersion)")
            }
            guard hello.maxFrameBytes == 0 || hello.maxFrameBytes >= Self.minimumAnswerLimit else {
                throw LicenseError(.invalidArgument, .invalidRequest, "max_frame_bytes must be 0 (the default) or at least \(Self.minimumAnswerLimit)")
            }
            let principal: Principal
            switch hello.credential {
            case .apiKey(let key):
                kind = "api_key"
                principal = try await authenticator.authenticate(apiKey: key)
            case .idToken(let token):
                kind = "id_token"
                guard let identity else {
                    throw LicenseError(.unauthenticated, .unsupportedCredential, "ID-token sign-in is not enabled on this server; use an API key")
                }
                principal = try await authenticator.authenticate(identity: try await identity.verify(token))
            case nil:
                guard let clientCertificateName else {
                    throw LicenseError(.unauthenticated, .credentialRequired, "Hello must carry a credential")
                }
                kind = "client_certificate"
                principal = try await authenticator.authenticate(operatorCertificate: clientCertificateName)
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
            CallMetrics.shared.record("hello", since: start, error: nil)
            return (frame, principal)
        } catch {
            var licenseError = Self.licenseError(error, call: "hello", logger: logger)
            if licenseError.code == .unauthenticated, let wait = throttle.refused(peer, now: service.clock.now()) {
                // The next Hello from this address must wait: say so now.
                licenseError.retryAfter = wait
            }
            await recordRefusal(licenseError, kind: kind, peer: peer)
            CallMetrics.shared.record("hello", since: start, error: licenseError)
            return (.failure(id: id, licenseError), nil)
        }
    }

    /// Checks again that `principal` may still act (see `Authenticator.recheck`). Returns the
    /// refusal to answer with, or `nil`; a backend outage keeps the principal (the call itself
    /// will then fail or succeed on its own).
    public func recheck(_ principal: Principal) async -> LicenseError? {
        do {
            try await authenticator.recheck(principal)
            return nil
        } catch let error as LicenseError where error.reason != .backendUnavailable {
            await auditRefusal(error, tenant: principal.tenantID, actor: principal.userID, action: "credential.lapsed", target: principal.userID.rawValue)
            return error
        } catch {
            return nil
        }
    }

    /// Runs one authenticated call. `answerLimit` is the largest frame body the connection's
    /// client accepts (`answerLimit(announced:)`); list answers are paged to fit it.
    public func handle(_ request: ClientFrame, as principal: Principal, answerLimit: Int? = nil) async -> ServerFrame {
        let call = Self.name(of: request.call)
        let start = ContinuousClock.now
        do {
            let frame = try await perform(request, as: principal, answerLimit: answerLimit ?? maxFrameBytes)
            if Self.adminReads.contains(call) {
                await audit(AuditEvent(at: service.clock.now(), tenantID: principal.tenantID, actor: principal.userID, action: "read." + call, target: Self.target(of: request.call)))
            }
            CallMetrics.shared.record(call, since: start, error: nil)
            return frame
        } catch {
            let licenseError = Self.licenseError(error, call: call, logger: logger)
            await auditRefusal(licenseError, tenant: principal.tenantID, actor: principal.userID, action: "refused." + call, target: Self.target(of: request.call))
            CallMetrics.shared.record(call, since: start, error: licenseError)
            return .failure(id: request.id, licenseError)
        }
    }

    private func perform(_ request: ClientFrame, as principal: Principal, answerLimit: Int) async throws -> ServerFrame {
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
        case .getTenant(let request):
            frame.tenant = .init(try await service.showTenant(request.tenantID, by: principal))
        case .updateTenant(let request):
            frame.tenant = .init(try await service.updateTenant(.init(request), by: principal))

        case .createLicense(let request):
            frame.license = .init(try await service.createLicense(.init(request), by: principal))
        case .getLicense(let request):
            frame.license = .init(try await service.showLicense(request.licenseID, by: principal))
        case .updateLicense(let request):
            frame.license = .init(try await service.updateLicense(.init(request), by: principal))
        case .listLicenses(let request):
            var list = Coditect_License_V1_LicenseList()
            list.licenses = try await service.listLicenses(tenant: request.tenantID, by: principal).map(Coditect_License_V1_License.init)
            frame.licenses = list
        case .licenseStatus(let request):
            var result = Coditect_License_V1_LicenseStatusResult()
            result.licenses = try await service.licenseStatus(tenant: request.tenantID, license: request.licenseID, by: principal)
                .map(Coditect_License_V1_LicenseUsage.init)
            frame.licenseStatus = result

        case .createUser(let request):
            let created = try await service.createUser(CreateUserCommand(
                tenantID: request.tenantID, name: request.name, role: request.role, email: request.email, withAPIKey: !request.withoutApiKey
            ), by: principal)
            var result = Coditect_License_V1_CreateUserResult()
            result.userID = created.user.id.rawValue
            result.tenantID = created.user.tenantID?.rawValue ?? ""
            result.name = created.user.name
            result.role = created.user.role.rawValue
            result.apiKey = created.apiKey ?? ""
            result.email = created.user.email ?? ""
            frame.user = result
        case .listUsers(let request):
            let slice = try await service.listUsers(tenant: request.tenantID, pageSize: Int(request.pageSize), pageToken: request.pageToken, by: principal)
            var list = Coditect_License_V1_UserList()
            (list.users, list.nextPageToken) = try Self.page(slice, as: Coditect_License_V1_User.init, within: answerLimit, token: PageToken.users(after:))
            frame.users = list
        case .setUserDisabled(let request):
            let (user, revoked) = try await service.setUserDisabled(request.userID, disabled: request.disabled, by: principal)
            var result = Coditect_License_V1_SetUserDisabledResult()
            result.user = .init(user)
            result.revokedSessionIds = revoked.map(\.id.rawValue)
            frame.setUserDisabled = result

        case .createApiKey(let request):
            frame.apiKeyCreated = .init(try await service.createAPIKey(user: request.userID, name: request.name, by: principal))
        case .listApiKeys(let request):
            var list = Coditect_License_V1_ApiKeyList()
            list.keys = try await service.listAPIKeys(user: request.userID, tenant: request.tenantID, by: principal).map(Coditect_License_V1_ApiKey.init)
            frame.apiKeys = list
        case .rotateApiKey(let request):
            frame.apiKeyCreated = .init(try await service.rotateAPIKey(request.keyID, by: principal))
        case .revokeApiKey(let request):
            frame.apiKey = .init(try await service.revokeAPIKey(request.keyID, by: principal))

        case .listSessions(let request):
            let slice = try await service.listSessions(
                license: request.licenseID, user: request.userID, includeEnded: request.includeEnded,
                pageSize: Int(request.pageSize), pageToken: request.pageToken, by: principal
            )
            let names = try await service.userNames(Set(slice.items.map(\.userID)), by: principal)
            var list = Coditect_License_V1_SessionList()
            (list.sessions, list.nextPageToken) = try Self.page(slice, as: { session in
                var info = Coditect_License_V1_SessionInfo(session)
                info.userName = names[session.userID] ?? ""
                return info
            }, within: answerLimit, token: PageToken.sessions(after:))
            frame.sessions = list
        case .revokeSession(let request):
            _ = try await service.revoke(session: request.sessionID, by: principal)
            frame.revokeSession = Coditect_License_V1_RevokeSessionResult()

        case .queryAudit(let request):
            let slice = try await service.queryAudit(.init(request), tenant: request.tenantID, user: request.userID, pageToken: request.pageToken, by: principal)
            var list = Coditect_License_V1_AuditEventList()
            (list.events, list.nextPageToken) = try Self.page(slice, as: Coditect_License_V1_AuditEvent.init, within: answerLimit, token: PageToken.audit(after:))
            frame.auditEvents = list
        case .rotateSigningKey(let request):
            frame.signingKeyRotation = .init(try await service.rotateSigningKey(algorithm: request.algorithm, by: principal))

        case .hello:
            throw LicenseError(.internal, .internalError, "Hello reached the dispatcher")
        case nil:
            throw LicenseError(.unimplemented, .unknownCall, "the frame carries no call this server knows")
        }
        return frame
    }

    /// Records a refusal. A backend outage is not a refusal by policy, and its audit write would
    /// wait for the same unreachable repository: it is counted in metrics instead.
    private func auditRefusal(_ error: LicenseError, tenant: TenantID?, actor: UserID?, action: String, target: String) async {
        guard error.reason != .backendUnavailable else { return }
        await audit(AuditEvent(at: service.clock.now(), tenantID: tenant, actor: actor, action: action, target: target, outcome: error.reason.rawValue))
    }

    /// Appends an audit event; a failure is logged, never turned into the call's answer.
    func audit(_ event: AuditEvent) async {
        do {
            try await service.repository.appendAudit(event)
        } catch {
            logger.error("audit event not recorded", metadata: ["action": "\(event.action)", "error": "\(type(of: error))"])
        }
    }

    private static func licenseError(_ error: any Error, call: String, logger: Logger) -> LicenseError {
        if let licenseError = error as? LicenseError { return licenseError }
        logger.error("unexpected error in call", metadata: ["call": "\(call)", "error": "\(type(of: error))"])
        return LicenseError(.internal, .internalError, "internal error")
    }

    /// Administrative calls that change nothing; the dispatcher audits them (the service audits changes).
    static let adminReads: Set<String> = [
        "list_tenants", "get_tenant", "get_license", "list_licenses", "license_status", "list_users", "list_api_keys",
        "list_sessions", "query_audit",
    ]

    static func name(of call: ClientFrame.OneOf_Call?) -> String {
        switch call {
        case .hello: "hello"
        case .acquire: "acquire"
        case .heartbeat: "heartbeat"
        case .release: "release"
        case .getSigningKeys: "get_signing_keys"
        case .createTenant: "create_tenant"
        case .listTenants: "list_tenants"
        case .getTenant: "get_tenant"
        case .updateTenant: "update_tenant"
        case .createLicense: "create_license"
        case .getLicense: "get_license"
        case .updateLicense: "update_license"
        case .listLicenses: "list_licenses"
        case .licenseStatus: "license_status"
        case .createUser: "create_user"
        case .listUsers: "list_users"
        case .setUserDisabled: "set_user_disabled"
        case .createApiKey: "create_api_key"
        case .listApiKeys: "list_api_keys"
        case .rotateApiKey: "rotate_api_key"
        case .revokeApiKey: "revoke_api_key"
        case .listSessions: "list_sessions"
        case .revokeSession: "revoke_session"
        case .queryAudit: "query_audit"
        case .rotateSigningKey: "rotate_signing_key"
        case nil: "unknown"
        }
    }

    /// The id a call names, for the audit log (cut to the repository's id length).
    static func target(of call: ClientFrame.OneOf_Call?) -> String {
        let target: String = switch call {
        case .acquire(let request): request.licenseID
        case .heartbeat(let request): request.sessionID
        case .release(let request): request.sessionID
        case .createTenant(let request): request.id
        case .getTenant(let request): request.tenantID
        case .updateTenant(let request): request.tenantID
        case .createLicense(let request): request.tenantID
        case .getLicense(let request): request.licenseID
        case .updateLicense(let request): request.licenseID
        case .listLicenses(let request): request.tenantID
        case .licenseStatus(let request): request.licenseID.isEmpty ? request.tenantID : request.licenseID
        case .createUser(let request): request.tenantID
        case .listUsers(let request): request.tenantID
        case .setUserDisabled(let request): request.userID
        case .createApiKey(let request): request.userID
        case .listApiKeys(let request): request.userID.isEmpty ? request.tenantID : request.userID
        case .rotateApiKey(let request): request.keyID
        case .revokeApiKey(let request): request.keyID
        case .listSessions(let request): request.licenseID.isEmpty ? request.userID : request.licenseID
        case .revokeSession(let request): request.sessionID
        case .queryAudit(let request): request.tenantID
        case .rotateSigningKey(let request): request.algorithm
        case .hello, .getSigningKeys, .listTenants, nil: ""
        }
        return String(target.prefix(128))
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
