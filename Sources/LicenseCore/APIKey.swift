import Crypto
import Logging

/// API keys: `lk_` followed by 32 random bytes in base64url. Only the SHA-256 hash is stored;
/// the key's entropy makes a slow hash unnecessary.
public enum APIKey {
    /// A new random API key.
    public static func generate() -> String {
        IdentifierGenerator.make(prefix: "lk", byteCount: 32)
    }

    /// The hash under which a key is stored and looked up (lowercase hex SHA-256).
    public static func hash(_ key: String) -> String {
        SHA256.hash(data: Array(key.utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    /// Whether the text has the shape of an API key (checked before any lookup).
    public static func isWellFormed(_ key: String) -> Bool {
        key.hasPrefix("lk_") && key.utf8.count >= 20 && key.utf8.count <= 128
            && key.utf8.allSatisfy { $0 < 128 && ($0 == 95 || $0 == 45 || (48...57).contains($0) || (65...90).contains($0) || (97...122).contains($0)) }
    }
}

/// Turns the credential of a `Hello` into a principal.
public struct Authenticator: Sendable {
    private let repository: any LicenseRepository
    private let logger: Logger

    public init(repository: any LicenseRepository, logger: Logger = Logger(label: "coditect.license.auth")) {
        self.repository = repository
        self.logger = logger
    }

    /// Authenticates an API key. Every failure is the same `UNAUTHENTICATED` answer, so the
    /// response does not tell which part was wrong.
    public func authenticate(apiKey: String) async throws -> Principal {
        let rejected = LicenseError(.unauthenticated, .invalidCredential, "the credential was not accepted")
        guard APIKey.isWellFormed(apiKey) else { throw rejected }
        let user = try await callingBackend("the repository", logger: logger) { try await repository.user(apiKeyHash: APIKey.hash(apiKey)) }
        guard let user, !user.disabled else { throw rejected }
        if let tenantID = user.tenantID {
            guard let tenant = try await callingBackend("the repository", logger: logger, { try await repository.tenant(tenantID) }) else { throw rejected }
            guard tenant.status == .active else {
                throw LicenseError(.permissionDenied, .tenantSuspended, "the tenant is suspended")
            }
        }
        return user.principal
    }
}
