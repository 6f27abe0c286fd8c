#if canImport(Glibc)
import Glibc
#endif
import BackendTestSupport
import Foundation
import LicenseClient
import Testing

/// Peers that send and never read cannot grow the daemon's memory: every answer owed, refusals of
/// bad frames included, holds a reader slot until it is written. Measured on a real `licensed`
/// process (its peak resident memory from /proc), with flooders in Python's ssl.
@Suite("Floods of unread answers", .serialized, .timeLimit(.minutes(3)))
struct FloodTests {
    /// Connects over TLS, writes one kind of frame as fast as the server takes it (up to 24 MB or
    /// 20 s), never reading; prints how much it sent, then holds the connection until stdin closes.
    /// `signed` first signs in with the key given as the fifth argument, then writes
    /// GetSigningKeys calls.
    static let flooder = """
        import socket, ssl, sys, time
        host, port, ca, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
        def varint(n):
            out = b""
            while n >= 0x80:
                out += bytes([n & 0x7F | 0x80]); n >>= 7
            return out + bytes([n])
        def frame(body): return len(body).to_bytes(4, "big") + body
        frames = {
            "id0": b"\\x00\\x00\\x00\\x02\\x08\\x00",               # a ClientFrame with id 0
            "garbage": b"\\x00\\x00\\x00\\x02\\xff\\xff",           # not protobuf
            "unsigned": b"\\x00\\x00\\x00\\x04\\x08\\x07\\x22\\x00", # id 7, a call before Hello
        }
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(ca)
        ctx.set_alpn_protocols(["coditect-license/1"])
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A small receive window keeps what the daemon can push into the kernel small, so the
        # flood costs little CPU: the daemon must stop reading after a few answers.
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        raw.connect((host, port))
        tls = ctx.wrap_socket(raw, server_hostname=host)
        tls.settimeout(2)
        if kind == "signed":
            key = sys.argv[5].encode()
            hello = b"\\x08\\x01\\x22" + varint(len(key)) + key
            tls.sendall(frame(b"\\x08\\x01\\x52" + varint(len(hello)) + hello))
            chunk = b"".join(frame(b"\\x08" + varint(2 + i) + b"\\x72\\x00") for i in range(5000))
        else:
            chunk = frames[kind] * 10000
        sent, start = 0, time.time()
        try:
            while sent < 24_000_000 and time.time() - start < 20:
                tls.sendall(chunk)
                sent += len(chunk)
        except Exception:
            pass
        print("sent", sent, flush=True)
        sys.stdin.read()
        """

    static var binary: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/debug/licensed").path
    }

    /// A field of /proc/PID/status in KiB (VmRSS, VmHWM).
    static func memory(_ pid: pid_t, _ field: String) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix(field + ":") })
        return try #require(Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]))
    }

    @Test func neverReadingFloodersBeforeAndAfterSignInKeepTheDaemonSmallWhileAGoodClientIsServed() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary), "build first: Tools/test.sh")
        let folder = try makeTemporaryDirectory("flood")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let port = try FreePort.next()
        let key = "lk_flood_test_operator_key_0001"
        let daemon = try ChildProcess([Self.binary, "--data-dir", folder + "/data", "--listen", "127.0.0.1:\(port)", "--log-level", "error"],
                                      logFile: folder + "/licensed.log", environment: ["LICENSED_BOOTSTRAP_API_KEY": key])
        defer { daemon.stop(signal: SIGINT) }
        let endpoint = LicenseServerEndpoint(host: "127.0.0.1", port: port, caFile: folder + "/data/tls/ca.pem")
        let deadline = ContinuousClock.now + .seconds(30)
        var connected: LicenseConnection?
        while connected == nil {
            guard ContinuousClock.now < deadline, daemon.isRunning else { throw TestServerError("licensed did not start") }
            if FileManager.default.fileExists(atPath: endpoint.caFile!) { connected = try? await LicenseConnection.connect(to: endpoint) }
            if connected == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        let good = try #require(connected)
        try await good.hello(apiKey: key)
        let baseline = try Self.memory(daemon.pid, "VmRSS")

        // Four flooders at once: three kinds of bad frame before sign-in, and valid calls after it.
        let script = folder + "/flooder.py"
        try Self.flooder.write(toFile: script, atomically: true, encoding: .utf8)
        var flooders: [(process: Process, output: String, input: Pipe)] = []
        for kind in ["id0", "garbage", "unsigned", "signed"] {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", script, "127.0.0.1", String(port), endpoint.caFile!, kind, key]
            let output = folder + "/\(kind).out", input = Pipe()
            _ = FileManager.default.createFile(atPath: output, contents: nil)
            process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
            process.standardInput = input
            try process.run()
            flooders.append((process, output, input))
        }
        defer {
            // Closing stdin ends a flooder and its connection.
            for flooder in flooders { try? flooder.input.fileHandleForWriting.close() }
        }
        // Each flooder says how much it sent once the daemon stopped taking its bytes.
        var sent: [Int] = []
        for flooder in flooders {
            let until = ContinuousClock.now + .seconds(60)
            var line = ""
            while !line.hasPrefix("sent"), ContinuousClock.now < until, flooder.process.isRunning {
                try await Task.sleep(for: .milliseconds(100))
                line = (try? String(contentsOfFile: flooder.output, encoding: .utf8)) ?? ""
            }
            sent.append(Int(line.split(whereSeparator: \.isWhitespace).last ?? "") ?? -1)
        }
        // The flooders were stopped by backpressure long before their 24 MB (6 bytes a frame;
        // each unread answer is ten times that).
        #expect(sent.allSatisfy { $0 >= 0 && $0 < 24_000_000 }, "sent \(sent)")

        // While they hold their connections, the good client is served.
        let started = ContinuousClock.now
        _ = try await good.signingKeysJSON()
        let again = try await LicenseConnection.connect(to: endpoint)
        try await again.hello(apiKey: key)
        #expect(started.duration(to: .now) < .seconds(10))
        await again.close()
        await good.close()

        let peak = try Self.memory(daemon.pid, "VmHWM")
        let growth = (peak - baseline) / 1024
        print("four never-reading floods sent \(sent) bytes; the daemon went from \(baseline / 1024) MiB to a peak of \(peak / 1024) MiB")
        #expect(growth < 64, "the daemon grew by \(growth) MiB (baseline \(baseline / 1024) MiB, peak \(peak / 1024) MiB) under four floods that sent \(sent) bytes")
    }
}
