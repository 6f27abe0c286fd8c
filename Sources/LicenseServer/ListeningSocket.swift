#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import Metrics
import NIOCore

/// The listener's socket, made here rather than by `ServerBootstrap.bind(host:port:)` so that
/// `DescriptorReserve` can shed connections from it when the process runs out of descriptors.
enum ListeningSocket {
    /// The kernel's receive and send buffers of each connection (accepted sockets inherit them
    /// from the listener; set before `listen` so the advertised window matches). Without them
    /// Linux grows each buffer up to several MiB, and a peer that stops reading (or whose calls
    /// the server stops reading) pins that much kernel memory per connection. Protocol messages
    /// are small; 64 KiB in and 128 KiB out (Linux counts twice that) keep a connection's kernel
    /// memory under half a MiB and still carry a largest answer at once.
    static let receiveBuffer: CInt = 64 * 1024
    static let sendBuffer: CInt = 128 * 1024

    /// A non-blocking TCP socket bound to `host:port` (`SO_REUSEADDR`, the buffer sizes above)
    /// and listening.
    static func open(host: String, port: Int, backlog: Int32) throws -> CInt {
        let address = try SocketAddress.makeAddressResolvingHost(host, port: port)
        #if canImport(Glibc)
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        #else
        let type = SOCK_STREAM
        #endif
        let fd = socket(Int32(address.protocol.rawValue), type, 0)
        guard fd >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        do {
            var on: CInt = 1
            var receive = receiveBuffer, send = sendBuffer
            let size = socklen_t(MemoryLayout<CInt>.size)
            guard setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, size) == 0,
                  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive, size) == 0,
                  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &send, size) == 0 else {
                throw IOError(errnoCode: errno, reason: "setsockopt")
            }
            let bound = address.withSockAddr { pointer, size in bind(fd, pointer, socklen_t(size)) }
            guard bound == 0 else { throw IOError(errnoCode: errno, reason: "bind(\(host):\(port))") }
            guard listen(fd, backlog) == 0 else { throw IOError(errnoCode: errno, reason: "listen") }
            #if canImport(Darwin)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            #endif
            return fd
        } catch {
            close(fd)
            throw error
        }
    }
}

/// Keeps one descriptor in reserve for the listener. When `accept` fails because the process
/// (or the system) has no descriptor left, the connection stays queued and the listening
/// socket stays readable, so an event loop would retry at once, forever, at full CPU. Instead
/// this handler gives up its spare descriptor, accepts every queued connection and closes it at
/// once (those clients see the connection close and retry later), then takes a spare again.
/// Such a storm costs one `accept` and one `close` per refused connection, and the server
/// keeps serving its open connections.
final class DescriptorReserve: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = any Channel

    private let listener: CInt
    private var spare: CInt
    private let logger: Logger
    private let shedConnections = Counter(label: "licensed_connections_shed_total")
    private var lastWarning: NIODeadline?

    init(listener: CInt, logger: Logger) {
        self.listener = listener
        self.spare = Self.openSpare()
        self.logger = logger
    }

    deinit {
        if spare >= 0 { close(spare) }
    }

    private static func openSpare() -> CInt {
        Glibc.open("/dev/null", O_RDONLY | O_CLOEXEC)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? IOError, error.errnoCode == EMFILE || error.errnoCode == ENFILE {
            shed()
        }
        context.fireErrorCaught(error)
    }

    private func shed() {
        if spare >= 0 {
            close(spare)
            spare = -1
        }
        var shed = 0
        while true {
            let connection = accept(listener, nil, nil)
            guard connection >= 0 else { break }
            close(connection)
            shed += 1
        }
        spare = Self.openSpare()
        shedConnections.increment(by: shed)
        let now = NIODeadline.now()
        if lastWarning.map({ now - $0 > .seconds(10) }) ?? true {
            lastWarning = now
            logger.warning(
                "out of file descriptors: closing new connections at once; raise `ulimit -n` or lower --max-connections",
                metadata: ["closed": "\(shed)"]
            )
        }
    }
}
