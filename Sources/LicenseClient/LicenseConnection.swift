import Foundation
import LicenseCore
import LicenseTokens
import LicenseWire
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// Where and how to reach a license server.
public struct LicenseServerEndpoint: Sendable {
    public var host: String
    public var port: Int
    /// PEM file of the CA that signed the server certificate (`DATA/tls/ca.pem` on the embedded
    /// default). `nil` uses the system's trust store.
    public var caFile: String?
    /// The name to check the certificate against; defaults to `host` (IP addresses are checked
    /// against the certificate's IP entries).
    public var serverName: String?
    /// Default 10 s.
    public var connectTimeout: Duration = .seconds(10)
    /// Default 15 s per call.
    public var callTimeout: Duration = .seconds(15)
    /// Default 64 KiB, the server's default.
    public var maxFrameBytes: Int = WireProtocol.defaultMaxFrameBytes
    /// A client certificate chain (PEM) and its private key (PEM), presented in the TLS handshake
    /// (mutual TLS); with ``LicenseCredential/clientCertificate`` it identifies an operator.
    public var clientCertificateFile: String?
    public var clientKeyFile: String?

    public init(host: String, port: Int = WireProtocol.defaultPort, caFile: String? = nil) {
        self.host = host
        self.port = port
        self.caFile = caFile
    }

    /// Parses `HOST:PORT` (or `HOST`, port 7443; `[v6]:PORT`).
    public init(parsing text: String, caFile: String? = nil) throws {
        var host = text
        var port = WireProtocol.defaultPort
        if let colon = text.lastIndex(of: ":"), !text.hasSuffix("]"), text.filter({ $0 == ":" }).count == 1 || text.hasPrefix("[") {
            guard let parsed = Int(text[text.index(after: colon)...]), (1...65535).contains(parsed) else {
                throw LicenseCallError(code: .invalidArgument, reason: "INVALID_ENDPOINT", message: "'\(text)' is not HOST:PORT")
            }
            port = parsed
            host = String(text[..<colon])
        }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else {
            throw LicenseCallError(code: .invalidArgument, reason: "INVALID_ENDPOINT", message: "'\(text)' names no host")
        }
        self.init(host: host, port: port, caFile: caFile)
    }
}

/// One TLS connection to a license server. Calls may be made concurrently from any task; each
/// gets its own request id and its answer as soon as the server sends it.
public final class LicenseConnection: Sendable {
    private let channel: any Channel
    private let nextID = Atomic<UInt64>(1)
    private let callTimeout: Duration
    /// The largest frame body this connection accepts; `Hello` announces it to the server.
    private let maxFrameBytes: Int
    /// Server notices (going away, session revoked). Finishes when the connection closes.
    public let notices: AsyncStream<Coditect_License_V1_Notice>

    private init(channel: any Channel, callTimeout: Duration, maxFrameBytes: Int, notices: AsyncStream<Coditect_License_V1_Notice>) {
        self.channel = channel
        self.callTimeout = callTimeout
        self.maxFrameBytes = maxFrameBytes
        self.notices = notices
    }

    /// Opens a TLS connection (TLS 1.2+, ALPN `coditect-license/1`, certificate verified).
    /// `onNotice`, when given, is called on the connection's event loop with each server notice
    /// (as well as the notice being put on ``notices``); it must not block.
    public static func connect(to endpoint: LicenseServerEndpoint, onNotice: (@Sendable (Coditect_License_V1_Notice) -> Void)? = nil) async throws -> LicenseConnection {
        let sslContext = try NIOSSLContext(configuration: try endpoint.tlsConfiguration())
        let serverHostname = endpoint.tlsServerHostname
        let (notices, continuation) = AsyncStream.makeStream(of: Coditect_License_V1_Notice.self)
        let maxFrame = endpoint.maxFrameBytes
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let handshake = loop.makePromise(of: Void.self)
        do {
            let channel = try await ClientBootstrap(group: loop)
                .connectTimeout(TimeAmount(endpoint.connectTimeout))
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let sync = channel.pipeline.syncOperations
                        try sync.addHandler(NIOSSLClientHandler(context: sslContext, serverHostname: serverHostname))
                        try sync.addHandler(HandshakeWaiter(promise: handshake))
                        try sync.addHandler(ClientFrameHandler(maxFrameBytes: maxFrame, notices: continuation, onNotice: onNotice))
                    }
                }
                .connect(host: endpoint.host, port: endpoint.port).get()
            do {
                // The handshake is bounded by the connect timeout as well.
                let timeout = loop.scheduleTask(in: TimeAmount(endpoint.connectTimeout)) { handshake.fail(ChannelError.connectTimeout(TimeAmount(endpoint.connectTimeout))) }
                defer { timeout.cancel() }
                try await handshake.futureResult.get()
            } catch {
                try? await channel.close()
                throw error
            }
            return LicenseConnection(channel: channel, callTimeout: endpoint.callTimeout, maxFrameBytes: maxFrame, notices: notices)
        } catch {
            handshake.fail(ChannelError.ioOnClosedChannel)
            continuation.finish()
            throw LicenseCallError.connectFailure(error, endpoint: endpoint)
        }
    }

    /// Sends one call and returns the server's answer (whatever its status).
    public func send(_ call: ClientFrame.OneOf_Call, timeout: Duration? = nil) async throws -> ServerFrame {
        var frame = ClientFrame()
        frame.id = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        let limit = timeout ?? callTimeout
        frame.timeoutMs = UInt32(clamping: limit.milliseconds)
        frame.call = call
        let promise = channel.eventLoop.makePromise(of: ServerFrame.self)
        // A channel that closed a moment ago has no frame handler left to answer (or fail) the
        // request: its write fails with `ioOnClosedChannel` instead, and so must the request, or
        // it would wait forever. (Other failures are the handler's to report, with the server's
        // reason; completing the promise a second time does nothing.)
        let written = channel.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { error in
            if case ChannelError.ioOnClosedChannel = error { promise.fail(LicenseCallError.connectionClosed()) }
        }
        channel.writeAndFlush(RequestEnvelope(frame: frame, promise: promise, timeout: TimeAmount(limit)), promise: written)
        return try await promise.futureResult.get()
    }

    /// Sends one call; a non-OK status is thrown as `LicenseCallError`.
    public func call(_ call: ClientFrame.OneOf_Call, timeout: Duration? = nil) async throws -> ServerFrame {
        let answer = try await send(call, timeout: timeout)
        guard answer.status.isOK else { throw LicenseCallError(answer.status) }
        return answer
    }

    /// Closes the connection; returns once it is closed and torn down.
    public func close() async {
        try? await channel.close()
        try? await channel.closeFuture.get()
    }

    /// Whether the connection is still open.
    public var isActive: Bool { channel.isActive }

    // MARK: - Session calls

    /// Authenticates with an API key.
    @discardableResult
    public func hello(apiKey: String, clientName: String = "coditect-license-client", clientVersion: String = "1") async throws -> Coditect_License_V1_HelloResult {
        try await hello(.apiKey(apiKey), clientName: clientName, clientVersion: clientVersion)
    }

    /// Authenticates with an API key or an OIDC ID token (a later Hello replaces the credential).
    @discardableResult
    public func hello(_ credential: LicenseCredential, clientName: String = "coditect-license-client", clientVersion: String = "1") async throws -> Coditect_License_V1_HelloResult {
        var hello = Coditect_License_V1_Hello()
        hello.protocolVersion = WireProtocol.version
        hello.clientName = clientName
        hello.clientVersion = clientVersion
        hello.maxFrameBytes = UInt32(clamping: maxFrameBytes)
        switch credential {
        case .apiKey(let key): hello.apiKey = key
        case .idToken(let token): hello.idToken = token
        case .clientCertificate: break
        }
        return try await call(.hello(hello)).hello
    }

    /// Acquires a seat of `licenseID` for this machine.
    public func acquire(licenseID: String, hardwareID: String, idempotencyKey: String = UUID().uuidString, clientInfo: [String: String] = [:]) async throws -> Coditect_License_V1_AcquireResult {
        var request = Coditect_License_V1_AcquireRequest()
        request.licenseID = licenseID
        request.hardwareID = hardwareID
        request.idempotencyKey = idempotencyKey
        request.clientInfo = clientInfo
        return try await call(.acquire(request)).acquire
    }

    /// Renews a session's lease. Pass the expiry of the token held so the server refreshes it when due.
    public func heartbeat(sessionID: String, tokenExpiresAtMs: UInt64 = 0) async throws -> Coditect_License_V1_HeartbeatResult {
        var request = Coditect_License_V1_HeartbeatRequest()
        request.sessionID = sessionID
        request.tokenExpiresAtMs = tokenExpiresAtMs
        return try await call(.heartbeat(request)).heartbeat
    }

    /// Gives a seat back.
    public func release(sessionID: String, timeout: Duration? = nil) async throws {
        var request = Coditect_License_V1_ReleaseRequest()
        request.sessionID = sessionID
        _ = try await call(.release(request), timeout: timeout)
    }

    /// The server's JWKS document.
    public func signingKeysJSON() async throws -> String {
        try await call(.getSigningKeys(.init())).signingKeys.jwksJson
    }

    /// A verifier for lease tokens built from the server's published keys.
    public func tokenVerifier(issuer: String = "coditect-licensed") async throws -> LeaseTokenVerifier {
        LeaseTokenVerifier(keys: try JWKS.decode(try await signingKeysJSON()), issuer: issuer)
    }
}

extension LicenseServerEndpoint {
    /// The client TLS configuration for this endpoint: TLS 1.2 or later, the protocol's ALPN,
    /// the given CA (else the system's roots) and, for mutual TLS, the client certificate.
    public func tlsConfiguration() throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        tls.applicationProtocols = [WireProtocol.alpn]
        if let caFile {
            try Self.requireFile(caFile, what: "CA certificate")
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
            } catch {
                throw LicenseCallError(code: .invalidArgument, reason: "INVALID_CA", message: "cannot read a PEM certificate from \(caFile)")
            }
        }
        if let clientCertificateFile, let clientKeyFile {
            try Self.requireFile(clientCertificateFile, what: "client certificate")
            try Self.requireFile(clientKeyFile, what: "client key")
            do {
                tls.certificateChain = try NIOSSLCertificate.fromPEMFile(clientCertificateFile).map { .certificate($0) }
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: clientKeyFile, format: .pem))
            } catch {
                throw LicenseCallError(code: .invalidArgument, reason: "INVALID_CLIENT_CERTIFICATE", message: "cannot read the client certificate \(clientCertificateFile) and key \(clientKeyFile) (PEM)")
            }
        }
        return tls
    }

    private static func requireFile(_ path: String, what: String) throws {
        guard FileManager.default.fileExists(atPath: path) else {
            throw LicenseCallError(code: .invalidArgument, reason: "NO_SUCH_FILE", message: "no such file: \(path) (the \(what))")
        }
    }

    /// The name checked against the server's certificate (SNI): `serverName` or the host, or
    /// `nil` for an IP address (checked against the certificate's IP entries instead).
    public var tlsServerHostname: String? {
        let name = serverName ?? host
        let isIP = name.contains(":") || name.split(separator: ".").allSatisfy { UInt8($0) != nil }
        return isIP ? nil : name
    }
}
