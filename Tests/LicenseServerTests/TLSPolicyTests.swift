import BackendTestSupport
import Foundation
@testable import LicenseServer
import NIOCore
import Testing

/// What a TLS client meets: strict ALPN, TLS 1.2 only with ECDHE and AEAD, TLS 1.3 as is. Checked
/// with independent TLS stacks: Python's `ssl` (OpenSSL) and `sslscan`.
@Suite("TLS policy", .serialized, .timeLimit(.minutes(2)))
struct TLSPolicyTests {
    /// Connects with Python's ssl module in several ways and reports each outcome.
    static let probe = """
        import json, socket, ssl, sys
        host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
        def attempt(alpn=None, max12=False, ciphers=None):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(ca)
            if alpn is not None: ctx.set_alpn_protocols(alpn)
            if max12: ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            if ciphers: ctx.set_ciphers(ciphers)
            try:
                with socket.create_connection((host, port), timeout=5) as raw:
                    with ctx.wrap_socket(raw, server_hostname=host) as tls:
                        return "ok %s %s %s" % (tls.selected_alpn_protocol() or "-", tls.version(), tls.cipher()[0])
            except Exception as error:
                return "error %s" % error
        print(json.dumps({
            "alpn_h2": attempt(["h2"]),
            "alpn_ours": attempt(["h2", "coditect-license/1"]),
            "alpn_none": attempt(),
            "tls12_cbc": attempt(max12=True, ciphers="ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA256:AES128-SHA:AES256-SHA"),
            "tls12_aead": attempt(["coditect-license/1"], max12=True, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"),
        }))
        """


    @Test func alpnIsStrictAndTLS12OffersOnlyECDHEWithAEAD() async throws {
        try await TestServer.run { server in
            let output = try await CommandRun.run("python3", ["-c", Self.probe, "127.0.0.1", String(server.port), server.caFile]).output
            let results = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: String], "\(output)")
            // RFC 7301: a client offering only other protocols is refused with no_application_protocol.
            #expect(results["alpn_h2"]?.contains("no application protocol") == true, "\(results)")
            #expect(results["alpn_ours"]?.hasPrefix("ok coditect-license/1 TLSv1.3") == true, "\(results)")
            // A client offering no ALPN at all is still served (documented).
            #expect(results["alpn_none"]?.hasPrefix("ok - TLSv1.3") == true, "\(results)")
            #expect(results["tls12_cbc"]?.hasPrefix("error") == true, "\(results)")
            #expect(results["tls12_aead"] == "ok coditect-license/1 TLSv1.2 ECDHE-ECDSA-AES128-GCM-SHA256", "\(results)")
            // The server still serves the protocol's own client.
            let client = try await server.connect()
            _ = try await client.signingKeysJSON()
            await client.close()
        }
    }

    @Test func sslscanFindsNoCBCNoSHA1AndNoOldProtocols() async throws {
        try await TestServer.run { server in
            let output = try await CommandRun.run("sslscan", ["--no-colour", "--timeout=20", "--no-heartbleed", "--no-renegotiation", "--no-compression", "--no-groups", "127.0.0.1:\(server.port)"]).output
            let lines = output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            for old in ["SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1"] {
                #expect(lines.contains { $0.hasPrefix(old) && $0.hasSuffix("disabled") }, "\(old): \(output)")
            }
            let suites = lines.filter { $0.hasPrefix("Accepted") || $0.hasPrefix("Preferred") }
            #expect(suites.contains { $0.contains("TLSv1.2") } && suites.contains { $0.contains("TLSv1.3") }, "\(output)")
            for line in suites {
                let words = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
                let cipher = words.count > 4 ? words[4] : line
                #expect(cipher.contains("GCM") || cipher.contains("CHACHA20"), "not AEAD: \(line)")
                #expect(!cipher.contains("CBC") && !cipher.hasSuffix("-SHA"), "CBC or SHA-1: \(line)")
                if line.contains("TLSv1.2") { #expect(cipher.hasPrefix("ECDHE-"), "no forward secrecy: \(line)") }
            }
        }
    }

    // MARK: - The ClientHello reader

    /// A ClientHello record with the given ALPN protocols (none: no ALPN extension).
    static func clientHello(alpn: [String]?, otherExtension: Bool = true) -> [UInt8] {
        var extensions: [UInt8] = []
        if otherExtension { extensions += [0x00, 0x0b, 0x00, 0x02, 0x01, 0x00] }  // ec_point_formats
        if let alpn {
            let list = alpn.flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) }
            extensions += [0x00, 0x10] + be16(list.count + 2) + be16(list.count) + list
        }
        var hello: [UInt8] = [0x03, 0x03] + Array(repeating: 7, count: 32) + [0]  // version, random, no session id
        hello += be16(2) + [0x13, 0x01] + [1, 0]  // one cipher suite, null compression
        hello += be16(extensions.count) + extensions
        let handshake: [UInt8] = [1, 0] + be16(hello.count) + hello
        return [0x16, 0x03, 0x01] + be16(handshake.count) + handshake
    }

    static func be16(_ value: Int) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xff)] }

    @Test func theClientHelloReaderFindsTheOfferedProtocols() {
        let offered = Self.clientHello(alpn: ["h2", "http/1.1"])
        #expect(ClientHelloInspection(ByteBuffer(bytes: offered)) == .offers(["h2", "http/1.1"]))
        #expect(ClientHelloInspection(ByteBuffer(bytes: Self.clientHello(alpn: ["coditect-license/1"]))) == .offers(["coditect-license/1"]))
        #expect(ClientHelloInspection(ByteBuffer(bytes: Self.clientHello(alpn: nil))) == .offers([]))
        // Every prefix is incomplete: the sniffer waits for the rest of the record.
        for end in 0..<offered.count {
            #expect(ClientHelloInspection(ByteBuffer(bytes: offered[0..<end])) == .incomplete, "prefix \(end)")
        }
        // Not a handshake, a record over 16 KiB, or a malformed list: TLS itself decides.
        #expect(ClientHelloInspection(ByteBuffer(bytes: [0x17, 0x03, 0x03, 0x00, 0x01, 0x00])) == .unreadable)
        #expect(ClientHelloInspection(ByteBuffer(bytes: [0x16, 0x03, 0x01, 0x48, 0x00])) == .unreadable)
        var broken = offered
        broken[broken.count - 9] = 0xff  // the ALPN list length now runs past the extension
        #expect(ClientHelloInspection(ByteBuffer(bytes: broken)) == .unreadable)
    }
}
