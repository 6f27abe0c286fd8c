import Foundation
import Logging
import Synchronization

/// Writes one JSON object per line to standard error, with the fields log aggregators read:
/// `time` (RFC 3339, UTC, microseconds), `severity` (Cloud Logging's names: DEBUG, INFO,
/// NOTICE, WARNING, ERROR, CRITICAL), `message`, `logger`, `source`, and the metadata as string
/// `labels` (also under `logging.googleapis.com/labels`, where Cloud Logging looks for them).
/// Loki and Vector parse the line as JSON as it is.
struct JSONLogHandler: LogHandler {
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    let label: String
    private static let lock = Mutex(())

    init(label: String) {
        self.label = label
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var labels: [String: String] = [:]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { _, new in new }) { labels[key] = "\(value)" }
        let entry: [String: Any] = [
            "time": Self.time(Date()),
            "severity": Self.severity(event.level),
            "message": event.message.description,
            "logger": label,
            "source": event.source,
            "labels": labels,
            "logging.googleapis.com/labels": labels,
        ]
        guard var line = try? JSONSerialization.data(withJSONObject: entry, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
        line.append(10)
        Self.lock.withLock { _ in FileHandle.standardError.write(line) }
    }

    static func severity(_ level: Logger.Level) -> String {
        switch level {
        case .trace, .debug: "DEBUG"
        case .info: "INFO"
        case .notice: "NOTICE"
        case .warning: "WARNING"
        case .error: "ERROR"
        case .critical: "CRITICAL"
        }
    }

    static func time(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt))
    }
}
