import Foundation

/// What a finished command printed and how it exited.
public struct CommandRun: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String

    /// Both streams, stdout first.
    public var output: String { stdout + stderr }

    /// Runs `executable` (a path, or a name looked up on PATH) to completion. `environment`
    /// replaces the test process's environment when given.
    ///
    /// Nothing here blocks a thread of Swift's cooperative pool while the command runs (the pipes
    /// are drained on Foundation's threads and the exit resumes a continuation): tests often run
    /// commands against a server that lives in the same process, whose calls need that pool.
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) async throws -> CommandRun {
        let process = Process()
        if executable.contains("/") {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [executable] + arguments
        }
        if let environment { process.environment = environment }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let collected = Collected()
        out.fileHandleForReading.readabilityHandler = { collected.append($0.availableData, error: false) }
        err.fileHandleForReading.readabilityHandler = { collected.append($0.availableData, error: true) }
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try process.run() } catch {
                process.terminationHandler = nil
                continuation.resume(throwing: error)
            }
        }
        out.fileHandleForReading.readabilityHandler = nil
        err.fileHandleForReading.readabilityHandler = nil
        // Whatever arrived after the last handler call (the writers are closed now).
        collected.append(out.fileHandleForReading.readDataToEndOfFile(), error: false)
        collected.append(err.fileHandleForReading.readDataToEndOfFile(), error: true)
        let (stdout, stderr) = collected.texts
        return CommandRun(status: status, stdout: stdout, stderr: stderr)
    }

    private final class Collected: @unchecked Sendable {
        private let lock = NSLock()
        private var stdout = Data(), stderr = Data()

        func append(_ data: Data, error: Bool) {
            lock.withLock { if error { stderr.append(data) } else { stdout.append(data) } }
        }

        var texts: (String, String) {
            lock.withLock { (String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self)) }
        }
    }
}
