import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Private files of the client's state folder: folders 0700, files 0600, both owned by the user
/// running the client. A file that another user could write, or that belongs to someone else, is
/// not trusted (read as absent); symbolic links are not followed.
enum SecureFile {
    /// Failure to keep state on disk; the message names the path, never its content.
    static func failure(_ message: String) -> LicenseCallError {
        LicenseCallError(code: .failedPrecondition, reason: "STATE_DIRECTORY", message: message)
    }

    /// Creates `path` (and its parents) with mode 0700, or tightens an existing folder we own to 0700.
    static func ensureDirectory(_ path: String) throws {
        var info = stat()
        if lstat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFDIR else { throw failure("\(path) is not a folder") }
            guard info.st_uid == geteuid() else { throw failure("\(path) belongs to another user") }
            if info.st_mode & 0o077 != 0 { _ = chmod(path, 0o700) }
            return
        }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty, parent != path, access(parent, F_OK) != 0 {
            try ensureDirectory(parent)
        }
        guard mkdir(path, 0o700) == 0 || errno == EEXIST else {
            throw failure("cannot create \(path): \(String(cString: strerror(errno)))")
        }
        _ = chmod(path, 0o700)
    }

    /// The bytes of `path`, or nil when it is missing or not trustworthy (not a regular file we
    /// own, or readable or writable by others).
    static func read(_ path: String, limit: Int = 1 << 20) -> Data? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_uid == geteuid(),
              info.st_mode & 0o077 == 0, Int(info.st_size) <= limit
        else { return nil }
        var data = Data(count: Int(info.st_size))
        let count = data.withUnsafeMutableBytes { posixRead(fd, $0.baseAddress, $0.count) }
        guard count == Int(info.st_size) else { return nil }
        return data
    }

    /// Writes `data` to `path` atomically (a 0600 temporary file renamed over it). Each write has
    /// its own temporary name, so two leases storing the same file at once cannot remove each
    /// other's temporary file.
    static func write(_ data: Data, to path: String) throws {
        let temporary = path + ".tmp-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw failure("cannot write \(path): \(String(cString: strerror(errno)))") }
        let written = data.withUnsafeBytes { posixWrite(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == data.count, synced, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw failure("cannot write \(path)")
        }
    }

    /// Removes `path` if it exists.
    static func remove(_ path: String) {
        unlink(path)
    }
}

#if canImport(Glibc)
private let posixRead = Glibc.read
private let posixWrite = Glibc.write
#elseif canImport(Darwin)
private let posixRead = Darwin.read
private let posixWrite = Darwin.write
#endif
