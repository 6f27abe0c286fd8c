/// Which sessions a session page holds; every set field must match.
public struct SessionFilter: Hashable, Sendable {
    /// Only this tenant's sessions.
    public var tenantID: TenantID?
    /// Only this license's sessions.
    public var licenseID: LicenseID?
    /// Only this user's sessions.
    public var userID: UserID?
    /// Only sessions live at this instant (not ended, lease not expired); `nil`: ended ones too.
    public var liveAt: Timestamp?

    public init(tenantID: TenantID? = nil, licenseID: LicenseID? = nil, userID: UserID? = nil, liveAt: Timestamp? = nil) {
        self.tenantID = tenantID
        self.licenseID = licenseID
        self.userID = userID
        self.liveAt = liveAt
    }

    /// Whether `session` passes the filter (for repositories that filter in memory).
    public func matches(_ session: LeaseSession) -> Bool {
        if let tenantID, session.tenantID != tenantID { return false }
        if let licenseID, session.licenseID != licenseID { return false }
        if let userID, session.userID != userID { return false }
        if let liveAt, !session.isLive(at: liveAt) { return false }
        return true
    }
}

/// Where a page of sessions resumes: sessions come newest first (creation time, then id, both
/// descending), and the next page holds those strictly after this one in that order. A list
/// over several licenses walks them one at a time in id order; `licenseID` says which one the
/// page ended in.
public struct SessionCursor: Hashable, Sendable {
    public var licenseID: LicenseID
    public var createdAt: Timestamp
    public var id: SessionID

    public init(licenseID: LicenseID, createdAt: Timestamp, id: SessionID) {
        self.licenseID = licenseID
        self.createdAt = createdAt
        self.id = id
    }

    /// The cursor just after `session`.
    public init(after session: LeaseSession) {
        self.init(licenseID: session.licenseID, createdAt: session.createdAt, id: session.id)
    }

    /// Whether `session` comes after the cursor in newest-first order.
    public func precedes(_ session: LeaseSession) -> Bool {
        (session.createdAt, session.id.rawValue) < (createdAt, id.rawValue)
    }
}
