import LicenseClient
import LicenseWire
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// Records real client traffic: a TLS proxy placed between clients and `licensed` that passes
/// every frame through unchanged and writes down what each client sent.
///
/// Clients connect to the proxy (trusting the proxy's certificate) instead of the daemon. Each
/// client connection becomes one user of the recording; its `Hello` is passed on but not
/// recorded (replay signs in with its own credentials), and each acquire is recorded with the
/// session id the daemon answered, so that replay can map the session ids of later frames.
/// Every recorded frame is in the `loop` phase: a user's traffic replays in a loop.
public struct RecordingProxy: Sendable {
    /// The proxy's own TLS identity (what clients see).
    public var tls: TLSConfiguration
    /// The daemon the proxy passes traffic to.
    public var upstream: LicenseServerEndpoint
    /// The largest frame passed on either way.
    public var maxFrameBytes: Int = WireProtocol.defaultMaxFrameBytes

    /// A proxy presenting `tls` to clients and passing their traffic to `upstream`.
    public init(tls: TLSConfiguration, upstream: LicenseServerEndpoint) {
        self.tls = tls
        self.upstream = upstream
    }

    /// Listens on `host:port` and records until `stop` returns (or the task is cancelled);
    /// then closes every connection and returns what was recorded. `onListening` is given
    /// the bound address.
    public func record(
        host: String, port: Int, description: String,
        onListening: @Sendable (SocketAddress) -> Void = { _ in },
        until stop: @escaping @Sendable () async -> Void
    ) async throws -> Recording {
        var serverTLS = tls
        serverTLS.applicationProtocols = [WireProtocol.alpn]
        let serverContext = try NIOSSLContext(configuration: serverTLS)
        let clientContext = try NIOSSLContext(configuration: try upstream.tlsConfiguration())
        let log = RecordingLog()

        let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: serverContext))
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        if let address = listener.channel.localAddress { onListening(address) }

        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                try? await listener.executeThenClose { inbound in
                    try await withThrowingDiscardingTaskGroup { connections in
                        var user = 0
                        for try await client in inbound {
                            let index = user
                            user += 1
                            connections.addTask { await self.relay(client, user: index, clientContext: clientContext, log: log) }
                        }
                    }
                }
            }
            await stop()
            group.cancelAll()
        }
        return Recording(description: description, entries: log.entries())
    }

    /// Passes one client's traffic to a connection of its own to the daemon, both ways, until
    /// either side closes.
    private func relay(_ client: NIOAsyncChannel<ByteBuffer, ByteBuffer>, user: Int, clientContext: NIOSSLContext, log: RecordingLog) async {
        let serverHostname = upstream.tlsServerHostname
        let server: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            server = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(TimeAmount(upstream.connectTimeout))
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .connect(host: upstream.host, port: upstream.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: clientContext, serverHostname: serverHostname))
                        return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            try? await client.channel.close()
            return
        }
        let maxFrameBytes = self.maxFrameBytes
        try? await client.executeThenClose { fromClient, toClient in
            try await server.executeThenClose { fromServer, toServer in
                await withTaskGroup(of: Void.self) { directions in
                    // Client → daemon: record each frame. Daemon → client: learn acquired session ids.
                    directions.addTask {
                        await Self.pass(fromClient, to: toServer, maxFrameBytes: maxFrameBytes) { body in
                            if let frame = try? ClientFrame.decode(body) { log.sent(frame, by: user) }
                        }
                    }
                    directions.addTask {
                        await Self.pass(fromServer, to: toClient, maxFrameBytes: maxFrameBytes) { body in
                            if let frame = try? ServerFrame.decode(body) { log.answered(frame, to: user) }
                        }
                    }
                    // Either side closing ends both.
                    await directions.next()
                    directions.cancelAll()
                }
            }
        }
    }
}

extension RecordingProxy {
    /// Passes frames from one side to the other, showing each to `observe` first, until the
    /// input ends, fails, or breaks the framing.
    static func pass(
        _ input: NIOAsyncChannelInboundStream<ByteBuffer>, to output: NIOAsyncChannelOutboundWriter<ByteBuffer>,
        maxFrameBytes: Int, observe: (ByteBuffer) -> Void
    ) async {
        var parser = FrameParser(maxFrameBytes: maxFrameBytes)
        do {
            for try await bytes in input {
                parser.append(bytes)
                while case .frame(let body) = parser.next() {
                    observe(body)
                    try await output.write(FrameEncoder.framed(body))
                }
                if case .invalid = parser.next() { return }
            }
        } catch {
            // The peer closed or TLS failed: this direction is done.
        }
    }
}

/// What the proxy has recorded so far, shared by its connections.
final class RecordingLog: Sendable {
    private struct State {
        var entries: [Recording.Entry] = []
        /// (user, request id) → the entry of an acquire awaiting its answer.
        var pendingAcquires: [Key: Int] = [:]
        var firstFrame: [Int: ContinuousClock.Instant] = [:]
    }

    private struct Key: Hashable {
        var user: Int
        var request: UInt64
    }

    private let state = Mutex(State())

    /// Records a client frame (all but `Hello`, which replay sends itself).
    func sent(_ frame: ClientFrame, by user: Int) {
        guard let call = frame.call else { return }
        if case .hello = call { return }
        let now = ContinuousClock.now
        state.withLock { state in
            let first = state.firstFrame[user] ?? now
            state.firstFrame[user] = first
            let elapsed = first.duration(to: now)
            let ms = UInt64(max(0, elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000))
            state.entries.append(Recording.Entry(user: user, atMs: ms, phase: .loop, call: call))
            if case .acquire = call { state.pendingAcquires[Key(user: user, request: frame.id)] = state.entries.count - 1 }
        }
    }

    /// Notes the session id of an acquire's answer.
    func answered(_ frame: ServerFrame, to user: Int) {
        state.withLock { state in
            guard let index = state.pendingAcquires.removeValue(forKey: Key(user: user, request: frame.id)) else { return }
            if frame.status.isOK, case .acquire(let result) = frame.result { state.entries[index].sessionID = result.sessionID }
        }
    }

    /// The recording, users numbered in order of connection, each user's frames in order.
    func entries() -> [Recording.Entry] {
        state.withLock { $0.entries }
    }
}
