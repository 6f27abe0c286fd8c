import NIOCore
import NIOPosix

/// The threads that make RSA signatures with keys in memory: one per core, started on the first
/// RSA signature. An RSA-4096 signature is about 5 ms of CPU; on the concurrency pool (one thread
/// per core) a burst of acquires would hold every thread and stall heartbeats, reads and answers
/// meanwhile (docs/benchmarks.md, issue 19). Here they queue among themselves. Ed25519 (15 µs)
/// signs where it is asked.
enum RSASigningThreads {
    static let pool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: max(1, System.coreCount))
        pool.start()
        return pool
    }()
}
