import LicenseCore

/// A trusted identity provider: whose ID tokens `Hello` accepts, for which audience, and where
/// its signing keys are published.
public struct OIDCIssuer: Hashable, Sendable {
    /// Where the keys come from.
    public enum KeySource: Hashable, Sendable {
        /// A JWKS document at this URL.
        case jwks(String)
        /// The `jwks_uri` of `<issuer>/.well-known/openid-configuration`.
        case discovery
    }

    /// The exact `iss` the tokens carry, e.g. `https://accounts.example.com`.
    public var issuer: String
    /// The `aud` the tokens must carry: this server's client id at the provider.
    public var audience: String
    public var keys: KeySource
    /// The algorithms accepted from this issuer (RS256 and ES256 only; never `none` or HMAC).
    public var algorithms: Set<IDTokenAlgorithm>
    /// The claim naming the provider's tenant (Identity Platform: `firebase.tenant`), if any.
    public var tenantClaim: String?

    public init(issuer: String, audience: String, keys: KeySource = .discovery, algorithms: Set<IDTokenAlgorithm> = [.rs256, .es256], tenantClaim: String? = nil) {
        self.issuer = issuer
        self.audience = audience
        self.keys = keys
        self.algorithms = algorithms
        self.tenantClaim = tenantClaim
    }

    /// Google Identity Platform / Firebase Authentication for a project: issuer
    /// `https://securetoken.google.com/<project>`, audience the project id, Google's published
    /// keys, and the Identity Platform tenant from `firebase.tenant`.
    public static func firebase(projectID: String) -> OIDCIssuer {
        OIDCIssuer(
            issuer: "https://securetoken.google.com/" + projectID, audience: projectID,
            keys: .jwks("https://www.googleapis.com/service_accounts/v1/jwk/securetoken@system.gserviceaccount.com"),
            algorithms: [.rs256], tenantClaim: "firebase.tenant"
        )
    }

    /// Checks the configuration: URLs must be HTTPS (plain HTTP only to a loopback host, for
    /// tests and local providers).
    public func validate() throws {
        guard !audience.isEmpty else { throw Self.invalid("an OIDC issuer needs an audience") }
        guard !algorithms.isEmpty else { throw Self.invalid("an OIDC issuer needs at least one algorithm") }
        _ = try HTTPURL(issuer, purpose: "the issuer")
        if case .jwks(let url) = keys { _ = try HTTPURL(url, purpose: "the JWKS URL") }
    }

    static func invalid(_ message: String) -> LicenseError {
        LicenseError(.invalidArgument, .invalidRequest, message)
    }
}

/// The JWS algorithms an ID token may be signed with. The list is closed: `none`, HMAC and
/// everything else are refused before any key is looked at.
public struct IDTokenAlgorithm: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init?(rawValue: String) {
        guard rawValue == "RS256" || rawValue == "ES256" else { return nil }
        self.rawValue = rawValue
    }
    private init(known: String) { self.rawValue = known }

    /// RSASSA-PKCS1-v1_5 with SHA-256, RSA keys of at least 2048 bits.
    public static let rs256 = IDTokenAlgorithm(known: "RS256")
    /// ECDSA P-256 with SHA-256.
    public static let es256 = IDTokenAlgorithm(known: "ES256")

    public var description: String { rawValue }
}
