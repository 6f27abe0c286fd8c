import Foundation

/// A replay's figures per call, for people (a table) and scripts (JSON).
public struct LoadReport: Codable, Sendable {
    public struct Call: Codable, Sendable {
        public var call: String
        public var count: UInt64
        public var errors: [String: Int]
        public var callsPerSecond: Double
        /// Milliseconds.
        public var p50: Double, p90: Double, p99: Double, p999: Double, max: Double

        enum CodingKeys: String, CodingKey {
            case call, count, errors, callsPerSecond = "calls_per_second", p50 = "p50_ms", p90 = "p90_ms", p99 = "p99_ms", p999 = "p99_9_ms", max = "max_ms"
        }
    }

    /// The daemon's use of the machine during the run, when its pid was given.
    public struct Daemon: Codable, Sendable {
        /// CPU seconds used during the run divided by the run's seconds (1.0 = one core busy).
        public var cpuCores: Double
        public var peakResidentMiB: Double
        public var residentMiB: Double

        enum CodingKeys: String, CodingKey {
            case cpuCores = "cpu_cores", peakResidentMiB = "peak_resident_mib", residentMiB = "resident_mib"
        }

        public init(cpuCores: Double, peakResidentMiB: Double, residentMiB: Double) {
            self.cpuCores = cpuCores
            self.peakResidentMiB = peakResidentMiB
            self.residentMiB = residentMiB
        }
    }

    public var scenario: String
    public var virtualUsers: Int
    public var connections: Int
    public var pacing: String
    public var seconds: Double
    public var totalCallsPerSecond: Double
    public var sessionsLeft: Int
    public var calls: [Call]
    public var daemon: Daemon?

    enum CodingKeys: String, CodingKey {
        case scenario, virtualUsers = "virtual_users", connections, pacing, seconds
        case totalCallsPerSecond = "total_calls_per_second", sessionsLeft = "sessions_left", calls, daemon
    }

    public init(scenario: String, options: LoadOptions, result: LoadResult, daemon: Daemon?) {
        self.scenario = scenario
        self.virtualUsers = options.virtualUsers
        self.connections = options.connections
        switch options.pacing {
        case .closedLoop: pacing = "closed-loop"
        case .openLoop(let rate): pacing = "open-loop \(Int(rate))/s"
        }
        let seconds = Double(result.elapsed.components.seconds) + Double(result.elapsed.components.attoseconds) / 1e18
        self.seconds = seconds
        let order = ["connect", "hello", "setup acquire", "acquire", "heartbeat", "release", "teardown release"]
        func inLoop(_ name: String) -> Bool { !["connect", "hello"].contains(name) && !name.hasPrefix("setup ") && !name.hasPrefix("teardown ") }
        calls = result.calls.sorted { (order.firstIndex(of: $0.key) ?? 99, $0.key) < (order.firstIndex(of: $1.key) ?? 99, $1.key) }.map { name, stats in
            func ms(_ percentile: Double) -> Double { Double(stats.latency.valueAtPercentile(percentile)) / 1000 }
            return Call(
                call: name, count: stats.count, errors: stats.errors,
                callsPerSecond: seconds > 0 && inLoop(name) ? Double(stats.count) / seconds : 0,
                p50: ms(50), p90: ms(90), p99: ms(99), p999: ms(99.9), max: Double(stats.latency.max) / 1000
            )
        }
        totalCallsPerSecond = calls.map(\.callsPerSecond).reduce(0, +)
        sessionsLeft = result.sessionsLeft
        self.daemon = daemon
    }

    /// Calls that ended in an error, by call and reason.
    public var errorCount: Int { calls.map { $0.errors.values.reduce(0, +) }.reduce(0, +) }

    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    public func table() -> String {
        func f(_ value: Double) -> String { String(format: value < 10 ? "%.2f" : "%.1f", value) }
        var lines = ["\(scenario): \(virtualUsers) virtual users over \(connections) connections, \(pacing), \(String(format: "%.1f", seconds)) s, \(Int(totalCallsPerSecond)) calls/s"]
        let header = ["CALL", "COUNT", "CALLS/S", "P50 ms", "P90 ms", "P99 ms", "P99.9 ms", "MAX ms", "ERRORS"]
        var rows = [header]
        for call in calls {
            let errors = call.errors.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            rows.append([call.call, "\(call.count)", call.callsPerSecond > 0 ? "\(Int(call.callsPerSecond))" : "-", f(call.p50), f(call.p90), f(call.p99), f(call.p999), f(call.max), errors.isEmpty ? "0" : errors])
        }
        let widths = (0..<header.count).map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            lines.append(row.enumerated().map { $0.offset == row.count - 1 ? $0.element : $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  "))
        }
        if let daemon {
            lines.append(String(format: "daemon: %.2f cores, peak resident %.0f MiB (now %.0f MiB)", daemon.cpuCores, daemon.peakResidentMiB, daemon.residentMiB))
        }
        if sessionsLeft > 0 { lines.append("sessions not released: \(sessionsLeft)") }
        return lines.joined(separator: "\n") + "\n"
    }
}
