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
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> CommandRun {
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
        try process.run()
        // stdout to its end, then stderr: enough for the few kilobytes tests print (a child that
        // filled the stderr pipe first would wait for it to be read).
        let (stdout, stderr) = (out.fileHandleForReading.readDataToEndOfFile(), err.fileHandleForReading.readDataToEndOfFile())
        process.waitUntilExit()
        return CommandRun(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
    }
}
