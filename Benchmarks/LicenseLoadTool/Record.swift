import ArgumentParser
import Foundation
import LicenseClient
import LicenseLoad
import LicenseServer
import NIOSSL
import UnixSignals

struct Record: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Record real client traffic through a TLS proxy into a recording file (JSON Lines).",
        discussion: """
        Listens on --listen with a certificate of its own (made in --tls-dir; clients must trust \
        --tls-dir/ca.pem) and passes every frame to the daemon at --server unchanged. Each client \
        connection becomes one user of the recording. Stops after --duration or on Ctrl-C, and writes --out.
        """
    )

    @Option(help: "Where clients connect (HOST:PORT).") var listen = "127.0.0.1:7444"
    @Option(help: "The daemon, HOST:PORT.") var server = "127.0.0.1:7443"
    @Option(help: "CA certificate PEM of the daemon.") var ca: String
    @Option(name: .customLong("tls-dir"), help: "Folder of the proxy's CA and certificate (created if missing).") var tlsDir = "license-load-proxy-tls"
    @Option(help: "Seconds to record (at most a day).") var duration = 60.0
    @Option(help: "What the recording holds.") var description = "recorded client traffic"
    @Option(help: "The file to write.") var out: String

    func run() async throws {
        guard duration > 0, duration <= 86_400 else { throw ValidationError("--duration must be 1…86400 seconds") }
        let listenEndpoint = try LicenseServerEndpoint(parsing: listen)
        var upstream = try LicenseServerEndpoint(parsing: server, caFile: ca)
        upstream.connectTimeout = .seconds(10)
        guard FileManager.default.isReadableFile(atPath: ca) else { throw ValidationError("cannot read --ca \(ca)") }
        let files = try LocalCertificateAuthority.ensure(in: tlsDir, extraHosts: [listenEndpoint.host])
        let tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(files.serverCertificate).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: files.serverKey, format: .pem))
        )
        let seconds = duration
        let recording = try await RecordingProxy(tls: tls, upstream: upstream).record(
            host: listenEndpoint.host, port: listenEndpoint.port, description: description,
            onListening: { address in
                FileHandle.standardError.write(Data("recording on \(address) for \(Int(seconds)) s (clients trust \(files.caCertificate)); Ctrl-C stops\n".utf8))
            },
            until: {
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { try? await Task.sleep(for: .seconds(seconds)) }
                    group.addTask { for await _ in await UnixSignalsSequence(trapping: .sigint, .sigterm) { return } }
                    await group.next()
                    group.cancelAll()
                }
            }
        )
        try recording.encoded().write(toFile: out, atomically: true, encoding: .utf8)
        print("wrote \(out): \(recording.users) users, \(recording.entries.count) frames")
    }
}
