/// The opaque `page_token`s of list calls: a kind and a position, base64url-encoded. A token
/// names where the next page resumes, never a row count, so rows added or removed meanwhile
/// neither repeat nor skip the rest. A token of the wrong kind or not made here is refused.
public enum PageToken {
    /// The token of the page after `session`.
    public static func sessions(after session: LeaseSession) -> String {
        encode(["s", session.licenseID.rawValue, String(session.createdAt.millisecondsSinceEpoch), session.id.rawValue])
    }

    /// The token of the page after `event` (an event read from a repository).
    public static func audit(after event: AuditEvent) -> String {
        encode(["a", String(event.sequence ?? 0)])
    }

    /// The token of the page after `user`.
    public static func users(after user: User) -> String {
        encode(["u", user.id.rawValue])
    }

    /// The cursor a sessions token names (`nil` for an empty token, the first page).
    public static func sessionCursor(_ token: String) throws -> SessionCursor? {
        guard let parts = try decode(token, kind: "s") else { return nil }
        guard parts.count == 3, !parts[0].isEmpty, let ms = Int64(parts[1]), !parts[2].isEmpty else { throw invalid }
        return SessionCursor(licenseID: LicenseID(parts[0]), createdAt: Timestamp(millisecondsSinceEpoch: ms), id: SessionID(parts[2]))
    }

    /// The sequence an audit token names (`nil` for an empty token).
    public static func auditSequence(_ token: String) throws -> Int64? {
        guard let parts = try decode(token, kind: "a") else { return nil }
        guard parts.count == 1, let sequence = Int64(parts[0]), sequence > 0 else { throw invalid }
        return sequence
    }

    /// The user id a users token names (`nil` for an empty token).
    public static func userCursor(_ token: String) throws -> UserID? {
        guard let parts = try decode(token, kind: "u") else { return nil }
        guard parts.count == 1, !parts[0].isEmpty else { throw invalid }
        return UserID(parts[0])
    }

    private static let separator: Character = "\u{1F}"

    private static func encode(_ parts: [String]) -> String {
        Base64URL.encode(Array(parts.joined(separator: String(separator)).utf8))
    }

    /// The parts after the kind; `nil` for an empty token (the first page).
    private static func decode(_ token: String, kind: String) throws -> [String]? {
        if token.isEmpty { return nil }
        guard token.utf8.count <= 512, let bytes = Base64URL.decode(token), let text = String(validating: bytes, as: UTF8.self) else { throw invalid }
        let parts = text.split(separator: separator, omittingEmptySubsequences: false).map(String.init)
        guard parts.first == kind else { throw invalid }
        return Array(parts.dropFirst())
    }

    private static var invalid: LicenseError {
        LicenseError.invalid("page_token is not a token this call issued; start again without one")
    }
}
