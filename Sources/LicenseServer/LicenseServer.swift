import LicenseCore
import LicenseWire
import Logging
import Metrics
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Synchronization

/// The `licensed` TLS listener as a lifecycle `Service`.
///
/// Each connection runs in its own child task of a discarding task group. Requests on a
/// connection are served concurrently and answered as they complete, with the client's id.
/// On graceful shutdown the listener closes, every connection is sent a going-away notice,
/// in-flight calls finish (up to the drain timeout), and then the connections close. Seats are
/// kept: clients reconnect elsewhere and heartbeat as before.
public final class LicenseServer: Service {
    private let configuration: ServerConfiguration
    private let dispatcher: Dispatcher
    private let logger: Logger
    private let onListening: @Sendable (SocketAddress) -> Void
    private let readiness: Readiness?
    private let connections = Meter(label: "licensed_connections_open")
    private let callsInFlight = Meter(label: "licensed_calls_in_flight")
    private let refusedConnections = Counter(label: "licensed_connections_refused_total")
    private let sessionNotices = SessionNotices()

    /// Creates the server. `onListening` is called with the bound address once listening
    /// (tests use it to learn an ephemeral port). `readiness`, when given, learns when the
    /// listener accepts and when it starts draining (at once on graceful shutdown).
    public init(
        configuration: ServerConfiguration, dispatcher: Dispatcher, readiness: Readiness? = nil,
        logger: Logger = Logger(label: "coditect.license.server"),
        onListening: @escaping @Sendable (SocketAddress) -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.dispatcher = dispatcher
        self.readiness = readiness
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        TLSHandshakeMetrics.createSeries()
        let sslContext = try NIOSSLContext(configuration: configuration.effectiveTLS)
        let config = configuration
        let gate = ConnectionGate(ConnectionLimits(total: connectionCap(), perAddress: config.maxConnectionsPerAddress))
        let socket = try ListeningSocket.open(host: config.host, port: config.port, backlog: 1024)
        let logger = self.logger
        let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(DescriptorReserve(listener: socket, logger: logger)) }
            }
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            // One read of at most 16 KiB per wake-up: a connection's frames are decoded one
            // read at a time, so what waits for the connection's reader stays small when it stops.
            .childChannelOption(.maxMessagesPerRead, value: 1)
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 2048, maximum: 16_384))
            .bind(socket) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(TLSSniffer())
                    try sync.addHandler(NIOSSLServerHandler(context: sslContext))
                    try sync.addHandler(TLSHandshakeMetrics())
                    try sync.addHandler(FrameReader(
                        maxFrameBytes: config.maxFrameBytes, frameTimeout: TimeAmount(config.frameTimeout),
                        idleTimeout: TimeAmount(config.idleTimeout)
                    ))
                    return try NIOAsyncChannel<InboundEvent, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        if let address = listener.channel.localAddress {
            logger.info("listening", metadata: ["address": "\(address)"])
            readiness?.update { $0.listenerStarted() }
            onListening(address)
        }
        let readiness = self.readiness
        let dispatcher = self.dispatcher
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            // Refused sign-ins counted per address are recorded when their interval ends.
            tasks.addTask {
                let interval = dispatcher.refusalLog.interval
                while (try? await Task.sleep(for: interval)) != nil {
                    await dispatcher.flushRefusalLog()
                }
            }
            try await withGracefulShutdownHandler {
                try await listener.executeThenClose { inbound in
                    try await withThrowingDiscardingTaskGroup { group in
                        for try await connection in inbound {
                            // Admitted here, in accept order, before the connection's task runs.
                            let peer = connection.channel.remoteAddress?.ipAddress ?? "unknown"
                            let admission = gate.arrived(from: peer)
                            group.addTask { await self.admit(connection, admission, from: peer, gate: gate) }
                        }
                    }
                }
            } onGracefulShutdown: {
                // Not ready from this instant: load balancers stop sending new clients here.
                readiness?.update { $0.drainStarted() }
                listener.channel.close(promise: nil)
            }
            tasks.cancelAll()
        }
        await dispatcher.flushRefusalLog(all: true)
        logger.info("listener closed; all connections drained")
    }

    /// The total connection cap: the configured one, or the default that fits the open-file limit.
    private func connectionCap() -> Int {
        let descriptors = ConnectionLimits.descriptorLimit()
        guard let configured = configuration.maxConnections else {
            let cap = ConnectionLimits.fitting(descriptors: descriptors ?? .max)
            logger.info("connection cap", metadata: ["max_connections": "\(cap)", "open_file_limit": "\(descriptors.map(String.init) ?? "unlimited")"])
            return cap
        }
        if let descriptors, configured > ConnectionLimits.fitting(descriptors: descriptors, preferred: .max) {
            logger.warning(
                "--max-connections is more than the open-file limit leaves room for; raise `ulimit -n`",
                metadata: ["max_connections": "\(configured)", "open_file_limit": "\(descriptors)"]
            )
        }
        return configured
    }

    // MARK: - One connection

    /// Serves `connection` if the caps admitted it; otherwise answers `TOO_MANY_CONNECTIONS`
    /// (or, when many are being refused already, just closes it).
    private func admit(_ connection: NIOAsyncChannel<InboundEvent, ByteBuffer>, _ admission: ConnectionLimits.Admission, from peer: String, gate: ConnectionGate) async {
        switch admission {
        case .admitted:
            defer { gate.release(peer) }
            await serve(connection, peer: peer)
        case .refuse(let error):
            defer { gate.refusalEnded() }
            refusedConnections.increment()
            await refuse(connection, error)
        case .close:
            refusedConnections.increment()
            try? await connection.executeThenClose { _, _ in }
        }
    }

    /// Answers `error` as the connection's only frame, then closes it; the TLS handshake and the
    /// write get 2 s, after which the connection closes regardless.
    private func refuse(_ connection: NIOAsyncChannel<InboundEvent, ByteBuffer>, _ error: LicenseError) async {
        let channel = connection.channel
        let deadline = channel.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
        defer { deadline.cancel() }
        try? await connection.executeThenClose { _, _ in
            guard let bytes = try? FrameEncoder.frame(ServerFrame.failure(id: 0, error), allocator: channel.allocator) else { return }
            // Completes once the frame is encrypted and written, after the handshake.
            try await channel.writeAndFlush(bytes)
        }
    }

    private func serve(_ connection: NIOAsyncChannel<InboundEvent, ByteBuffer>, peer: String) async {
        connections.increment()
        let connectionID = sessionNotices.connectionID()
        defer {
            connections.decrement()
            sessionNotices.closed(connectionID)
        }
        let channel = connection.channel
        let machine = LockedStateMachine(maxRefusedHellos: configuration.maxRefusedHellos, answerLimit: dispatcher.answerLimit(announced: 0))
        let limiter = InFlightLimiter(slots: configuration.maxInFlightPerConnection)
        let (answers, answer) = AsyncStream.makeStream(of: ServerFrame.self)
        let dispatcher = self.dispatcher
        let drainTimeout = configuration.drainTimeout
        let reconnectAfter = configuration.reconnectAfter
        let writeStallTimeout = TimeAmount(configuration.writeStallTimeout)
        let signInTimeout = configuration.signInTimeout
        let recheck = CredentialRecheck(interval: configuration.credentialRecheckInterval)

        do {
            try await connection.executeThenClose { inbound, outbound in
                await withDiscardingTaskGroup { group in
                    // The one writer: answers in completion order; its end closes the channel.
                    // Every answer owed to a request frame (refusals of undecodable and id-0 frames
                    // too) holds its reader slot until it is written, so a peer that does not read
                    // stops being read: at most `maxInFlightPerConnection` answers wait, before and
                    // after sign-in. A write that cannot proceed for `writeStallTimeout` closes the
                    // connection. Notices hold no slot.
                    group.addTask {
                        for await frame in answers {
                            if let bytes = Self.encode(frame, within: machine.withLock(\.answerLimit), allocator: channel.allocator) {
                                // Only a peer that stopped reading makes a write wait; arm the timer then.
                                let stall = channel.isWritable ? nil : channel.eventLoop.scheduleTask(in: writeStallTimeout) { channel.close(promise: nil) }
                                try? await outbound.write(bytes)
                                stall?.cancel()
                            }
                            if case .notice = frame.result { continue }
                            limiter.release()
                            if frame.id != 0, machine.withLock({ $0.answerWritten() }) == .close { answer.finish() }
                        }
                        limiter.close()
                        try? await channel.close()
                    }

                    // A connection that has not signed in within the sign-in timeout is refused.
                    let signInDeadline = channel.eventLoop.scheduleTask(in: TimeAmount(signInTimeout)) {
                        guard machine.withLock({ $0.signInDeadlinePassed() }) == .close else { return }
                        answer.yield(.failure(id: 0, LicenseError(.unauthenticated, .signInTimeout, "sign in (Hello) within \(signInTimeout) of connecting")))
                        answer.finish()
                    }
                    defer { signInDeadline.cancel() }

                    await withGracefulShutdownHandler {
                        do {
                            var iterator = inbound.makeAsyncIterator()
                            while await limiter.acquire(), let event = try await iterator.next() {
                                switch event {
                                case .fatal(let error):
                                    answer.yield(.failure(id: 0, error))
                                    if machine.withLock({ $0.fatal() }) == .close { answer.finish() }
                                    return
                                case .frame(let body):
                                    await self.handleFrame(body, connectionID: connectionID, peer: peer, channel: channel, recheck: recheck, machine: machine, limiter: limiter, answer: answer, group: &group, dispatcher: dispatcher)
                                }
                            }
                        } catch {
                            // The peer reset the connection or TLS failed: nothing more can be read.
                        }
                        if machine.withLock({ $0.inputClosed() }) == .close { answer.finish() }
                    } onGracefulShutdown: {
                        let (notify, close) = machine.withLock { $0.beginDrain() }
                        if notify { answer.yield(.goingAway(reason: "server shutting down", reconnectAfter: reconnectAfter)) }
                        if close == .close {
                            answer.finish()
                        } else {
                            // In-flight calls get the drain timeout; then the connection closes regardless.
                            channel.eventLoop.scheduleTask(in: TimeAmount(drainTimeout)) { channel.close(promise: nil) }
                        }
                    }
                }
            }
        } catch {
            logger.debug("connection ended with an error", metadata: ["error": "\(type(of: error))"])
        }
    }

    private func handleFrame(
        _ body: ByteBuffer, connectionID: UInt64, peer: String, channel: any Channel, recheck: CredentialRecheck, machine: LockedStateMachine, limiter: InFlightLimiter,
        answer: AsyncStream<ServerFrame>.Continuation, group: inout DiscardingTaskGroup, dispatcher: Dispatcher
    ) async {
        let request: ClientFrame
        do {
            request = try ClientFrame.decode(body)
        } catch {
            // The framing is intact, so the connection continues; the id is unknown, hence 0.
            // The refusal keeps the frame's reader slot until it is written.
            answer.yield(.failure(id: 0, error as? LicenseError ?? LicenseError(.invalidArgument, .malformedFrame, "malformed frame")))
            return
        }
        guard request.id != 0 else {
            answer.yield(.failure(id: 0, LicenseError(.invalidArgument, .malformedFrame, "a request id must be non-zero")))
            return
        }
        var isHello = false
        if case .hello = request.call { isHello = true }
        switch machine.withLock({ $0.requestReceived(isHello: isHello) }) {
        case .reject(let error):
            answer.yield(.failure(id: request.id, error))
        case .authenticate:
            // Inline: nothing else on this connection is read until the credential is checked.
            // Only a Hello without a credential looks at the client certificate.
            let certificateName = request.hello.credential == nil ? await ClientCertificate.commonName(on: channel) : nil
            let (frame, principal) = await dispatcher.hello(id: request.id, request.hello, peer: peer, clientCertificateName: certificateName)
            let close: ConnectionStateMachine.CloseAction = machine.withLock { state in
                if let principal {
                    state.helloSucceeded(principal, answerLimit: dispatcher.answerLimit(announced: request.hello.maxFrameBytes))
                    return .none
                }
                return state.helloFailed()
            }
            if principal != nil { recheck.signedIn(at: dispatcher.service.clock.now()) }
            answer.yield(frame)
            if close == .close {
                // Too many refused Hellos: this refusal is the connection's last answer.
                answer.yield(.failure(id: 0, LicenseError(.unauthenticated, .tooManyRefusedHellos, "too many refused sign-ins on this connection")))
                answer.finish()
            }
        case .dispatch(let principal):
            let notices = sessionNotices
            let inFlight = callsInFlight
            group.addTask {
                inFlight.increment()
                defer { inFlight.decrement() }
                if recheck.claimDue(at: dispatcher.service.clock.now()), let refusal = await dispatcher.recheck(principal) {
                    // The credential lapsed while the connection was open: unauthenticated until a new Hello.
                    machine.withLock { $0.credentialLapsed(principal) }
                    answer.yield(.failure(id: request.id, refusal))
                    return
                }
                let frame = await dispatcher.handle(request, as: principal, answerLimit: machine.withLock(\.answerLimit))
                notices.answered(request, with: frame, on: connectionID, notices: answer)
                answer.yield(frame)
            }
        }
    }
}

extension LicenseServer {
    /// The frame for `frame`; an answer larger than `limit` (what the client accepts) is
    /// replaced by an `ANSWER_TOO_LARGE` refusal with its id, never sent oversized.
    static func encode(_ frame: ServerFrame, within limit: Int, allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard let bytes = try? FrameEncoder.frame(frame, allocator: allocator) else { return nil }
        guard bytes.readableBytes - 4 > limit else { return bytes }
        let refusal = LicenseError(.resourceExhausted, .answerTooLarge, "the answer does not fit in a frame of \(limit) bytes; ask for less (a page) or announce a larger max_frame_bytes in Hello")
        return try? FrameEncoder.frame(ServerFrame.failure(id: frame.id, refusal), allocator: allocator)
    }
}

/// A connection's state machine behind a lock, shared by its reader, writer and call tasks.
final class LockedStateMachine: Sendable {
    private let machine: Mutex<ConnectionStateMachine>

    init(maxRefusedHellos: Int = 3, answerLimit: Int = WireProtocol.defaultMaxFrameBytes) {
        machine = Mutex(ConnectionStateMachine(maxRefusedHellos: maxRefusedHellos, answerLimit: answerLimit))
    }

    func withLock<T>(_ body: (inout ConnectionStateMachine) -> T) -> T {
        machine.withLock { body(&$0) }
    }
}
