import ArgumentParser
import Foundation
import LicenseClient
import LicenseServer
import LicenseTokens

/// `licensed ping`: one round trip over the license protocol, for smoke tests and the Helm
/// chart's `helm test` hook (the image holds no other client).
struct Ping: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Connect to a license server with TLS and check that it answers.",
        discussion: """
        Connects (TLS 1.2 or later, the protocol's ALPN, the server certificate checked against \
        --ca or the system's roots) and sends one call. Without an API key the call is one the \
        server must refuse with HELLO_REQUIRED, which proves the framing and the dispatcher \
        without signing in (nothing is audited or throttled). With --api-key-file it signs in \
        and fetches the published signing keys, which must hold at least one. Exits 0 on \
        success, 1 with one line naming what failed.

        Example:
          licensed ping licensed.example.com:7443 --ca /etc/licensed/tls/ca.crt
        """
    )

    @Argument(help: "HOST:PORT of the license server (port 7443 when omitted).") var server: String
    @Option(help: "PEM CA that signed the server certificate (default: the system's roots).") var ca: String?
    @Option(name: .customLong("server-name"), help: "The name to check the certificate against (default: HOST).") var serverName: String?
    @Option(name: .customLong("api-key-file"), help: "A file holding an API key to sign in with.") var apiKeyFile: String?
    @Option(parsing: .unconditional, help: "Seconds to wait for the connection and the answers, 1 to 300 (default 10).") var timeout: Int = 10

    func validate() throws {
        guard (1...300).contains(timeout) else { throw ValidationError("--timeout must be 1 to 300 seconds, not \(timeout)") }
    }

    func run() async throws {
        var endpoint = try LicenseServerEndpoint(parsing: server, caFile: ca)
        endpoint.serverName = serverName
        endpoint.connectTimeout = .seconds(timeout)
        endpoint.callTimeout = .seconds(timeout)
        let apiKey = try apiKeyFile.map(Self.readAPIKey)
        let started = ContinuousClock.now
        let connection: LicenseConnection
        do {
            connection = try await LicenseConnection.connect(to: endpoint)
        } catch {
            throw LicensedFailure("cannot connect to \(server): \(error)")
        }
        do {
            let summary = try await Self.check(connection, apiKey: apiKey)
            await connection.close()
            print("\(server): \(summary) in \(started.duration(to: .now).formatted(.units(allowed: [.milliseconds])))")
        } catch {
            await connection.close()
            throw LicensedFailure("\(server): \(error)")
        }
    }

    private static func check(_ connection: LicenseConnection, apiKey: String?) async throws -> String {
        guard let apiKey else {
            let answer = try await connection.send(.getSigningKeys(.init()))
            guard answer.status.reason == "HELLO_REQUIRED" else {
                throw LicensedFailure("expected the refusal HELLO_REQUIRED, got \(answer.status.code) \(answer.status.reason)")
            }
            return "TLS and the license protocol answer"
        }
        _ = try await connection.hello(apiKey: apiKey, clientName: "licensed-ping", clientVersion: BuildInfo.version)
        let keys = try JWKS.decode(try await connection.signingKeysJSON())
        guard !keys.isEmpty else { throw LicensedFailure("signed in, but the server publishes no signing keys") }
        return "signed in; \(keys.count) signing key\(keys.count == 1 ? "" : "s") published"
    }

    private static func readAPIKey(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationError("cannot read the API key file \(path)")
        }
        let key = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !key.isEmpty else { throw ValidationError("the API key file \(path) is empty") }
        return key
    }
}
