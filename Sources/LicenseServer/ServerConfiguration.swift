import LicenseWire
import NIOCore
import NIOSSL

/// How the listener behaves. Every default is written next to its property.
public struct ServerConfiguration: Sendable {
    /// The address to listen on. Default `127.0.0.1`.
    public var host: String = "127.0.0.1"
    /// The TCP port; 0 picks a free one (tests). Default 7443.
    public var port: Int = WireProtocol.defaultPort
    /// The TLS server configuration (certificate chain and key). Whatever this says, the server
    /// sets TLS 1.2 as the minimum, ALPN `coditect-license/1`, and for TLS 1.2 only ECDHE key
    /// exchange with AEAD ciphers (`tls12CipherSuites`); TLS 1.3's suites are all AEAD.
    public var tls: TLSConfiguration
    /// The largest frame accepted, checked before buffering. Default 64 KiB.
    public var maxFrameBytes: Int = WireProtocol.defaultMaxFrameBytes
    /// Time allowed for a whole frame once it has started (and for the first frame after
    /// connecting). Default 10 s.
    public var frameTimeout: Duration = .seconds(10)
    /// Time allowed between frames before the connection is closed. Default 15 minutes
    /// (longer than the default 5-minute heartbeat).
    public var idleTimeout: Duration = .seconds(900)
    /// Requests read but not yet answered (or answered but not yet written, refusals of bad
    /// frames included), per connection; reading pauses beyond it. Default 128.
    public var maxInFlightPerConnection: Int = 128
    /// How long after connecting a client must have signed in (a `Hello` accepted); otherwise it
    /// is answered `UNAUTHENTICATED`/`SIGN_IN_TIMEOUT` and closed. Default 10 s.
    public var signInTimeout: Duration = .seconds(10)
    /// Refused `Hello`s after which a connection is closed (the last one is answered). Default 3.
    public var maxRefusedHellos: Int = 3
    /// How long one answer may wait for a peer that does not read before the connection is
    /// closed. Default 30 s.
    public var writeStallTimeout: Duration = .seconds(30)
    /// How long in-flight calls may take to finish on shutdown. Default 10 s.
    public var drainTimeout: Duration = .seconds(10)
    /// How long a closing connection waits for the peer's TLS `close_notify` before the socket
    /// closes anyway (swift-nio-ssl waits 5 s by default, which a peer that never answers
    /// would add to every drain). Default 250 ms.
    public var tlsShutdownTimeout: Duration = .milliseconds(250)
    /// How long after the going-away notice clients should wait before reconnecting. Default 1 s.
    public var reconnectAfter: Duration = .seconds(1)
    /// How often an open connection's credential is checked again (revoked key, disabled user,
    /// suspended tenant, expired ID token), at its next call after this much server time.
    public var credentialRecheckInterval: Duration = .seconds(60)

    /// Open connections at most, in total; one more is answered `RESOURCE_EXHAUSTED`/
    /// `TOO_MANY_CONNECTIONS` and closed. `nil` (the default): 10,000, or fewer when the open-file
    /// limit (`ulimit -n`) leaves less room (`ConnectionLimits.fitting`).
    public var maxConnections: Int?
    /// Open connections at most from one client address (an IPv6 /64). Default 1,000: many
    /// users behind one NAT share an address.
    public var maxConnectionsPerAddress: Int = 1_000
    /// Traces one authenticated call in this many: its time in each stage (seat claim, commit
    /// queue, commit, signing, …) is logged at info level as `call trace`. `nil` (the
    /// default): no tracing.
    public var traceEvery: Int?

    public init(tls: TLSConfiguration) {
        self.tls = tls
    }

    /// The TLS 1.2 cipher suites offered: forward-secret (ECDHE) and authenticated encryption
    /// (AES-GCM, ChaCha20-Poly1305) only; no CBC, no SHA-1, no static RSA key exchange.
    public static let tls12CipherSuites = [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    ].joined(separator: ":")

    /// The TLS configuration with the protocol's fixed settings applied.
    var effectiveTLS: TLSConfiguration {
        var tls = tls
        if tls.minimumTLSVersion == .tlsv1 || tls.minimumTLSVersion == .tlsv11 { tls.minimumTLSVersion = .tlsv12 }
        tls.applicationProtocols = [WireProtocol.alpn]
        tls.cipherSuites = Self.tls12CipherSuites
        tls.shutdownTimeout = TimeAmount(tlsShutdownTimeout)
        return tls
    }
}
