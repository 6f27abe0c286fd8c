import Metrics
import NIOCore
import NIOSSL
import NIOTLS

/// Counts failed TLS handshakes as `licensed_tls_handshake_failures_total{reason}`. Sits right
/// after `NIOSSLServerHandler` and removes itself once the handshake completes; an error or a
/// close before then is one failure, classified into a bounded set of reasons (never the error
/// text, which can name the peer's certificate).
final class TLSHandshakeMetrics: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    /// The reasons, each a label value.
    enum Reason: String, CaseIterable {
        /// The client sent something other than TLS (`TLSSniffer` refused it).
        case notTLS = "not_tls"
        /// The client offered ALPN protocols without `coditect-license/1`.
        case noApplicationProtocol = "no_application_protocol"
        case protocolVersion = "protocol_version"
        case noSharedCipher = "no_shared_cipher"
        /// A client certificate was missing or did not verify.
        case clientCertificate = "client_certificate"
        /// The client aborted with an alert (for example, it does not trust our certificate).
        case peerAlert = "peer_alert"
        /// The connection closed (or was closed by a timeout) before the handshake completed.
        case closed
        case other
    }

    /// The event `TLSSniffer` sends down the pipeline when it refuses a client before TLS starts.
    struct Refused {
        let reason: Reason
    }

    private var failed = false

    /// Makes every reason's series at 0, so rates and alerts see the first failure.
    static func createSeries() {
        for reason in Reason.allCases {
            Counter(label: "licensed_tls_handshake_failures_total", dimensions: [("reason", reason.rawValue)]).increment(by: 0)
        }
    }

    /// The reason an error that ended a handshake stands for.
    static func reason(of error: any Error) -> Reason {
        let text = String(describing: error).uppercased()
        // BoringSSL names an alert received from the peer `…_ALERT_…`; check it first.
        if text.contains("ALERT") { return .peerAlert }
        if text.contains("UNSUPPORTED_PROTOCOL") || text.contains("WRONG_VERSION") { return .protocolVersion }
        if text.contains("NO_SHARED_CIPHER") || text.contains("NO_CIPHERS") { return .noSharedCipher }
        if text.contains("CERTIFICATE") { return .clientCertificate }
        if let channel = error as? ChannelError, channel == .eof || channel == .ioOnClosedChannel { return .closed }
        if let ssl = error as? NIOSSLError, case .uncleanShutdown = ssl { return .closed }
        return .other
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let refused = event as? Refused {
            return fail(refused.reason)
        }
        if case TLSUserEvent.handshakeCompleted = event {
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(Self.reason(of: error))
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(.closed)
        context.fireChannelInactive()
    }

    private func fail(_ reason: Reason) {
        guard !failed else { return }
        failed = true
        Counter(label: "licensed_tls_handshake_failures_total", dimensions: [("reason", reason.rawValue)]).increment()
    }
}
