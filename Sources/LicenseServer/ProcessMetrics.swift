#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Metrics
import Synchronization

/// The standard `process_*` metrics of Prometheus client libraries (CPU seconds, resident and
/// virtual memory, open and maximum descriptors, start time), read from `/proc/self` when
/// `/metrics` is scraped. Linux only; elsewhere nothing is recorded.
final class ProcessMetrics: Sendable {
    private let cpu = FloatingPointCounter(label: "process_cpu_seconds_total")
    private let recordedCPU = Mutex<Double>(0)
    private let resident = Gauge(label: "process_resident_memory_bytes")
    private let virtual = Gauge(label: "process_virtual_memory_bytes")
    private let openDescriptors = Gauge(label: "process_open_fds")
    private let maxDescriptors = Gauge(label: "process_max_fds")
    private let startTime = Gauge(label: "process_start_time_seconds")

    init() {
        // The start time is fixed: /proc/self/stat's field 22 (clock ticks after boot) plus the boot time.
        if let stat = Self.statFields(), stat.count > 19, let ticks = Double(stat[19]), let boot = Self.bootTime() {
            startTime.record(boot + ticks / Double(sysconf(Int32(_SC_CLK_TCK))))
        }
    }

    /// Reads the current values.
    func update() {
        if let stat = Self.statFields(), stat.count > 21 {
            // After the command name: utime and stime (clock ticks) are the 12th and 13th fields,
            // vsize (bytes) the 21st and rss (pages) the 22nd.
            let ticks = (Double(stat[11]) ?? 0) + (Double(stat[12]) ?? 0)
            let seconds = ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
            let delta = recordedCPU.withLock { recorded -> Double in
                let delta = max(0, seconds - recorded)
                recorded += delta
                return delta
            }
            if delta > 0 { cpu.increment(by: delta) }
            virtual.record(Double(stat[20]) ?? 0)
            resident.record((Double(stat[21]) ?? 0) * Double(sysconf(Int32(_SC_PAGESIZE))))
        }
        if let descriptors = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            openDescriptors.record(descriptors.count)
        }
        if let limit = ConnectionLimits.descriptorLimit() { maxDescriptors.record(limit) }
    }

    /// The fields of `/proc/self/stat` after the command name (which is in parentheses).
    private static func statFields() -> [Substring]? {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8), let end = stat.lastIndex(of: ")") else { return nil }
        return stat[stat.index(after: end)...].split(separator: " ")
    }

    private static func bootTime() -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return nil }
        return text.split(separator: "\n").first { $0.hasPrefix("btime ") }.flatMap { Double($0.dropFirst(6)) }
    }
}
