import Crypto
import Foundation
import LicenseCore
import SwiftASN1
import X509

/// The embedded default's TLS material: a local CA and a server certificate it signs, written
/// once to `DATA/tls/`. Clients trust `ca.pem`.
public enum LocalCertificateAuthority {
    /// The files of the generated TLS material.
    public struct Files: Sendable {
        public var caCertificate: String
        public var serverCertificate: String
        public var serverKey: String
    }

    /// Creates the CA and server certificate under `directory` unless they exist; returns the paths.
    /// The server certificate names `localhost`, `127.0.0.1`, `::1` and `extraHosts`.
    public static func ensure(in directory: String, extraHosts: [String] = []) throws -> Files {
        let files = Files(
            caCertificate: directory + "/ca.pem",
            serverCertificate: directory + "/server.pem",
            serverKey: directory + "/server-key.pem"
        )
        let fm = FileManager.default
        if fm.fileExists(atPath: files.caCertificate), fm.fileExists(atPath: files.serverCertificate), fm.fileExists(atPath: files.serverKey) {
            return files
        }
        try makePrivateDirectory(directory)

        let now = Date()
        let caKey = P256.Signing.PrivateKey()
        let caName = try authorityName("CODITECT licensed local CA")
        let ca = try authority(name: caName, key: caKey, now: now)

        let serverKey = P256.Signing.PrivateKey()
        var names: [GeneralName] = [.dnsName("localhost"), .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1])),
                                    .ipAddress(ASN1OctetString(contentBytes: ArraySlice([UInt8](repeating: 0, count: 15) + [1])))]
        for host in extraHosts where !host.isEmpty && host != "localhost" {
            if let bytes = ipv4Bytes(host) { names.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes)))) }
            else if !host.contains(":") { names.append(.dnsName(host)) }
        }
        let serverName = try DistinguishedName {
            OrganizationName("CODITECT licensed")
            CommonName("localhost")
        }
        let server = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(serverKey.publicKey),
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(825 * 86_400),
            issuer: caName, subject: serverName,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames(names)
            },
            issuerPrivateKey: .init(caKey)
        )

        try writePrivate(serverKey.pemRepresentation, to: files.serverKey)
        try writePrivate(caKey.pemRepresentation, to: directory + "/ca-key.pem")
        try server.serializeAsPEM().pemString.write(toFile: files.serverCertificate, atomically: true, encoding: .utf8)
        try ca.serializeAsPEM().pemString.write(toFile: files.caCertificate, atomically: true, encoding: .utf8)
        return files
    }

    /// The files of an operator client certificate.
    public struct ClientFiles: Sendable {
        /// The operator CA to give `licensed --operator-client-ca`.
        public var caCertificate: String
        public var certificate: String
        public var key: String
    }

    /// Issues a TLS client certificate whose common name is an operator's user id, signed by an
    /// operator CA kept in `directory` (`operator-ca.pem`, created on first use, separate from
    /// the server's CA). Writes `<commonName>.pem` and `<commonName>-key.pem` there.
    public static func issueOperatorCertificate(commonName: String, in directory: String, validity: TimeInterval = 365 * 86_400) throws -> ClientFiles {
        let fm = FileManager.default
        try fm.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let caPath = directory + "/operator-ca.pem", caKeyPath = directory + "/operator-ca-key.pem"
        let caName = try authorityName("CODITECT licensed operator CA")
        let now = Date()
        let caKey: P256.Signing.PrivateKey
        if fm.fileExists(atPath: caPath), fm.fileExists(atPath: caKeyPath) {
            caKey = try P256.Signing.PrivateKey(pemRepresentation: try String(contentsOfFile: caKeyPath, encoding: .utf8))
        } else {
            caKey = P256.Signing.PrivateKey()
            let ca = try authority(name: caName, key: caKey, now: now)
            try writePrivate(caKey.pemRepresentation, to: caKeyPath)
            try ca.serializeAsPEM().pemString.write(toFile: caPath, atomically: true, encoding: .utf8)
        }
        let key = P256.Signing.PrivateKey()
        let subject = try DistinguishedName {
            OrganizationName("CODITECT licensed")
            CommonName(commonName)
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(validity),
            issuer: caName, subject: subject,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.clientAuth])
            },
            issuerPrivateKey: .init(caKey)
        )
        let files = ClientFiles(caCertificate: caPath, certificate: directory + "/\(commonName).pem", key: directory + "/\(commonName)-key.pem")
        try writePrivate(key.pemRepresentation, to: files.key)
        try certificate.serializeAsPEM().pemString.write(toFile: files.certificate, atomically: true, encoding: .utf8)
        return files
    }

    private static func authorityName(_ commonName: String) throws -> DistinguishedName {
        try DistinguishedName {
            OrganizationName("CODITECT licensed")
            CommonName(commonName)
        }
    }

    /// A self-signed CA certificate, valid for ten years, that may sign only end-entity certificates.
    private static func authority(name: DistinguishedName, key: P256.Signing.PrivateKey, now: Date) throws -> Certificate {
        try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(10 * 365 * 86_400),
            issuer: name, subject: name,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            },
            issuerPrivateKey: .init(key)
        )
    }

    private static func ipv4Bytes(_ host: String) -> [UInt8]? {
        let parts = host.split(separator: ".")
        guard parts.count == 4 else { return nil }
        let bytes = parts.compactMap { UInt8($0) }
        return bytes.count == 4 ? bytes : nil
    }
}

/// Writes a secret file readable only by its owner (0600).
func writePrivate(_ text: String, to path: String) throws {
    let fm = FileManager.default
    if fm.fileExists(atPath: path) { try fm.removeItem(atPath: path) }
    guard fm.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
        throw LicenseError(.internal, .internalError, "could not write \(path)")
    }
}
