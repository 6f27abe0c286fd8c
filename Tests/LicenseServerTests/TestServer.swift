import Foundation
import LicenseClient
import LicenseCore
import LicensePostgres
import LicenseRedis
import LicenseServer
import LicenseWire
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Testing

/// Runs `licensed`'s server on its embedded default on an ephemeral loopback port, in a fresh
/// temporary data folder, for the duration of `body`; then shuts it down gracefully.
struct TestServer: Sendable {
    static let bootstrapKey = "lk_test_bootstrap_operator_key_0001"

    let port: Int
    let caFile: String
    let clock: ManualWallClock
    let service: LicenseService
    let group: ServiceGroup

    /// Begins the server's graceful shutdown (the harness also does this when the body returns).
    func shutdown() async { await group.triggerGracefulShutdown() }

    var endpoint: LicenseServerEndpoint { LicenseServerEndpoint(host: "127.0.0.1", port: port, caFile: caFile) }

    static func run(
        clock: ManualWallClock = ManualWallClock(start: SystemWallClock().now()),
        redis: RedisConfiguration? = nil,
        postgres: PostgresSettings? = nil,
        dataDirectory: String? = nil,
        port: Int = 0,
        configure: @Sendable (inout ServerConfiguration) -> Void = { _ in },
        settings configureSettings: @Sendable (inout ServerEnvironment.Settings) -> Void = { _ in },
        _ body: @Sendable (TestServer) async throws -> Void
    ) async throws {
        // A given data folder outlives the run (a restart reuses it); a fresh one is removed.
        let dir = dataDirectory ?? FileManager.default.temporaryDirectory.appendingPathComponent("licensed-\(UUID().uuidString)").path
        defer { if dataDirectory == nil { try? FileManager.default.removeItem(atPath: dir) } }
        var settings = ServerEnvironment.Settings(dataDirectory: dir)
        settings.bootstrapAPIKey = bootstrapKey
        settings.redis = redis
        settings.postgres = postgres
        settings.migrateOnStart = true
        configureSettings(&settings)
        let logger = {
            var logger = Logger(label: "test")
            logger.logLevel = .warning
            return logger
        }()
        try await ServerEnvironment.with(settings, clock: clock, logger: logger) { environment in
            var configuration = ServerConfiguration(tls: environment.tls)
            configuration.port = port
            configure(&configuration)
            let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
            let server = LicenseServer(
                configuration: configuration,
                dispatcher: Dispatcher(service: environment.service, maxFrameBytes: configuration.maxFrameBytes, identity: environment.identity, logger: logger),
                logger: logger
            ) { address in
                portContinuation.yield(address.port ?? 0)
                portContinuation.finish()
            }
            let group = ServiceGroup(configuration: .init(services: [.init(service: environment.leaseWriter), .init(service: server)], logger: logger))
            let ca = environment.caCertificatePath!
            let service = environment.service
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                var iterator = ports.makeAsyncIterator()
                let port = try #require(await iterator.next())
                let harness = TestServer(port: port, caFile: ca, clock: clock, service: service, group: group)
                do {
                    try await body(harness)
                } catch {
                    await group.triggerGracefulShutdown()
                    throw error
                }
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
            }
        }
    }

    /// A connection authenticated with `apiKey` (default: the bootstrap operator).
    func connect(apiKey: String = TestServer.bootstrapKey) async throws -> LicenseConnection {
        let connection = try await LicenseConnection.connect(to: endpoint)
        try await connection.hello(apiKey: apiKey)
        return connection
    }

    /// Creates a tenant, a license of `seats` seats and `users` users over the wire; returns their API keys.
    func setUpLicense(_ license: String = "acme-pro", seats: UInt32, users: Int, leaseTTL: UInt32 = 0, heartbeat: UInt32 = 0, offlineGrace: UInt32 = 0) async throws -> [String] {
        let admin = try await connect()
        let keys = try await admin.setUpLicense(license, seats: seats, users: users, leaseTTL: leaseTTL, heartbeat: heartbeat, offlineGrace: offlineGrace)
        await admin.close()
        return keys
    }
}

/// A connection that writes raw bytes, for frames the client library would never send.
final class RawConnection: Sendable {
    private let channel: any Channel
    private let received: AsyncStream<ByteBuffer>
    nonisolated(unsafe) private var iterator: AsyncStream<ByteBuffer>.Iterator
    nonisolated(unsafe) private var parser = FrameParser(maxFrameBytes: 1 << 20)

    private final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let continuation: AsyncStream<ByteBuffer>.Continuation
        init(_ continuation: AsyncStream<ByteBuffer>.Continuation) { self.continuation = continuation }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { continuation.yield(unwrapInboundIn(data)) }
        func channelInactive(context: ChannelHandlerContext) { continuation.finish() }
        func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
    }

    /// Connects over TLS (trusting `caFile`) or, with `caFile` nil, in plaintext, from the
    /// loopback address `source` (`127.0.0.1`; any of 127.0.0.0/8 acts as another client).
    init(port: Int, caFile: String?, source: String = "127.0.0.1") async throws {
        let (stream, continuation) = AsyncStream.makeStream(of: ByteBuffer.self)
        var sslContext: NIOSSLContext?
        if let caFile {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
            tls.applicationProtocols = [WireProtocol.alpn]
            sslContext = try NIOSSLContext(configuration: tls)
        }
        let context = sslContext
        channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let context { try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil)) }
                    try channel.pipeline.syncOperations.addHandler(Collector(continuation))
                }
            }
            .bind(to: try SocketAddress(ipAddress: source, port: 0))
            .connect(host: "127.0.0.1", port: port).get()
        received = stream
        iterator = stream.makeAsyncIterator()
    }

    func write(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
    }

    func write(frame: ClientFrame) async throws {
        try await channel.writeAndFlush(try FrameEncoder.frame(frame))
    }

    /// The next server frame, or nil when the server closed the connection first.
    func readFrame() async throws -> ServerFrame? {
        while true {
            if case .frame(let body) = parser.next() { return try ServerFrame.decode(body) }
            guard let bytes = await iterator.next() else { return nil }
            parser.append(bytes)
        }
    }

    /// Whether the server closes the connection (reads until the end).
    func readsUntilClosed() async -> Bool {
        while await iterator.next() != nil {}
        return true
    }

    func close() async { try? await channel.close() }
}

extension ClientFrame {
    static func make(id: UInt64, _ call: ClientFrame.OneOf_Call?) -> ClientFrame {
        var frame = ClientFrame()
        frame.id = id
        frame.call = call
        return frame
    }

    static func hello(id: UInt64, apiKey: String) -> ClientFrame {
        var hello = Coditect_License_V1_Hello()
        hello.protocolVersion = 1
        hello.apiKey = apiKey
        return .make(id: id, .hello(hello))
    }
}

/// Runs `body`, failing the test if it takes longer than `limit` (guards tests against hangs).
func within<T: Sendable>(_ limit: Duration = .seconds(30), _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withDeadline(limit, orThrow: {
        LicenseCallError(code: .deadlineExceeded, reason: "TEST_TIMEOUT", message: "the test step took longer than \(limit)")
    }, body)
}

extension LicenseConnection {
    /// On a connection signed in as an operator: creates tenant `t-<license>`, the license and
    /// `users` users named `user0`…; returns the users' API keys.
    func setUpLicense(_ license: String, seats: UInt32, users: Int, leaseTTL: UInt32 = 0, heartbeat: UInt32 = 0, offlineGrace: UInt32 = 0) async throws -> [String] {
        var tenant = Coditect_License_V1_CreateTenantRequest()
        tenant.id = "t-" + license
        tenant.name = "Tenant of \(license)"
        _ = try await call(.createTenant(tenant))
        var request = Coditect_License_V1_CreateLicenseRequest()
        request.id = license
        request.tenantID = tenant.id
        request.name = "Pro"
        request.seats = seats
        request.leaseTtlS = leaseTTL
        request.heartbeatIntervalS = heartbeat
        request.offlineGraceS = offlineGrace
        _ = try await call(.createLicense(request))
        var keys: [String] = []
        for i in 0..<users {
            var user = Coditect_License_V1_CreateUserRequest()
            user.tenantID = tenant.id
            user.name = "user\(i)"
            keys.append(try await call(.createUser(user)).user.apiKey)
        }
        return keys
    }
}
