/// Short names for the generated wire types (package `coditect.license.v1`).
public typealias ClientFrame = Coditect_License_V1_ClientFrame
public typealias ServerFrame = Coditect_License_V1_ServerFrame
public typealias WireStatus = Coditect_License_V1_Status

/// Protocol constants of wire protocol v1.
public enum WireProtocol {
    /// The protocol version a v1 client sends in `Hello`.
    public static let version: UInt32 = 1
    /// The ALPN identifier negotiated on TLS.
    public static let alpn = "coditect-license/1"
    /// The default TCP port.
    public static let defaultPort = 7443
    /// The default maximum frame size (the 4-byte prefix not counted).
    public static let defaultMaxFrameBytes = 64 * 1024
}
