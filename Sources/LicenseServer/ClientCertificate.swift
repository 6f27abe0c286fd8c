import NIOCore
import NIOSSL
import SwiftASN1
import X509

/// The TLS client certificate of a connection, as far as authentication needs it.
enum ClientCertificate {
    /// The subject common name of the peer's certificate. NIOSSL verified the certificate in the
    /// handshake against the operator client CA (a certificate that fails fails the handshake);
    /// `nil` when the client presented none.
    static func commonName(on channel: any Channel) async -> String? {
        guard let certificate = try? await channel.nioSSL_peerCertificate().get(),
              let parsed = try? Certificate(derEncoded: certificate.toDERBytes())
        else { return nil }
        for name in parsed.subject {
            for attribute in name where attribute.type == .RDNAttributeType.commonName {
                return String(describing: attribute.value)
            }
        }
        return nil
    }
}
