#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A plain blocking socket to a Redis server that returns each reply's exact bytes, as the server
/// sent them, without parsing them: every command is followed by `ECHO <marker>`, and the reply is
/// everything before the marker's bulk string. The decoder tests feed these captures to
/// `RESPDecoder`, so what they check is what a real `redis-server` sends.
public final class RawRedisCapture {
    private let fd: Int32
    private var pending: [UInt8] = []

    public init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestServerError("socket() failed") }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else {
            close(fd)
            throw TestServerError("cannot connect to Redis on port \(port)")
        }
    }

    deinit { close(fd) }

    /// Sends `arguments` as one command and returns the reply's bytes.
    public func capture(_ arguments: [String]) throws -> [UInt8] {
        let marker = "capture-end-\(UInt64.random(in: 0...UInt64.max))"
        try send(Self.command(arguments) + Self.command(["ECHO", marker]))
        let tail = Array("$\(marker.utf8.count)\r\n\(marker)\r\n".utf8)
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while !(received.count >= tail.count && Array(received.suffix(tail.count)) == tail) {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { throw TestServerError("Redis closed or timed out while answering \(arguments.first ?? "")") }
            received += chunk[0..<count]
        }
        return Array(received.dropLast(tail.count))
    }

    /// Sends bytes as they are (to write a command on a connection without waiting for it).
    public func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { throw TestServerError("cannot write to Redis") }
            offset += sent
        }
    }

    /// A command as a RESP array of bulk strings.
    public static func command(_ arguments: [String]) -> [UInt8] {
        var bytes = Array("*\(arguments.count)\r\n".utf8)
        for argument in arguments {
            bytes += Array("$\(argument.utf8.count)\r\n".utf8) + Array(argument.utf8) + Array("\r\n".utf8)
        }
        return bytes
    }
}
