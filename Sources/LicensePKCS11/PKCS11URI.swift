import Foundation
import LicenseCore

/// A PKCS#11 URI (RFC 7512) naming a key in a token, in the style step-ca uses:
///
///     pkcs11:token=licensed;object=lease-2027?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/licensed/hsm-pin
///
/// The token is named by its label (slot numbers change: SoftHSM renumbers them), the key by its
/// label (`object`) and/or its `id` (percent-encoded bytes). The PIN comes from `pin-source`, a
/// file (`file:PATH`) or an environment variable (`env:NAME`); a `pin-value` in the URI is
/// refused, so no PIN reaches a command line, the repository or a log.
public struct PKCS11URI: Sendable, Hashable, CustomStringConvertible {
    public var token: String
    public var object: String?
    public var id: Data?
    public var modulePath: String
    public var pinSource: String?

    public init(parsing text: String) throws {
        guard text.hasPrefix("pkcs11:") else { throw Self.invalid("a PKCS#11 URI starts with pkcs11:") }
        let body = text.dropFirst("pkcs11:".count)
        let (path, query) = body.firstIndex(of: "?").map { (body[..<$0], body[body.index(after: $0)...]) } ?? (body, "")
        var attributes: [String: String] = [:]
        var queries: [String: String] = [:]
        for (part, separator) in [(path, ";" as Character), (query, "&")] {
            for pair in part.split(separator: separator) where !pair.isEmpty {
                let kv = pair.split(separator: "=", maxSplits: 1)
                guard kv.count == 2, let bytes = Self.percentDecoded(kv[1]) else {
                    throw Self.invalid("'\(pair)' is not name=value (percent-encoded)")
                }
                // The id is bytes; everything else is UTF-8 text.
                let value = kv[0] == "id" ? bytes.map { String(UnicodeScalar($0)) }.joined() : String(decoding: bytes, as: UTF8.self)
                if separator == ";" { attributes[String(kv[0])] = value } else { queries[String(kv[0])] = value }
            }
        }
        guard queries["pin-value"] == nil, attributes["pin-value"] == nil else {
            throw Self.invalid("a PIN in the URI (pin-value) would end up in command lines, the repository and logs: use pin-source=file:PATH or env:NAME")
        }
        let known: Set = ["token", "object", "id", "type"]
        if let unknown = attributes.keys.first(where: { !known.contains($0) }) {
            throw Self.invalid("unknown path attribute '\(unknown)' (known: token, object, id, type)")
        }
        if let unknown = queries.keys.first(where: { !["module-path", "pin-source"].contains($0) }) {
            throw Self.invalid("unknown query attribute '\(unknown)' (known: module-path, pin-source)")
        }
        guard let token = attributes["token"], !token.isEmpty else { throw Self.invalid("name the token by its label: token=LABEL") }
        guard let module = queries["module-path"], module.hasPrefix("/") else {
            throw Self.invalid("name the module by its absolute path: ?module-path=/usr/lib/…/module.so")
        }
        if let type = attributes["type"], type != "private" { throw Self.invalid("type must be private (the signing key), not \(type)") }
        self.token = token
        self.object = attributes["object"]
        self.modulePath = module
        self.pinSource = queries["pin-source"]
        if let id = attributes["id"] {
            self.id = Data(id.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) })
        }
        guard object != nil || self.id != nil else { throw Self.invalid("name the key: object=LABEL and/or id=%01%02") }
        if let pinSource, !pinSource.hasPrefix("file:"), !pinSource.hasPrefix("env:") {
            throw Self.invalid("pin-source is file:PATH or env:NAME, not '\(pinSource)'")
        }
    }

    /// The URI in its canonical form (what the repository stores; it holds no PIN).
    public var description: String {
        var path = ["token=" + Self.escape(token)]
        if let object { path.append("object=" + Self.escape(object)) }
        if let id { path.append("id=" + id.map { String(format: "%%%02X", $0) }.joined()) }
        var query = ["module-path=" + Self.escape(modulePath)]
        if let pinSource { query.append("pin-source=" + Self.escape(pinSource)) }
        return "pkcs11:" + path.joined(separator: ";") + "?" + query.joined(separator: "&")
    }

    /// The same token with another object label (a key made beside this one).
    func naming(object label: String) -> PKCS11URI {
        var other = self
        other.object = label
        other.id = nil
        return other
    }

    /// The PIN `pin-source` names (nil without one: a token that needs no login).
    func pin() throws -> String? {
        guard let pinSource else { return nil }
        if pinSource.hasPrefix("env:") {
            let name = String(pinSource.dropFirst(4))
            guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else {
                throw LicenseError(.failedPrecondition, .invalidRequest, "the PKCS#11 PIN's environment variable \(name) is not set")
            }
            return value
        }
        let path = String(pinSource.dropFirst(5))
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LicenseError(.failedPrecondition, .invalidRequest, "cannot read the PKCS#11 PIN file \(path)")
        }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)
    }

    private static func percentDecoded(_ text: Substring) -> [UInt8]? {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else { bytes.append(byte); continue }
            guard let high = iterator.next(), let low = iterator.next(),
                  let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16) else { return nil }
            bytes.append(value)
        }
        return bytes
    }

    private static func escape(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~/:")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }

    private static func invalid(_ message: String) -> LicenseError {
        LicenseError(.invalidArgument, .invalidRequest, "invalid PKCS#11 URI: \(message)")
    }
}
