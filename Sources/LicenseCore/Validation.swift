import Foundation

/// Input limits checked before any backend is touched.
enum Validation {
    static let maxIDLength = 128
    static let maxHardwareIDLength = 256
    static let maxNameLength = 200
    static let maxClientInfoEntries = 32
    static let maxClientInfoKeyLength = 64
    static let maxClientInfoValueLength = 256
    static let maxFeatures = 64
    static let maxSeats = 1_000_000

    /// A printable identifier: 1…128 characters from `[A-Za-z0-9._:-]`.
    static func id(_ value: String, field: String) throws {
        guard !value.isEmpty else { throw LicenseError.invalid("\(field) is required") }
        guard value.utf8.count <= maxIDLength else {
            throw LicenseError.invalid("\(field) is longer than \(maxIDLength) bytes")
        }
        guard value.utf8.allSatisfy(isIDByte) else {
            throw LicenseError.invalid("\(field) may contain only letters, digits, '.', '_', ':' and '-'")
        }
    }

    static func text(_ value: String, field: String, max: Int, required: Bool = true) throws {
        if required && value.trimmingCharacters(in: .whitespaces).isEmpty {
            throw LicenseError.invalid("\(field) is required")
        }
        guard value.utf8.count <= max else { throw LicenseError.invalid("\(field) is longer than \(max) bytes") }
        guard !value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw LicenseError.invalid("\(field) contains control characters")
        }
    }

    static func clientInfo(_ info: [String: String]) throws {
        guard info.count <= maxClientInfoEntries else {
            throw LicenseError.invalid("client_info has more than \(maxClientInfoEntries) entries")
        }
        for (key, value) in info {
            try text(key, field: "a client_info key", max: maxClientInfoKeyLength)
            try text(value, field: "client_info[\(key)]", max: maxClientInfoValueLength, required: false)
        }
    }

    private static func isIDByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"),
             UInt8(ascii: "-"), UInt8(ascii: ":"):
            true
        default:
            false
        }
    }
}

extension Validation {
    static let maxEmailLength = 254

    /// A lowercase DNS name such as `acme.com`.
    static func emailDomain(_ value: String) throws -> String {
        let domain = value.lowercased().trimmingCharacters(in: .whitespaces)
        let labels = domain.split(separator: ".", omittingEmptySubsequences: false)
        guard domain.utf8.count <= 253, labels.count >= 2,
              labels.allSatisfy({ label in
                  !label.isEmpty && label.utf8.count <= 63 && !label.hasPrefix("-") && !label.hasSuffix("-")
                      && label.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 }
              })
        else { throw LicenseError.invalid("'\(value.prefix(64))' is not an e-mail domain such as acme.com") }
        return domain
    }

    /// A lowercase e-mail address `local@domain`.
    static func email(_ value: String) throws -> String {
        let email = value.lowercased().trimmingCharacters(in: .whitespaces)
        guard email.utf8.count <= maxEmailLength, let at = email.lastIndex(of: "@"), at != email.startIndex,
              !email[..<at].contains(where: { $0.isWhitespace || $0.isNewline || $0 == "@" })
        else { throw LicenseError.invalid("email must look like name@domain") }
        _ = try emailDomain(String(email[email.index(after: at)...]))
        return email
    }
}
