import LicenseCore

/// An `https://` URL, or an `http://` URL to a loopback host, split for a request.
struct HTTPURL: Hashable, Sendable, CustomStringConvertible {
    var secure: Bool
    var host: String
    var port: Int
    /// The path and query, starting with `/`.
    var target: String

    init(_ text: String, purpose: String) throws {
        let invalid = LicenseError(.invalidArgument, .invalidRequest, "\(purpose) must be an https:// URL (http:// only to localhost), not '\(text.prefix(100))'")
        let rest: Substring
        if text.hasPrefix("https://") {
            secure = true
            rest = text.dropFirst(8)
        } else if text.hasPrefix("http://") {
            secure = false
            rest = text.dropFirst(7)
        } else {
            throw invalid
        }
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        target = authorityEnd == rest.endIndex ? "/" : String(rest[authorityEnd...])
        if target.hasPrefix("?") { target = "/" + target }
        guard !authority.isEmpty, !authority.contains("@"), !target.contains("#"),
              !text.contains(where: { $0.isWhitespace || $0.isNewline })
        else { throw invalid }
        if authority.hasPrefix("["), let close = authority.firstIndex(of: "]") {
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            if after.isEmpty {
                port = secure ? 443 : 80
            } else {
                guard after.hasPrefix(":"), let value = Int(after.dropFirst()), (1...65535).contains(value) else { throw invalid }
                port = value
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            guard let value = Int(authority[authority.index(after: colon)...]), (1...65535).contains(value) else { throw invalid }
            port = value
        } else {
            host = String(authority)
            port = secure ? 443 : 80
        }
        guard !host.isEmpty else { throw invalid }
        if !secure && !Self.isLoopback(host) { throw invalid }
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    var description: String {
        let bracketed = host.contains(":") ? "[\(host)]" : host
        return (secure ? "https://" : "http://") + bracketed + ":\(port)" + target
    }
}
