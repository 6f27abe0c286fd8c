import Metrics

/// What this build is, for `licensed --version` and `licensed_build_info`.
public enum BuildInfo {
    /// The release version.
    public static let version = "0.9.0"

    /// Sets `licensed_build_info{version}` to 1 (the Prometheus `_info` convention).
    public static func record() {
        Gauge(label: "licensed_build_info", dimensions: [("version", version)]).record(1)
    }
}
