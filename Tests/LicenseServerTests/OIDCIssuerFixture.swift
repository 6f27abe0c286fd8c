import Crypto
import _CryptoExtras
import Foundation
import LicenseCore
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import Testing

/// A local OIDC identity provider for tests: it holds signing keys, serves its discovery
/// document and JWKS over plain HTTP on a loopback port, and signs ID tokens. It can rotate
/// keys, answer 503 (down), or answer late (slow).
final class OIDCIssuerFixture: Sendable {
    enum Mode: Sendable {
        case up
        case down
        case slow(Duration)
    }

    enum Key: @unchecked Sendable {
        case rsa(_RSA.Signing.PrivateKey)
        case p256(P256.Signing.PrivateKey)
    }

    private struct State {
        var keys: [(kid: String, key: Key)] = []
        var mode: Mode = .up
        var maxAge: Int? = 3600
        var jwksRequests = 0
    }

    let port: Int
    private let state = Mutex(State())

    var issuer: String { "http://127.0.0.1:\(port)" }
    var jwksURL: String { issuer + "/jwks" }
    var jwksRequests: Int { state.withLock { $0.jwksRequests } }

    private init(port: Int) { self.port = port }

    /// Serves the provider for the duration of `body`.
    static func with<T: Sendable>(_ body: @Sendable (OIDCIssuerFixture) async throws -> T) async throws -> T {
        let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: 0) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                }
            }
        let fixture = OIDCIssuerFixture(port: listener.channel.localAddress!.port!)
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                try await listener.executeThenClose { connections in
                    try await withThrowingDiscardingTaskGroup { handlers in
                        for try await connection in connections {
                            handlers.addTask { try? await fixture.serve(connection) }
                        }
                    }
                }
                return nil
            }
            defer { group.cancelAll() }
            let result = try await body(fixture)
            listener.channel.close(promise: nil)
            return result
        }
    }

    private func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async throws {
        try await connection.executeThenClose { inbound, outbound in
            for try await part in inbound {
                guard case .head(let head) = part else { continue }
                let (mode, body, maxAge) = state.withLock { state -> (Mode, [UInt8]?, Int?) in
                    if head.uri == "/jwks" { state.jwksRequests += 1 }
                    return (state.mode, self.document(for: head.uri, state), state.maxAge)
                }
                if case .slow(let delay) = mode { try await Task.sleep(for: delay) }
                var status = HTTPResponseStatus.ok
                var payload = body ?? Array("not found".utf8)
                if body == nil { status = .notFound }
                if case .down = mode {
                    status = .serviceUnavailable
                    payload = Array("down".utf8)
                }
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: "application/json")
                headers.add(name: "Content-Length", value: "\(payload.count)")
                if let maxAge { headers.add(name: "Cache-Control", value: "public, max-age=\(maxAge)") }
                try await outbound.write(.head(HTTPResponseHead(version: head.version, status: status, headers: headers)))
                try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: payload))))
                try await outbound.write(.end(nil))
            }
        }
    }

    private func document(for uri: String, _ state: State) -> [UInt8]? {
        let object: [String: Any]
        switch uri {
        case "/.well-known/openid-configuration":
            object = ["issuer": issuer, "jwks_uri": jwksURL]
        case "/jwks":
            object = ["keys": state.keys.map { Self.jwk($0.kid, $0.key) }]
        default:
            return nil
        }
        return Array(try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
    }

    // MARK: Keys

    @discardableResult
    func addRSAKey(_ kid: String) throws -> Key {
        let key = Key.rsa(try _RSA.Signing.PrivateKey(keySize: .bits2048))
        state.withLock { $0.keys.append((kid, key)) }
        return key
    }

    @discardableResult
    func addP256Key(_ kid: String) -> Key {
        let key = Key.p256(P256.Signing.PrivateKey())
        state.withLock { $0.keys.append((kid, key)) }
        return key
    }

    func removeKey(_ kid: String) { state.withLock { $0.keys.removeAll { $0.kid == kid } } }
    func setMode(_ mode: Mode) { state.withLock { $0.mode = mode } }
    func setMaxAge(_ seconds: Int?) { state.withLock { $0.maxAge = seconds } }
    func key(_ kid: String) -> Key? { state.withLock { $0.keys.first { $0.kid == kid }?.key } }

    static func jwk(_ kid: String, _ key: Key) -> [String: Any] {
        switch key {
        case .rsa(let key):
            let primitives = try! key.publicKey.getKeyPrimitives()
            return ["kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                    "n": Base64URL.encode(primitives.modulus), "e": Base64URL.encode(primitives.publicExponent)]
        case .p256(let key):
            let raw = key.publicKey.rawRepresentation
            return ["kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                    "x": Base64URL.encode(raw.prefix(32)), "y": Base64URL.encode(raw.suffix(32))]
        }
    }

    // MARK: Tokens

    /// Claims of a valid token for `subject` at `now`, for `audience`.
    func claims(subject: String, audience: String, now: Timestamp, email: String? = nil, emailVerified: Bool = true, lifetime: Int64 = 3600) -> [String: Any] {
        var claims: [String: Any] = [
            "iss": issuer, "aud": audience, "sub": subject,
            "iat": now.secondsSinceEpoch, "exp": now.secondsSinceEpoch + lifetime,
        ]
        if let email {
            claims["email"] = email
            claims["email_verified"] = emailVerified
        }
        return claims
    }

    /// A compact JWS of `claims` signed with the key `kid` (or `with`), with header fields
    /// `alg` and `kid` (overridable) plus `extraHeader`.
    func token(_ claims: [String: Any], kid: String, alg: String? = nil, with key: Key? = nil, extraHeader: [String: Any] = [:]) throws -> String {
        let signingKey = try #require(key ?? self.key(kid))
        var header: [String: Any] = ["kid": kid, "typ": "JWT"]
        switch signingKey {
        case .rsa: header["alg"] = "RS256"
        case .p256: header["alg"] = "ES256"
        }
        if let alg { header["alg"] = alg }
        header.merge(extraHeader) { _, new in new }
        let input = Base64URL.encode(try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])) + "."
            + Base64URL.encode(try JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys]))
        let signature: Data
        switch signingKey {
        case .rsa(let key):
            signature = try key.signature(for: SHA256.hash(data: Data(input.utf8)), padding: _RSA.Signing.Padding.insecurePKCS1v1_5).rawRepresentation
        case .p256(let key):
            signature = try key.signature(for: Data(input.utf8)).rawRepresentation
        }
        return input + "." + Base64URL.encode(signature)
    }
}
