import Foundation

/// How a ``LicenseClient`` reaches its servers and where it keeps its state.
public struct LicenseClientConfiguration: Sendable {
    /// How the client picks among several endpoints.
    public enum EndpointOrder: Sendable {
        /// The first that answers, in the order given (a primary and its standbys).
        case inOrder
        /// A random order per connection attempt (spreads clients over equal replicas).
        case random
    }

    /// The servers, tried as `endpointOrder` says. At least one.
    public var endpoints: [LicenseServerEndpoint]
    /// Default `.inOrder`.
    public var endpointOrder: EndpointOrder = .inOrder
    /// The credential for `Hello`.
    public var credentials: LicenseCredentialProvider
    /// Sent in `Hello`.
    public var clientName = "coditect-license-client"
    /// Sent in `Hello`.
    public var clientVersion = "1"
    /// The wait between reconnection and retry attempts (default 250 ms doubling to 30 s, jittered).
    public var backoff = Backoff(initial: .milliseconds(250), maximum: .seconds(30))
    /// How long a call keeps retrying `UNAVAILABLE` and timeouts before it gives up (default 20 s).
    public var retryBudget: Duration = .seconds(20)
    /// The folder for cached signing keys, the last lease of each license and the clock
    /// high-water mark. Created with mode 0700, files 0600. `nil` keeps nothing on disk (no
    /// offline start after a restart). Default: `~/.coditect/license`.
    public var stateDirectory: String? = LicenseClientConfiguration.defaultStateDirectory
    /// How long cached signing keys are trusted without the server confirming them (default 7 days).
    public var keyCacheLifetime: Duration = .seconds(7 * 24 * 3600)
    /// The `iss` the server's lease tokens carry (`licensed --issuer`; default `coditect-licensed`).
    public var issuer = "coditect-licensed"
    /// This machine's hardware id; `nil` computes ``HardwareFingerprint`` (or reads
    /// `CODITECT_HARDWARE_ID`).
    public var hardwareID: String?
    /// The clocks; inject a manual one in tests.
    public var clock: any LeaseClock = SystemLeaseClock()

    /// A configuration for `endpoints` authenticating with `credentials`.
    public init(endpoints: [LicenseServerEndpoint], credentials: LicenseCredentialProvider) {
        self.endpoints = endpoints
        self.credentials = credentials
    }

    /// `~/.coditect/license`, or `$CODITECT_LICENSE_HOME` when set.
    public static var defaultStateDirectory: String {
        if let custom = ProcessInfo.processInfo.environment["CODITECT_LICENSE_HOME"], !custom.isEmpty { return custom }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".coditect/license").path
    }
}
