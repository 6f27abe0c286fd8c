import LicenseCore

/// The JWS algorithms lease tokens may be signed with.
public struct LeaseTokenAlgorithm: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String
    public init?(rawValue: String) {
        guard ["EdDSA", "RS256", "PS256"].contains(rawValue) else { return nil }
        self.rawValue = rawValue
    }
    private init(known: String) { rawValue = known }

    /// Ed25519 (the default): small, fast, deterministic.
    public static let edDSA = LeaseTokenAlgorithm(known: "EdDSA")
    /// RSASSA-PKCS1-v1_5 with SHA-256 over a 4096-bit key.
    public static let rs256 = LeaseTokenAlgorithm(known: "RS256")
    /// RSASSA-PSS with SHA-256 over a 4096-bit key.
    public static let ps256 = LeaseTokenAlgorithm(known: "PS256")

    public var description: String { rawValue }
    var isRSA: Bool { self != .edDSA }
}

extension LicenseError.Reason {
    /// A lease token whose signature, shape, issuer or binding does not check out.
    public static let invalidToken = LicenseError.Reason(rawValue: "INVALID_TOKEN")
    /// A lease token signed by a key the verifier does not know (unknown or retired).
    public static let unknownSigningKey = LicenseError.Reason(rawValue: "UNKNOWN_SIGNING_KEY")
    /// A lease token bound to another machine.
    public static let hardwareMismatch = LicenseError.Reason(rawValue: "HARDWARE_MISMATCH")
}

/// The JOSE header `typ` of lease tokens, distinct from ID tokens' `JWT`.
public let leaseTokenType = "coditect-lease+jwt"
