import Foundation
import Logging

/// The daemon's open-file limit (`RLIMIT_NOFILE`). Each connection holds a descriptor; the soft
/// limit is raised to the hard one at start (as many servers do), and the connection cap is
/// fitted to what it allows (`ConnectionLimits.fitting`).
enum OpenFileLimit {
    static func raise(logger: Logger) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        let previous = limit.rlim_cur
        limit.rlim_cur = limit.rlim_max
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 {
            logger.warning("could not raise the open-file limit", metadata: ["soft": "\(previous)", "hard": "\(limit.rlim_max)"])
        }
    }
}
