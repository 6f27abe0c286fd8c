import ArgumentParser
import Foundation
import LicenseClient
import LicenseLoad

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Replay a built-in scenario or a recording.")

    @OptionGroup var target: Target
    @Option(help: "plan, heartbeat-only or storm (default plan).") var scenario: String?
    @Option(help: "A recording (JSON Lines) to replay instead of a built-in scenario.") var recording: String?
    @Option(help: "Virtual users.") var users = 100
    @Option(help: "TLS connections the users share (storm: one per user).") var connections = 10
    @Option(help: "Open loop at this many calls per second in total (default: closed loop).") var rate: Double?
    @Option(help: "spread (default: user i starts at loop entry i mod n, so the calls are mixed at every moment) or aligned (every user starts at the first entry, and the fleet moves through the loop in step).") var phases = "spread"
    @Option(help: "Seconds the loop runs (at most 600).") var duration = 10.0
    @Option(name: .customLong("max-calls"), help: "Stop the loop after this many calls.") var maxCalls = 10_000_000
    @Option(help: "table (default) or json.") var output = "table"
    @Option(help: "Also write the JSON report to this file.") var report: String?
    @Flag(name: .customLong("no-progress"), help: "No live progress line.") var noProgress = false

    func validate() throws {
        guard (1...100_000).contains(users) else { throw ValidationError("--users must be 1…100000") }
        guard (1...20_000).contains(connections) else { throw ValidationError("--connections must be 1…20000") }
        guard duration > 0, duration <= 600 else { throw ValidationError("--duration must be more than 0 and at most 600 seconds") }
        guard maxCalls > 0 else { throw ValidationError("--max-calls must be positive") }
        if let rate, rate <= 0 { throw ValidationError("--rate must be positive") }
        guard ["table", "json"].contains(output) else { throw ValidationError("--output must be table or json") }
        guard LoadOptions.Phases(rawValue: phases) != nil else { throw ValidationError("--phases must be spread or aligned") }
        guard scenario == nil || recording == nil else { throw ValidationError("give --scenario or --recording, not both") }
        if let scenario, Scenario(rawValue: scenario) == nil {
            throw ValidationError("--scenario must be one of: \(Scenario.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() async throws {
        let builtIn = Scenario(rawValue: scenario ?? "plan")!
        let runID = "load-\(Int(Date().timeIntervalSince1970))-\(Int.random(in: 1000...9999))"
        let connections = recording == nil && builtIn.connectionPerUser ? users : self.connections
        let (license, keys) = try await target.setUp(runID: runID, seats: users + 10, users: min(connections, 50))
        let script: Recording
        if let path = recording {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw ValidationError("cannot read \(path)") }
            do { script = try Recording(decoding: text) } catch let error as RecordingError { throw ValidationError("\(path): \(error)") }
        } else {
            script = builtIn.recording(license: license)
        }
        var options = LoadOptions(endpoint: try target.endpoint(), credentials: keys, virtualUsers: users, connections: connections, runID: runID)
        options.license = license
        options.duration = .milliseconds(Int64(duration * 1000))
        options.maxCalls = maxCalls
        if let rate { options.pacing = .openLoop(callsPerSecond: rate) }
        options.phases = LoadOptions.Phases(rawValue: phases)!

        let before = target.pid.flatMap(ProcessSample.read)
        let wallStart = Date()
        let showProgress = !noProgress
        let result = try await LoadRunner.run(script, options: options) { progress in
            guard showProgress else { return }
            let line = String(format: "\r%5.0f s  %10d calls  %8.0f calls/s  %6d errors", Double(progress.elapsed.components.seconds), progress.calls, progress.callsPerSecond, progress.errors)
            FileHandle.standardError.write(Data(line.utf8))
        }
        if showProgress { FileHandle.standardError.write(Data("\n".utf8)) }
        var daemon: LoadReport.Daemon?
        if let pid = target.pid, let before, let after = ProcessSample.read(pid: pid) {
            let seconds = Date().timeIntervalSince(wallStart)
            daemon = LoadReport.Daemon(cpuCores: (after.cpuSeconds - before.cpuSeconds) / seconds,
                                       peakResidentMiB: Double(after.peakResidentBytes) / 1_048_576, residentMiB: Double(after.residentBytes) / 1_048_576)
        }
        let name = recording.map { "recording \(($0 as NSString).lastPathComponent)" } ?? builtIn.rawValue
        let report = LoadReport(scenario: name, options: options, result: result, daemon: daemon)
        if let path = self.report { try report.json().write(toFile: path, atomically: true, encoding: .utf8) }
        print(output == "json" ? try report.json() : report.table(), terminator: output == "json" ? "\n" : "")
        if result.sessionsLeft > 0 { throw ExitCode(2) }
    }
}

struct WriteScenario: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "write-scenario", abstract: "Write a built-in scenario as a recording file (JSON Lines) to edit or replay.")
    @Option(help: "plan, heartbeat-only or storm.") var scenario = "plan"
    @Option(help: "The license id in the recorded acquires (replay substitutes its own).") var license = "recorded-license"
    @Option(help: "The file to write.") var out: String

    func run() async throws {
        guard let builtIn = Scenario(rawValue: scenario) else {
            throw ValidationError("--scenario must be one of: \(Scenario.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        try builtIn.recording(license: license).encoded().write(toFile: out, atomically: true, encoding: .utf8)
        print("wrote \(out)")
    }
}

struct Idle: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Open N TLS connections, sign each in, hold them, and report the daemon's memory.")
    @OptionGroup var target: Target
    @Option(help: "Connections to open.") var connections = 1000
    @Option(help: "How many to open at once.") var parallel = 200
    @Option(help: "Seconds to hold them.") var hold = 5.0

    func run() async throws {
        guard (1...100_000).contains(connections), (1...5000).contains(parallel), hold >= 0, hold <= 600 else {
            throw ValidationError("--connections 1…100000, --parallel 1…5000, --hold 0…600")
        }
        let runID = "idle-\(Int(Date().timeIntervalSince1970))"
        let (_, keys) = try await target.setUp(runID: runID, seats: 1, users: 1)
        let endpoint = try target.endpoint()
        let before = target.pid.flatMap(ProcessSample.read)
        var open: [LicenseConnection] = []
        var failures: [String: Int] = [:]
        let started = Date()
        while open.count + failures.values.reduce(0, +) < connections {
            let batch = min(parallel, connections - open.count - failures.values.reduce(0, +))
            let results = await withTaskGroup(of: Result<LicenseConnection, LicenseCallError>.self) { group in
                for _ in 0..<batch {
                    group.addTask {
                        do {
                            let connection = try await LicenseConnection.connect(to: endpoint)
                            do {
                                try await connection.hello(apiKey: keys[0], clientName: "license-load idle")
                                return .success(connection)
                            } catch let error as LicenseCallError {
                                await connection.close()
                                return .failure(error)
                            }
                        } catch let error as LicenseCallError {
                            return .failure(error)
                        } catch {
                            return .failure(LicenseCallError(code: .unknown, reason: "\(type(of: error))", message: ""))
                        }
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            for result in results {
                switch result {
                case .success(let connection): open.append(connection)
                case .failure(let error): failures[error.reason, default: 0] += 1
                }
            }
            FileHandle.standardError.write(Data("\ropen: \(open.count)  failed: \(failures.values.reduce(0, +))".utf8))
        }
        FileHandle.standardError.write(Data("\n".utf8))
        let opening = Date().timeIntervalSince(started)
        try await Task.sleep(for: .milliseconds(Int64(hold * 1000)))
        let after = target.pid.flatMap(ProcessSample.read)
        print(String(format: "%d connections open (%d failed: %@) in %.1f s", open.count, failures.values.reduce(0, +), failures.description, opening))
        if let before, let after {
            print(String(format: "daemon resident: %.0f MiB before, %.0f MiB with the connections open (peak %.0f MiB): %.1f KiB per connection",
                         Double(before.residentBytes) / 1_048_576, Double(after.residentBytes) / 1_048_576, Double(after.peakResidentBytes) / 1_048_576,
                         Double(Int64(after.residentBytes) - Int64(before.residentBytes)) / 1024 / Double(max(1, open.count))))
        }
        for connection in open { await connection.close() }
    }
}
