/// What the client presents in `Hello`.
public enum LicenseCredential: Sendable {
    /// A `licensectl`-issued API key (`lk_…`).
    case apiKey(String)
    /// An OIDC ID token from the identity provider the server trusts.
    case idToken(String)
    /// No credential in `Hello`: the TLS client certificate of the endpoint identifies the caller
    /// (platform operators, on servers configured with an operator client CA).
    case clientCertificate
}

/// Supplies the credential for each new connection. When the server refuses a credential
/// (`UNAUTHENTICATED`, e.g. an ID token that expired), the client calls the provider again with
/// `refresh: true` and retries once; a provider wrapping an identity-provider SDK should then
/// force a token refresh rather than return its cached token.
public struct LicenseCredentialProvider: Sendable {
    private let fetch: @Sendable (_ refresh: Bool) async throws -> LicenseCredential

    /// A provider backed by `fetch`; `refresh` is true after the server refused the last one.
    public init(_ fetch: @escaping @Sendable (_ refresh: Bool) async throws -> LicenseCredential) {
        self.fetch = fetch
    }

    /// A fixed API key.
    public static func apiKey(_ key: String) -> LicenseCredentialProvider {
        LicenseCredentialProvider { _ in .apiKey(key) }
    }

    /// The credential to present; `refresh` asks for a new one.
    public func credential(refresh: Bool) async throws -> LicenseCredential {
        try await fetch(refresh)
    }
}
