import LicenseCore

/// Makes a new API key for a platform operator directly in the repository, for whoever can run
/// `licensed` against the data folder or the database: the way back in when the bootstrap key
/// (or every operator key) is lost. The key is audited (`api_key.recover`) like any other.
public enum OperatorKeyRecovery {
    /// What a recovery made: the key (show it once) and its record.
    public struct Result: Sendable {
        public var key: String
        public var record: APIKeyRecord
        /// Whether the operator user had to be created (a repository with no `usr_bootstrap`).
        public var createdUser: Bool
    }

    /// The operator recovery makes a key for unless another is named.
    public static let defaultOperator = UserID("usr_bootstrap")

    /// Creates a key named `name` for operator `userID`. When `userID` is the bootstrap operator
    /// and does not exist, it is created (as on a first start). Any other user must exist, be a
    /// platform operator and not be disabled.
    public static func createKey(
        for userID: UserID = defaultOperator, name: String = "recovered", in repository: any LicenseRepository,
        clock: any WallClock = SystemWallClock()
    ) async throws -> Result {
        guard name.count <= 200, !name.contains(where: \.isNewline) else {
            throw LicenseError(.invalidArgument, .invalidRequest, "the key name must be one line of at most 200 characters")
        }
        let key = APIKey.generate()
        let now = clock.now()
        let record = APIKeyRecord(hash: APIKey.hash(key), userID: userID, tenantID: nil, name: name, createdAt: now)
        let audit = AuditEvent(at: now, tenantID: nil, actor: nil, action: "api_key.recover", target: record.id)
        guard let user = try await repository.user(userID) else {
            guard userID == defaultOperator else {
                throw LicenseError(.notFound, .userUnknown, "user '\(userID.rawValue)' not found; name an existing operator, or none for usr_bootstrap")
            }
            let user = User(id: userID, tenantID: nil, name: "bootstrap operator", role: .platformOperator, createdAt: now)
            try await repository.createUser(user, apiKey: record, audit: audit)
            return Result(key: key, record: record, createdUser: true)
        }
        guard user.role == .platformOperator else {
            throw LicenseError(.failedPrecondition, .invalidRequest, "user '\(userID.rawValue)' is not a platform operator; recovery makes operator keys only")
        }
        guard !user.disabled else {
            throw LicenseError(.failedPrecondition, .invalidRequest, "user '\(userID.rawValue)' is disabled; enable it with licensectl first, or recover usr_bootstrap")
        }
        try await repository.createAPIKey(record, audit: audit)
        return Result(key: key, record: record, createdUser: false)
    }
}
