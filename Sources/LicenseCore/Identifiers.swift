/// An identifier whose value is an opaque string chosen by the server or an administrator.
public protocol StringIdentifier: RawRepresentable, Hashable, Sendable, Codable,
    CustomStringConvertible, Comparable, ExpressibleByStringLiteral where RawValue == String
{
    init(_ rawValue: String)
}

extension StringIdentifier {
    public init(rawValue: String) { self.init(rawValue) }
    public init(stringLiteral value: String) { self.init(value) }
    public var description: String { rawValue }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Identifies a tenant: the customer that buys seats.
public struct TenantID: StringIdentifier {
    public let rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }
}

/// Identifies a license: a pool of concurrent seats with its policy.
public struct LicenseID: StringIdentifier {
    public let rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }
}

/// Identifies a user (a person, a service account or a platform operator).
public struct UserID: StringIdentifier {
    public let rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }
}

/// Identifies a lease session: one seat held by one running client.
public struct SessionID: StringIdentifier {
    public let rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }
}

/// Generates random identifiers with a readable prefix, e.g. `ses_3q2…`.
public enum IdentifierGenerator {
    /// Returns `prefix_` followed by `byteCount` random bytes in base64url (no padding).
    public static func make(prefix: String, byteCount: Int = 16) -> String {
        // Eight bytes per call of the system generator (one system call each), not one.
        var rng = SystemRandomNumberGenerator()
        var bytes: [UInt8] = []
        bytes.reserveCapacity(byteCount + 7)
        while bytes.count < byteCount {
            withUnsafeBytes(of: rng.next()) { bytes.append(contentsOf: $0) }
        }
        bytes.removeLast(bytes.count - byteCount)
        return prefix + "_" + Base64URL.encode(bytes)
    }
}
