import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Why a file could not be moved: the errno and the step, so a full disk (ENOSPC) or a read-only folder
/// (EROFS, EACCES) becomes a DISK fault with a reason instead of a crash.
public struct MoveError: Error, CustomStringConvertible {
    public let step: String
    public let code: Int32
    public var description: String { "\(step): \(String(cString: strerror(code))) (errno \(code))" }
}

/// Where processed and refused files go, and how they get there. Moves are atomic: `rename(2)` inside one
/// filesystem; across filesystems a copy into a temporary name beside the target, `fsync`, `rename`, then
/// the source is unlinked. The target folder is fsynced after the rename so the move survives power loss.
/// Nothing is ever overwritten: a name already taken gets a `.1`, `.2`, ... suffix.
public struct FileMover: Sendable {
    public let archiveFolder: String
    public let quarantineFolder: String

    public init(archiveFolder: String, quarantineFolder: String) {
        self.archiveFolder = archiveFolder
        self.quarantineFolder = quarantineFolder
    }

    /// `archive/<YYYY-MM-DD>/<StudyInstanceUID>/<SeriesInstanceUID>/<name>` (UTC date of processing).
    public func archiveDestination(study: String, series: String, name: String, at date: Date = Date()) -> String {
        let day = Self.day(date)
        return [archiveFolder, day, Self.safeComponent(study), Self.safeComponent(series), Self.safeComponent(name)]
            .joined(separator: "/")
    }

    public func quarantineDestination(name: String) -> String {
        quarantineFolder + "/" + Self.safeComponent(name)
    }

    static func day(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day], from: date)
        return String(format: "%04d-%02d-%02d", c.year!, c.month!, c.day!)
    }

    /// UIDs are digits and dots; anything else (a hostile or broken header) must not make a path.
    static func safeComponent(_ s: String) -> String {
        let cleaned = String(s.map { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) ? $0 : "_" })
        if cleaned.isEmpty || cleaned == "." || cleaned == ".." { return "unknown" }
        return String(cleaned.prefix(128))
    }

    /// A free name at `destination` (the name itself, or with a numeric suffix).
    public static func freeName(_ destination: String) -> String {
        var candidate = destination, n = 1
        while FileManager.default.fileExists(atPath: candidate) {
            candidate = "\(destination).\(n)"
            n += 1
        }
        return candidate
    }

    /// Moves `source` to exactly `destination` (which must not exist), creating folders. Returns normally when
    /// the file is at the destination and gone from the source.
    public static func move(_ source: String, to destination: String) throws(MoveError) {
        let folder = (destination as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw MoveError(step: "create \(folder)", code: (error as NSError).userInfo[NSUnderlyingErrorKey].flatMap { ($0 as? NSError)?.code }.map(Int32.init) ?? EIO)
        }
        if rename(source, destination) == 0 {
            syncFolder(folder)
            return
        }
        let e = errno
        guard e == EXDEV else { throw MoveError(step: "rename into \(folder)", code: e) }
        // Another filesystem: copy beside the target, make it durable, then publish it by rename.
        let temporary = (folder as NSString).appendingPathComponent(".ichd-move-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try copyDurably(source, to: temporary)
        guard rename(temporary, destination) == 0 else {
            let e = errno
            unlink(temporary)
            throw MoveError(step: "rename into \(folder)", code: e)
        }
        syncFolder(folder)
        guard unlink(source) == 0 || errno == ENOENT else { throw MoveError(step: "remove the source after copying", code: errno) }
    }

    /// Writes `text` to `path` durably (temporary name, fsync, rename), for reason files.
    public static func writeDurably(_ text: String, to path: String) throws(MoveError) {
        let folder = (path as NSString).deletingLastPathComponent
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw MoveError(step: "create \(temporary)", code: errno) }
        let bytes = Array(text.utf8)
        let ok = bytes.withUnsafeBytes { writeAll(fd, $0) } && fsync(fd) == 0
        let e = errno
        close(fd)
        guard ok else {
            unlink(temporary)
            throw MoveError(step: "write \(path)", code: e)
        }
        guard rename(temporary, path) == 0 else {
            let e = errno
            unlink(temporary)
            throw MoveError(step: "rename \(path)", code: e)
        }
        syncFolder(folder)
    }

    static func copyDurably(_ source: String, to target: String) throws(MoveError) {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw MoveError(step: "open the source", code: errno) }
        defer { close(input) }
        let output = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard output >= 0 else { throw MoveError(step: "create \(target)", code: errno) }
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var failure: MoveError?
        while failure == nil {
            let n = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR { continue }
                failure = MoveError(step: "read the source", code: errno)
                break
            }
            if !buffer.withUnsafeBytes({ writeAll(output, UnsafeRawBufferPointer(rebasing: $0[0..<n])) }) {
                failure = MoveError(step: "write \(target)", code: errno)
            }
        }
        if failure == nil, fsync(output) != 0 { failure = MoveError(step: "fsync \(target)", code: errno) }
        close(output)
        if let failure {
            unlink(target)
            throw failure
        }
    }

    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += n
        }
        return true
    }

    static func syncFolder(_ folder: String) {
        let fd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
    }
}
