import LicenseCore
import ServiceLifecycle

/// Runs the daemon's `LeaseWriteBehind` as a `Service`. Put it before the server in the
/// service group: services stop in reverse order, so the last flush comes after the server
/// has answered its last heartbeat.
public struct LeaseWriterService: Service {
    let writer: LeaseWriteBehind

    /// A service running `writer`.
    public init(writer: LeaseWriteBehind) { self.writer = writer }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await writer.run()
        } onGracefulShutdown: {
            writer.stop()
        }
    }
}
