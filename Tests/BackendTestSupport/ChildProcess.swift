#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NIOConcurrencyHelpers

/// A server process started for a test, stopped by pid (SIGTERM, then SIGKILL) and reaped.
public final class ChildProcess: @unchecked Sendable {
    public let pid: pid_t
    private let lock = NSLock()
    private var reaped = false

    /// Starts `arguments[0]` (looked up on PATH) with stdout and stderr appended to `logFile`.
    /// When the tests run as root and `asUser` is given, the program runs as that user.
    /// `environment` adds to (or replaces in) the test process's environment.
    public init(_ arguments: [String], logFile: String, asUser user: String? = nil, environment extra: [String: String] = [:]) throws {
        var argv = arguments
        if let user, geteuid() == 0 {
            argv = ["setpriv", "--reuid=\(user)", "--regid=\(user)", "--init-groups", "--"] + arguments
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logFile, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // Nothing else the test process has open reaches the child. Without this, a server started
        // while another test holds a pipe to a helper (the JOSE check's python3) inherits the
        // pipe's write end, and the helper never sees end-of-input: a hang the CI run found.
        guard closeFrom(&actions, 3) == 0 else { throw TestServerError("posix_spawn_file_actions_addclosefrom_np failed") }
        // The spawning thread may block signals (runtimes do); the child must not inherit that,
        // or it would ignore the SIGTERM that stops it.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for arg in cArgs { free(arg) } }
        var pid: pid_t = 0
        let environment = ProcessInfo.processInfo.environment.merging(extra) { _, new in new }
        var cEnvironment: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for entry in cEnvironment { free(entry) } }
        let result = posix_spawnp(&pid, argv[0], &actions, &attributes, &cArgs, &cEnvironment)
        guard result == 0 else {
            throw TestServerError("could not start \(arguments[0]): \(String(cString: strerror(result)))")
        }
        self.pid = pid
    }

    /// Records that someone else already waited for the process.
    public func markReaped() {
        lock.lock()
        reaped = true
        lock.unlock()
    }

    /// Whether the process is still running.
    public var isRunning: Bool {
        lock.lock()
        defer { lock.unlock() }
        guard !reaped else { return false }
        if Self.exited(pid) {
            reaped = true
            return false
        }
        return true
    }

    /// Sends `signal`, waits up to `grace` for the exit, then kills and reaps.
    public func stop(signal: Int32 = SIGTERM, grace: Duration = .seconds(10)) {
        lock.lock()
        defer { lock.unlock() }
        guard !reaped else { return }
        kill(pid, signal)
        let deadline = ContinuousClock.now + grace
        while ContinuousClock.now < deadline {
            if Self.exited(pid) {
                reaped = true
                return
            }
            usleep(5_000)
        }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        reaped = true
    }

    /// Whether the child has exited (and is reaped now). A runtime that ignores SIGCHLD reaps
    /// children itself, so "no such child" counts as exited too.
    static func exited(_ pid: pid_t) -> Bool {
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        return result == pid || (result == -1 && errno == ECHILD)
    }

    deinit { stop(signal: SIGKILL) }
}

/// Stops the process-wide shared servers and removes their folders when the test process
/// exits, newest first (so a server stops before the template it was copied from goes).
public enum ExitCleanup {
    private struct Entry {
        var pid: pid_t?
        var signal: Int32
        var directory: String
    }

    private static let entries = NIOLockedValueBox<[Entry]>([])

    /// Registers a server (or just a folder, with `pid` nil) to stop and remove at exit.
    public static func register(pid: pid_t?, signal: Int32 = SIGTERM, directory: String) {
        let first = entries.withLockedValue { entries in
            entries.append(Entry(pid: pid, signal: signal, directory: directory))
            return entries.count == 1
        }
        if first { atexit { ExitCleanup.run() } }
    }

    private static func run() {
        for entry in entries.withLockedValue({ $0 }).reversed() {
            if let pid = entry.pid {
                kill(pid, entry.signal)
                let deadline = ContinuousClock.now + .seconds(2)
                while !ChildProcess.exited(pid), ContinuousClock.now < deadline { usleep(5_000) }
                kill(pid, SIGKILL)
            }
            try? FileManager.default.removeItem(atPath: entry.directory)
        }
    }
}

/// A test server could not be started.
public struct TestServerError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Test fixtures that need a loopback port.
public enum FreePort {
    /// A port the kernel just handed out (closed again at once; small race accepted in tests).
    public static func next() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestServerError("socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw TestServerError("could not find a free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// A fresh temporary folder.
public func makeTemporaryDirectory(_ prefix: String) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34+), which Swift's Glibc module does not
/// export; looked up once by name.
private let closeFrom: @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32 = {
    guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else {
        fatalError("glibc 2.34 or later is needed (posix_spawn_file_actions_addclosefrom_np)")
    }
    return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
}()

