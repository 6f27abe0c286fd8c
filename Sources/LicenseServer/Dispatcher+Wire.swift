import LicenseCore
import LicenseWire

// Conversions between domain values and wire messages.

extension UInt64 {
    static func wire(_ timestamp: Timestamp) -> UInt64 { UInt64(Swift.max(0, timestamp.millisecondsSinceEpoch)) }
}

extension Timestamp {
    /// A wire time in milliseconds; `nil` for 0 (unset).
    init?(wire milliseconds: UInt64) {
        guard milliseconds != 0 else { return nil }
        self.init(millisecondsSinceEpoch: Int64(clamping: milliseconds))
    }
}

extension Coditect_License_V1_Tenant {
    init(_ tenant: Tenant) {
        self.init()
        id = tenant.id.rawValue
        name = tenant.name
        createdAtMs = .wire(tenant.createdAt)
        status = tenant.status.rawValue
        provisioning = tenant.provisioning.rawValue
        emailDomains = tenant.emailDomains
        identityTenant = tenant.identityTenant ?? ""
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

extension Coditect_License_V1_LicenseUsage {
    init(_ usage: LicenseUsage) {
        self.init()
        licenseID = usage.license.id.rawValue
        tenantID = usage.license.tenantID.rawValue
        name = usage.license.name
        seatsUsed = UInt32(usage.seatsUsed)
        seatsTotal = UInt32(usage.license.seats)
        status = usage.license.status.rawValue
    }
}

extension Coditect_License_V1_User {
    init(_ user: User) {
        self.init()
        userID = user.id.rawValue
        tenantID = user.tenantID?.rawValue ?? ""
        name = user.name
        role = user.role.rawValue
        email = user.email ?? ""
        disabled = user.disabled
        createdAtMs = .wire(user.createdAt)
        identityIssuer = user.identity?.issuer ?? ""
        identitySubject = user.identity?.subject ?? ""
    }
}

extension Coditect_License_V1_ApiKey {
    init(_ key: APIKeyRecord) {
        self.init()
        keyID = key.id
        userID = key.userID.rawValue
        tenantID = key.tenantID?.rawValue ?? ""
        name = key.name
        createdAtMs = .wire(key.createdAt)
        revokedAtMs = key.revokedAt.map(UInt64.wire) ?? 0
    }
}

extension Coditect_License_V1_ApiKeyCreated {
    init(_ created: CreatedAPIKey) {
        self.init()
        key = .init(created.record)
        apiKey = created.key
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

extension Coditect_License_V1_AuditEvent {
    init(_ event: LicenseCore.AuditEvent) {
        self.init()
        id = event.id
        atMs = .wire(event.at)
        tenantID = event.tenantID?.rawValue ?? ""
        actor = event.actor?.rawValue ?? ""
        action = event.action
        target = event.target
        outcome = event.outcome
        count = UInt32(clamping: event.count)
    }
}

extension Coditect_License_V1_SigningKeyRotation {
    init(_ rotation: SigningKeyRotation) {
        self.init()
        keyID = rotation.current
        algorithm = rotation.algorithm
        retiredKeyIds = rotation.retired
        publishedUntilMs = .wire(rotation.publishedUntil)
    }
}

extension CreateLicenseCommand {
    init(_ request: Coditect_License_V1_CreateLicenseRequest) {
        func seconds(_ value: UInt32) -> Duration? { value == 0 ? nil : .seconds(Int64(value)) }
        self.init(
            id: request.id, tenantID: request.tenantID, name: request.name, seats: Int(request.seats),
            leaseTTL: seconds(request.leaseTtlS), heartbeatInterval: seconds(request.heartbeatIntervalS),
            offlineGrace: seconds(request.offlineGraceS), validFrom: Timestamp(wire: request.validFromMs),
            validUntil: Timestamp(wire: request.validUntilMs), features: request.features
        )
    }
}

extension UpdateLicenseCommand {
    init(_ request: Coditect_License_V1_UpdateLicenseRequest) {
        func bound(_ has: Bool, _ value: UInt64) -> Bound {
            guard has else { return .unchanged }
            return Timestamp(wire: value).map(Bound.set) ?? .cleared
        }
        var status: EntityStatus?
        if request.hasStatus { status = EntityStatus(rawValue: request.status) }
        self.init(
            id: request.licenseID,
            name: request.hasName ? request.name : nil,
            seats: request.hasSeats ? Int(request.seats) : nil,
            leaseTTL: request.hasLeaseTtlS ? .seconds(Int64(request.leaseTtlS)) : nil,
            heartbeatInterval: request.hasHeartbeatIntervalS ? .seconds(Int64(request.heartbeatIntervalS)) : nil,
            offlineGrace: request.hasOfflineGraceS ? .seconds(Int64(request.offlineGraceS)) : nil,
            validFrom: bound(request.hasValidFromMs, request.validFromMs),
            validUntil: bound(request.hasValidUntilMs, request.validUntilMs),
            features: request.replaceFeatures ? request.features : nil,
            status: status
        )
    }
}

extension UpdateTenantCommand {
    init(_ request: Coditect_License_V1_UpdateTenantRequest) {
        self.init(
            id: request.tenantID,
            name: request.hasName ? request.name : nil,
            status: request.hasStatus ? EntityStatus(rawValue: request.status) : nil,
            provisioning: request.hasProvisioning ? request.provisioning : nil,
            emailDomains: request.replaceEmailDomains ? request.emailDomains : nil,
            identityTenant: request.hasIdentityTenant ? request.identityTenant : nil
        )
    }
}

extension AuditQuery {
    init(_ request: Coditect_License_V1_QueryAuditRequest) {
        self.init(
            action: request.action.isEmpty ? nil : request.action,
            since: Timestamp(wire: request.sinceMs), until: Timestamp(wire: request.untilMs),
            limit: request.limit == 0 ? 100 : Int(request.limit)
        )
    }
}
