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
    private let openConnections = OpenConnections()
    private let sampledCalls = Atomic<Int>(0)

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
                    return try NIOAsyncChannel<InboundEvent, Never>(wrappingChannelSynchronously: channel)
                }
            }
        if let address = listener.channel.localAddress {
            logger.info("listening", metadata: ["address": "\(address)"])
            readiness?.update { $0.listenerStarted() }
            onListening(address)
        }
        let readiness = self.readiness
        let dispatcher = self.dispatcher
        let openConnections = self.openConnections
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
                openConnections.drainAll()
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
    private func admit(_ connection: NIOAsyncChannel<InboundEvent, Never>, _ admission: ConnectionLimits.Admission, from peer: String, gate: ConnectionGate) async {
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
            try? await connection.executeThenClose { _ in }
        }
    }

    /// Answers `error` as the connection's only frame, then closes it; the TLS handshake and the
    /// write get 2 s, after which the connection closes regardless.
    private func refuse(_ connection: NIOAsyncChannel<InboundEvent, Never>, _ error: LicenseError) async {
        let channel = connection.channel
        let deadline = channel.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
        defer { deadline.cancel() }
        try? await connection.executeThenClose { _ in
            guard let bytes = try? FrameEncoder.frame(ServerFrame.failure(id: 0, error), allocator: channel.allocator) else { return }
            // Completes once the frame is encrypted and written, after the handshake.
            try await channel.writeAndFlush(bytes)
        }
    }

    private func serve(_ connection: NIOAsyncChannel<InboundEvent, Never>, peer: String) async {
        connections.increment()
        let connectionID = sessionNotices.connectionID()
        defer {
            connections.decrement()
            sessionNotices.closed(connectionID)
            openConnections.closed(connectionID)
        }
        let channel = connection.channel
        let machine = LockedStateMachine(maxRefusedHellos: configuration.maxRefusedHellos, answerLimit: dispatcher.answerLimit(announced: 0))
        let limiter = InFlightLimiter(slots: configuration.maxInFlightPerConnection)
        let writer = AnswerWriter(channel: channel, machine: machine, limiter: limiter, stallTimeout: TimeAmount(configuration.writeStallTimeout))
        let drainTimeout = configuration.drainTimeout
        let reconnectAfter = configuration.reconnectAfter
        let signInTimeout = configuration.signInTimeout
        let recheck = CredentialRecheck(interval: configuration.credentialRecheckInterval)
        openConnections.opened(connectionID) {
            Self.drain(machine: machine, writer: writer, channel: channel, reconnectAfter: reconnectAfter, drainTimeout: drainTimeout)
        }

        do {
            try await connection.executeThenClose { inbound in
                await withDiscardingTaskGroup { group in
                    // Answers are written by the tasks that compute them (`AnswerWriter`), in
                    // completion order; the writer's end closes the channel.

                    // A connection that has not signed in within the sign-in timeout is refused.
                    let signInDeadline = channel.eventLoop.scheduleTask(in: TimeAmount(signInTimeout)) {
                        guard machine.withLock({ $0.signInDeadlinePassed() }) == .close else { return }
                        writer.send(.failure(id: 0, LicenseError(.unauthenticated, .signInTimeout, "sign in (Hello) within \(signInTimeout) of connecting")))
                        writer.finish()
                    }
                    defer { signInDeadline.cancel() }

                    do {
                        var iterator = inbound.makeAsyncIterator()
                        while await limiter.acquire(), let event = try await iterator.next() {
                            switch event {
                            case .fatal(let error):
                                writer.send(.failure(id: 0, error))
                                if machine.withLock({ $0.fatal() }) == .close { writer.finish() }
                                return
                            case .frame(let body):
                                if let signIn = self.handleFrame(body, connectionID: connectionID, peer: peer, channel: channel, recheck: recheck, machine: machine, writer: writer, signInDeadline: signInDeadline, group: &group) {
                                    await Self.run(signIn, in: &group)
                                }
                            }
                        }
                    } catch {
                        // The peer reset the connection or TLS failed: nothing more can be read.
                    }
                    if machine.withLock({ $0.inputClosed() }) == .close { writer.finish() }
                }
                // Every call has answered; wait until the answers are written and the writer closed.
                await writer.closed()
            }
        } catch {
            logger.debug("connection ended with an error", metadata: ["error": "\(type(of: error))"])
        }
    }

    /// Decodes one frame and answers it, starting its call in a child task; a `Hello` is
    /// returned as work for the reader to wait for (`run(_:in:)`), since nothing else on the
    /// connection is read until its credential is checked. Not `async`: the reader task keeps
    /// the largest frame it ever had, and this one would be the largest.
    private func handleFrame(
        _ body: ByteBuffer, connectionID: UInt64, peer: String, channel: any Channel, recheck: CredentialRecheck, machine: LockedStateMachine,
        writer: AnswerWriter, signInDeadline: Scheduled<Void>, group: inout DiscardingTaskGroup
    ) -> (@Sendable () async -> Void)? {
        let dispatcher = self.dispatcher
        let received = ContinuousClock.now
        let request: ClientFrame
        do {
            request = try ClientFrame.decode(body)
        } catch {
            // The framing is intact, so the connection continues; the id is unknown, hence 0.
            // The refusal keeps the frame's reader slot until it is written.
            writer.send(.failure(id: 0, error as? LicenseError ?? LicenseError(.invalidArgument, .malformedFrame, "malformed frame")))
            return nil
        }
        guard request.id != 0 else {
            writer.send(.failure(id: 0, LicenseError(.invalidArgument, .malformedFrame, "a request id must be non-zero")))
            return nil
        }
        var isHello = false
        if case .hello = request.call { isHello = true }
        switch machine.withLock({ $0.requestReceived(isHello: isHello) }) {
        case .reject(let error):
            writer.send(.failure(id: request.id, error))
        case .authenticate:
            // Nothing else on this connection is read until the credential is checked (the reader
            // waits for this, see `run(_:in:)`).
            return { await Self.signIn(request, peer: peer, channel: channel, machine: machine, recheck: recheck, writer: writer, signInDeadline: signInDeadline, dispatcher: dispatcher) }
        case .dispatch(let principal):
            let notices = sessionNotices
            let inFlight = callsInFlight
            let trace = sampledTrace(startedAt: received)
            let logger = self.logger
            group.addTask {
                inFlight.increment()
                defer { inFlight.decrement() }
                trace?.mark("task.started")
                if recheck.claimDue(at: dispatcher.service.clock.now()), let refusal = await dispatcher.recheck(principal) {
                    // The credential lapsed while the connection was open: unauthenticated until a new Hello.
                    machine.withLock { $0.credentialLapsed(principal) }
                    writer.send(.failure(id: request.id, refusal))
                    return
                }
                let frame = await CallTrace.$current.withValue(trace) {
                    await dispatcher.handle(request, as: principal, answerLimit: machine.withLock(\.answerLimit))
                }
                notices.answered(request, with: frame, on: connectionID, writer: writer)
                writer.send(frame)
                if let trace { Self.log(trace, of: request, answer: frame, logger: logger) }
            }
        }
        return nil
    }

    /// Runs `work` (a sign-in) in a child task and returns when it is done. A child task rather
    /// than inline: the reader task keeps the largest stack it ever had for as long as the
    /// connection is open, and an idle connection should not keep the stack of a sign-in's
    /// repository reads (docs/benchmarks.md, idle connections).
    private static func run(_ work: @escaping @Sendable () async -> Void, in group: inout DiscardingTaskGroup) async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            group.addTask {
                await work()
                done.resume()
            }
        }
    }

    /// Graceful shutdown of one connection: a going-away notice, no new calls; in-flight calls
    /// get the drain timeout, then the connection closes regardless.
    private static func drain(machine: LockedStateMachine, writer: AnswerWriter, channel: any Channel, reconnectAfter: Duration, drainTimeout: Duration) {
        let (notify, close) = machine.withLock { $0.beginDrain() }
        if notify { writer.send(.goingAway(reason: "server shutting down", reconnectAfter: reconnectAfter)) }
        if close == .close {
            writer.finish()
        } else {
            channel.eventLoop.scheduleTask(in: TimeAmount(drainTimeout)) { channel.close(promise: nil) }
        }
    }

    /// Checks a `Hello`'s credential (only a Hello without one looks at the client certificate)
    /// and answers it; too many refusals end the connection.
    private static func signIn(
        _ request: ClientFrame, peer: String, channel: any Channel, machine: LockedStateMachine, recheck: CredentialRecheck,
        writer: AnswerWriter, signInDeadline: Scheduled<Void>, dispatcher: Dispatcher
    ) async {
        let certificateName = request.hello.credential == nil ? await ClientCertificate.commonName(on: channel) : nil
        let (frame, principal) = await dispatcher.hello(id: request.id, request.hello, peer: peer, clientCertificateName: certificateName)
        let close: ConnectionStateMachine.CloseAction = machine.withLock { state in
            if let principal {
                state.helloSucceeded(principal, answerLimit: dispatcher.answerLimit(announced: request.hello.maxFrameBytes))
                return .none
            }
            return state.helloFailed()
        }
        if principal != nil {
            recheck.signedIn(at: dispatcher.service.clock.now())
            // Signed in: the deadline can no longer fire, so it need not wait in the event loop.
            signInDeadline.cancel()
        }
        writer.send(frame)
        if close == .close {
            // Too many refused Hellos: this refusal is the connection's last answer.
            writer.send(.failure(id: 0, LicenseError(.unauthenticated, .tooManyRefusedHellos, "too many refused sign-ins on this connection")))
            writer.finish()
        }
    }

    /// A trace for this call if it is the one in `traceEvery` to sample.
    private func sampledTrace(startedAt received: ContinuousClock.Instant) -> CallTrace? {
        guard let every = configuration.traceEvery,
              sampledCalls.wrappingAdd(1, ordering: .relaxed).oldValue % every == 0 else { return nil }
        return CallTrace(start: received)
    }

    private static func log(_ trace: CallTrace, of request: ClientFrame, answer: ServerFrame, logger: Logger) {
        trace.mark("answered")
        let (stages, total) = trace.stages()
        var metadata: Logger.Metadata = ["call": "\(Dispatcher.name(of: request.call))", "total_us": "\(total)"]
        for (stage, microseconds) in stages { metadata[stage] = "\(microseconds)" }
        if answer.status.code != .ok { metadata["code"] = "\(answer.status.code)" }
        logger.info("call trace", metadata: metadata)
    }
}

/// A connection's state machine behind a lock, shared by its reader, its call tasks and its
/// `AnswerWriter`.
final class LockedStateMachine: Sendable {
    private let machine: Mutex<ConnectionStateMachine>

    init(maxRefusedHellos: Int = 3, answerLimit: Int = WireProtocol.defaultMaxFrameBytes) {
        machine = Mutex(ConnectionStateMachine(maxRefusedHellos: maxRefusedHellos, answerLimit: answerLimit))
    }

    func withLock<T>(_ body: (inout ConnectionStateMachine) -> T) -> T {
        machine.withLock { body(&$0) }
    }
}
