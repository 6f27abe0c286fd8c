import Foundation
import LicenseCore
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The plain-HTTP side port for operators: `GET /health` (the process answers), `GET /ready`
/// (`Readiness`: 200, or 503 with a JSON body naming each failing check) and `GET /metrics`
/// (what `metrics` renders, Prometheus text). It must never slow the TLS port: a few
/// connections at a time, one small GET each, and no work per request beyond reading state.
/// Backends are probed on a timer, not per request.
public final class OpsServer: Service {
    /// Where and how it listens.
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// Connections at most at once; more are closed at once.
        public var maxConnections = 8
        /// How often the backends are probed, and how long a probe may take.
        public var probeInterval: Duration = .seconds(5)
        public var probeDeadline: Duration = .seconds(2)
        /// How long a connection has to send its request.
        public var requestTimeout: Duration = .seconds(5)
        /// Whether failing to listen stops the daemon (an address the operator chose) or is
        /// logged and the daemon runs without its ops port (the default address, which another
        /// program, such as a local Prometheus, may hold).
        public var required = true

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
    }

    private let configuration: Configuration
    private let readiness: Readiness
    private let service: LicenseService
    private let metrics: @Sendable () -> [UInt8]
    private let logger: Logger
    private let onListening: @Sendable (SocketAddress) -> Void
    private let open = Atomic<Int>(0)
    private let process = ProcessMetrics()
    private let ready = Gauge(label: "licensed_ready")
    private let leaseWriter: LeaseWriterService?
    private let writeBehindLag = Gauge(label: "licensed_write_behind_lag_seconds")

    /// `metrics` renders the exposition of the process's metrics backend (the executable
    /// bootstraps it); `onListening` is called with the bound address.
    public init(
        configuration: Configuration, readiness: Readiness, service: LicenseService, leaseWriter: LeaseWriterService? = nil, logger: Logger,
        metrics: @escaping @Sendable () -> [UInt8], onListening: @escaping @Sendable (SocketAddress) -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.readiness = readiness
        self.service = service
        self.leaseWriter = leaseWriter
        self.metrics = metrics
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let listener: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>
        do {
            listener = try await bind()
        } catch where !configuration.required {
            logger.warning(
                "the ops port could not listen; health, readiness and metrics are off: set --ops-listen HOST:PORT (or none)",
                metadata: ["address": "\(configuration.host):\(configuration.port)", "error": "\(error)"]
            )
            // A service that returns ends the daemon: wait for shutdown instead.
            try? await gracefulShutdown()
            return
        }
        try await serve(listener)
    }

    private func bind() async throws -> NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never> {
        try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 16)
            .bind(host: configuration.host, port: configuration.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                }
            }
    }

    private func serve(_ listener: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>) async throws {
        if let address = listener.channel.localAddress {
            logger.info("ops port listening", metadata: ["address": "\(address)"])
            onListening(address)
        }
        let readiness = self.readiness, service = self.service, configuration = self.configuration
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                // Probes on a timer, so a scrape or a readiness check never waits on a backend.
                while !Task.isCancelled {
                    await readiness.probe(service, deadline: configuration.probeDeadline)
                    guard (try? await Task.sleep(for: configuration.probeInterval)) != nil else { return }
                }
            }
            try await withGracefulShutdownHandler {
                try await listener.executeThenClose { inbound in
                    try await withThrowingDiscardingTaskGroup { connections in
                        for try await connection in inbound {
                            guard self.open.add(1, ordering: .relaxed).newValue <= configuration.maxConnections else {
                                self.open.subtract(1, ordering: .relaxed)
                                try? await connection.executeThenClose { _, _ in }
                                continue
                            }
                            connections.addTask {
                                defer { self.open.subtract(1, ordering: .relaxed) }
                                await self.serve(connection)
                            }
                        }
                    }
                }
            } onGracefulShutdown: {
                listener.channel.close(promise: nil)
            }
            group.cancelAll()
        }
    }

    /// One request per connection, then close.
    private func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async {
        let channel = connection.channel
        let timeout = channel.eventLoop.scheduleTask(in: TimeAmount(configuration.requestTimeout)) { channel.close(promise: nil) }
        defer { timeout.cancel() }
        try? await connection.executeThenClose { inbound, outbound in
            var head: HTTPRequestHead?
            var bodyBytes = 0
            for try await part in inbound {
                switch part {
                case .head(let request): head = request
                case .body(let buffer): bodyBytes += buffer.readableBytes
                case .end: break
                }
                if case .end = part { break }
                if bodyBytes > 1024 { break }
            }
            guard let head else { return }
            let (status, contentType, body) = bodyBytes > 1024
                ? (HTTPResponseStatus.payloadTooLarge, "text/plain", Array("request too large\n".utf8))
                : self.answer(head)
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: contentType)
            headers.add(name: "Content-Length", value: String(body.count))
            headers.add(name: "Connection", value: "close")
            // Every answer is about this instant: no cache may keep it.
            headers.add(name: "Cache-Control", value: "no-store")
            try await outbound.write(.head(HTTPResponseHead(version: head.version, status: status, headers: headers)))
            if head.method != .HEAD { try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body)))) }
            try await outbound.write(.end(nil))
        }
    }

    private func answer(_ head: HTTPRequestHead) -> (HTTPResponseStatus, String, [UInt8]) {
        guard head.method == .GET || head.method == .HEAD else {
            return (.methodNotAllowed, "text/plain", Array("only GET\n".utf8))
        }
        switch head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri {
        case "/health":
            return (.ok, "application/json", Array(#"{"status":"ok"}"#.utf8) + [10])
        case "/ready":
            let failing = readiness.failing()
            let document: [String: Any] = failing.isEmpty ? ["status": "ready"] : ["status": "not ready", "failing": failing]
            let json = (try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys])) ?? Data()
            return (failing.isEmpty ? .ok : .serviceUnavailable, "application/json", Array(json) + [10])
        case "/metrics":
            // Read at scrape time: the process's own counters and the readiness already known.
            process.update()
            ready.record(readiness.failing().isEmpty ? 1 : 0)
            if let leaseWriter { writeBehindLag.record(Double(leaseWriter.writer.lag().milliseconds) / 1000) }
            return (.ok, "text/plain; version=0.0.4; charset=utf-8", metrics())
        default:
            return (.notFound, "text/plain", Array("not found: try /health, /ready or /metrics\n".utf8))
        }
    }
}
