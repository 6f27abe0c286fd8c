#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS

/// Completes a promise when the TLS handshake has finished, or fails it with the handshake's
/// error, so that `LicenseConnection.connect` can say *why* a connection could not be made
/// (an untrusted certificate, a wrong name) instead of reporting a closed connection later.
/// Sits right after `NIOSSLClientHandler` and removes itself once the handshake succeeded.
final class HandshakeWaiter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let promise: EventLoopPromise<Void>

    init(promise: EventLoopPromise<Void>) {
        self.promise = promise
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event {
            promise.succeed(())
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(ChannelError.eof)
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        promise.fail(ChannelError.ioOnClosedChannel)
    }
}

extension LicenseCallError {
    /// Turns a failure to connect or to complete the TLS handshake into an error that names the
    /// cause and what to do about it. Only network failures stay `UNAVAILABLE` (retried); a
    /// certificate that does not verify is `FAILED_PRECONDITION`, which no retry fixes.
    static func connectFailure(_ error: any Error, endpoint: LicenseServerEndpoint) -> LicenseCallError {
        let address = "\(endpoint.host):\(endpoint.port)"
        let text = String(describing: error)
        if let ssl = error as? NIOSSLError, case .handshakeFailed = ssl, text.contains("CERTIFICATE_VERIFY_FAILED") {
            let trust = endpoint.caFile.map { "is not signed by \($0)" } ?? "is not trusted by the system's CA certificates (no CA file was given)"
            return LicenseCallError(code: .failedPrecondition, reason: "TLS_UNTRUSTED",
                                    message: "the server's certificate at \(address) \(trust); pass the CA the server printed at start")
        }
        if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname {
            let name = endpoint.tlsServerHostname ?? endpoint.host
            return LicenseCallError(code: .failedPrecondition, reason: "TLS_NAME_MISMATCH",
                                    message: "the server's certificate at \(address) is not valid for \(name); connect by a name the certificate lists, or set the server name")
        }
        if error is NIOSSLError || error is NIOSSLExtraError || error is BoringSSLError {
            return LicenseCallError(code: .unavailable, reason: "TLS_HANDSHAKE_FAILED",
                                    message: "the TLS handshake with \(address) failed; is it a license server (ALPN coditect-license/1, TLS 1.2 or later)?")
        }
        if isRefused(error) {
            return LicenseCallError(code: .unavailable, reason: "CONNECTION_REFUSED",
                                    message: "nothing accepts connections at \(address); is licensed running on \(address)?")
        }
        if case ChannelError.connectTimeout = error {
            return LicenseCallError(code: .unavailable, reason: "CONNECT_TIMEOUT",
                                    message: "\(address) did not answer within \(endpoint.connectTimeout); is the address right and reachable?")
        }
        if error is NIOConnectionError || error is SocketAddressError {
            return LicenseCallError(code: .unavailable, reason: "CONNECT_FAILED",
                                    message: "cannot connect to \(address); is the host name right, and is licensed running there?")
        }
        if let channel = error as? ChannelError, channel == .eof || channel == .ioOnClosedChannel {
            return LicenseCallError(code: .unavailable, reason: "CONNECTION_CLOSED",
                                    message: "\(address) closed the connection during the TLS handshake; is it a license server, and does it accept this client?")
        }
        return LicenseCallError(code: .unavailable, reason: "CONNECT_FAILED", message: "cannot connect to \(address)")
    }

    /// Whether the peer (or every address a name resolved to) refused the TCP connection.
    private static func isRefused(_ error: any Error) -> Bool {
        if let io = error as? IOError { return io.errnoCode == ECONNREFUSED }
        if let connection = error as? NIOConnectionError {
            let failures = connection.connectionErrors.map(\.error)
            return !failures.isEmpty && failures.allSatisfy(isRefused)
        }
        return false
    }
}
