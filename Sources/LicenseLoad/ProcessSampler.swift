import Foundation

/// CPU time and memory of another process (the daemon), from `/proc` (Linux).
public struct ProcessSample: Sendable, Equatable {
    /// User + system CPU seconds since the process started.
    public var cpuSeconds: Double
    /// Resident memory now, and its peak since the process started (`VmRSS`, `VmHWM`), in bytes.
    public var residentBytes: UInt64
    public var peakResidentBytes: UInt64

    /// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`; `nil` when the process is gone.
    public static func read(pid: Int32) -> ProcessSample? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let close = stat.lastIndex(of: ")")
        else { return nil }
        // Fields after the command name: state is field 3; utime and stime are fields 14 and 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let utime = Double(fields[11]), let stime = Double(fields[12]) else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        func kilobytes(_ name: String) -> UInt64 {
            for line in status.split(separator: "\n") where line.hasPrefix(name + ":") {
                return UInt64(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "0") ?? 0
            }
            return 0
        }
        return ProcessSample(cpuSeconds: (utime + stime) / ticks, residentBytes: kilobytes("VmRSS") * 1024, peakResidentBytes: kilobytes("VmHWM") * 1024)
    }
}
