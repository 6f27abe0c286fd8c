import LicenseWire
import NIOCore
import NIOSSL

/// How the listener behaves. Every default is written next to its property.
public struct ServerConfiguration: Sendable {
    /// The address to listen on. Default `127.0.0.1`.
    public var host: String = "127.0.0.1"
    /// The TCP port; 0 picks a free one (tests). Default 7443.
    public var port: Int = WireProtocol.defaultPort
    /// The TLS server configuration (certificate chain and key). TLS 1.2 is the minimum and
    /// ALPN `coditect-license/1` is set by the server whatever this says.
    public var tls: TLSConfiguration
    /// The largest frame accepted, checked before buffering. Default 64 KiB.
    public var maxFrameBytes: Int = WireProtocol.defaultMaxFrameBytes
    /// Time allowed for a whole frame once it has started (and for the first frame after
    /// connecting). Default 10 s.
    public var frameTimeout: Duration = .seconds(10)
    /// Time allowed between frames before the connection is closed. Default 15 minutes
    /// (longer than the default 5-minute heartbeat).
    public var idleTimeout: Duration = .seconds(900)
    /// Requests read but not yet answered, per connection; reading pauses beyond it. Default 128.
    public var maxInFlightPerConnection: Int = 128
    /// How long in-flight calls may take to finish on shutdown. Default 10 s.
    public var drainTimeout: Duration = .seconds(10)
    /// How long after the going-away notice clients should wait before reconnecting. Default 1 s.
    public var reconnectAfter: Duration = .seconds(1)
    /// How often an open connection's credential is checked again (revoked key, disabled user,
    /// suspended tenant, expired ID token), at its next call after this much server time.
    public var credentialRecheckInterval: Duration = .seconds(60)

    public init(tls: TLSConfiguration) {
        self.tls = tls
    }

    /// The TLS configuration with the protocol's fixed settings applied.
    var effectiveTLS: TLSConfiguration {
        var tls = tls
        if tls.minimumTLSVersion == .tlsv1 || tls.minimumTLSVersion == .tlsv11 { tls.minimumTLSVersion = .tlsv12 }
        tls.applicationProtocols = [WireProtocol.alpn]
        return tls
    }
}
