import Foundation
import ICHIngest
#if canImport(Glibc)
import Glibc
#endif

/// A file that is complete in the drop folder: its path and when it was closed (the event's time, or the
/// file's modification time for files found by a scan). Latency is measured from `closedAt`.
public struct Arrival: Sendable, Equatable {
    public var path: String
    public var closedAt: Date

    public init(path: String, closedAt: Date) {
        self.path = path
        self.closedAt = closedAt
    }
}

/// Watches the drop folder and every folder below it. inotify `IN_CLOSE_WRITE` (a producer closed a file it
/// wrote, which is how DCMTK's storescp finishes an object) and `IN_MOVED_TO` (a producer that writes a
/// temporary name and renames it); new subfolders are watched as they appear and scanned right after the
/// watch is added (files may land before it). `IN_Q_OVERFLOW` means events were lost: the whole tree is
/// rescanned. Where inotify is unavailable (network filesystems do not deliver remote writes) a poll
/// reports a file once its size and modification time are stable over two polls.
///
/// The watcher reports; it does not deduplicate. A file may be reported more than once (a scan finds what an
/// event already named, storescp overwrites a duplicate), and a reported file may be gone when it is read
/// (storescp deletes a failed transfer): the intake keys work by SOP Instance UID and tolerates both.
public final class DropFolderWatcher: @unchecked Sendable {
    public enum Mode: String, Sendable { case inotify, poll }

    public let folder: String
    public let pollInterval: TimeInterval
    /// Full rescans behind inotify's back (belt and braces: a missed event costs at most this much latency).
    public let safetyRescanInterval: TimeInterval
    public private(set) var mode: Mode
    private let onArrival: @Sendable (Arrival) -> Void
    private let onProblem: @Sendable (String?) -> Void
    private let stopping = NSLock()
    private var stopped = false
    private var thread: Thread?
    private var inotifyFD: Int32 = -1
    private var watches: [Int32: String] = [:]
    private var pollSeen: [String: (size: Int64, mtime: Double)] = [:]
    private var pollReported: Set<String> = []

    /// `onProblem(message)` reports the drop folder missing or unwatchable (nil once it is fine again).
    public init(folder: String, mode requested: DaemonConfig.WatchMode, pollInterval: TimeInterval,
                safetyRescanInterval: TimeInterval = 60,
                onArrival: @escaping @Sendable (Arrival) -> Void, onProblem: @escaping @Sendable (String?) -> Void) {
        self.folder = URL(fileURLWithPath: folder).standardizedFileURL.path
        self.pollInterval = pollInterval
        self.safetyRescanInterval = safetyRescanInterval
        self.onArrival = onArrival
        self.onProblem = onProblem
        switch requested {
        case .poll: mode = .poll
        case .inotify: mode = .inotify
        case .auto: mode = Self.isNetworkFilesystem(folder) ? .poll : .inotify
        }
    }

    /// Network and FUSE filesystems (from /proc/mounts: the longest mount point holding the folder):
    /// inotify sees only local writes there.
    static func isNetworkFilesystem(_ path: String) -> Bool {
        guard let mounts = try? String(contentsOfFile: "/proc/mounts", encoding: .utf8) else { return false }
        let target = URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
        var best: (point: String, type: String)?
        for line in mounts.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 3 else { continue }
            let point = String(fields[1]), type = String(fields[2])
            guard target == point || target.hasPrefix(point == "/" ? "/" : point + "/") else { continue }
            if best == nil || point.count > best!.point.count { best = (point, type) }
        }
        guard let type = best?.type else { return false }
        return ["nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse", "fuseblk", "sshfs", "9p", "afs", "ceph", "glusterfs"].contains(type)
            || type.hasPrefix("fuse.")
    }

    /// In-progress names that producers rename when done; never read.
    public static func isInProgressName(_ name: String) -> Bool {
        name.hasPrefix(".") || name.hasSuffix(".part") || name.hasSuffix(".tmp") || name.hasSuffix(".partial")
    }

    public func start() {
        if mode == .inotify {
            inotifyFD = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
            if inotifyFD < 0 { mode = .poll }
        }
        let t = Thread { [self] in run() }
        t.name = "ichd-watch"
        thread = t
        t.start()
    }

    public func stop() {
        stopping.withLock { stopped = true }
    }

    private var isStopped: Bool { stopping.withLock { stopped } }

    private func run() {
        var lastRescan = Date.distantPast
        var folderOK = false
        while !isStopped {
            // The drop folder itself may vanish (an unmounted share, a careless cleanup): report, recreate
            // watches when it is back, and rescan.
            var isDirectory: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) && isDirectory.boolValue
            if !exists || access(folder, R_OK | X_OK) != 0 {
                if folderOK || lastRescan == .distantPast { onProblem("drop folder \(folder) is missing or unreadable") }
                folderOK = false
                lastRescan = Date()
                sleepInterval(pollInterval)
                continue
            }
            if !folderOK {
                folderOK = true
                onProblem(nil)
                if mode == .inotify { resetWatches() }
                lastRescan = Date()
                rescan()
                continue
            }
            switch mode {
            case .inotify:
                reportSettled()
                if !readEvents(timeout: min(pollInterval, 0.5)) {
                    // The root watch went away (deleted, moved, unmounted): check the folder and rebuild.
                    if FileManager.default.fileExists(atPath: folder) { resetWatches() }
                    continue
                }
                if Date().timeIntervalSince(lastRescan) >= safetyRescanInterval {
                    lastRescan = Date()
                    rescan()
                }
            case .poll:
                pollOnce()
                sleepInterval(pollInterval)
            }
        }
        if inotifyFD >= 0 { close(inotifyFD) }
    }

    private func sleepInterval(_ seconds: TimeInterval) {
        let end = Date().addingTimeInterval(seconds)
        while !isStopped, Date() < end { usleep(20_000) }
    }

    // MARK: - Scans

    /// Every complete candidate under the drop folder, as arrivals with their modification time.
    public func rescan() {
        report(Self.candidates(under: folder))
        stopping.withLock { scanned = true }
    }

    /// A scan cannot tell a finished file from one a producer is still writing (storescp writes in place).
    /// Files changed within `settleTime` are held back and reported once they have been still that long; the
    /// watch, added before any scan, also reports them when their writer closes them.
    public static let settleTime: TimeInterval = 2
    private var young: [String: Double] = [:] {
        didSet { let n = young.count; stopping.withLock { heldBack = n } }
    }
    private var heldBack = 0
    private var scanned = false

    /// Files seen but not reported yet (still settling), or the first scan not done: not idle.
    public var isSettling: Bool { stopping.withLock { heldBack > 0 || !scanned } }

    private func report(_ found: [(path: String, mtime: Double, size: Int64)]) {
        let now = Date().timeIntervalSince1970
        for (path, mtime, _) in found {
            if now - mtime < Self.settleTime {
                young[path] = mtime
            } else {
                onArrival(Arrival(path: path, closedAt: Date(timeIntervalSince1970: mtime)))
            }
        }
    }

    private func reportSettled() {
        guard !young.isEmpty else { return }
        let now = Date().timeIntervalSince1970
        for (path, _) in young {
            var st = stat()
            guard stat(path, &st) == 0 else {
                young[path] = nil
                continue
            }
            let mtime = Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9
            if now - mtime >= Self.settleTime {
                young[path] = nil
                onArrival(Arrival(path: path, closedAt: Date(timeIntervalSince1970: mtime)))
            } else {
                young[path] = mtime
            }
        }
    }

    /// Every candidate file below `root`: path, modification time, size (one `lstat` each).
    static func candidates(under root: String) -> [(path: String, mtime: Double, size: Int64)] {
        var out: [(path: String, mtime: Double, size: Int64)] = []
        var stack = [root]
        while let dir = stack.popLast() {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { continue }
            for name in names.sorted() where !isInProgressName(name) {
                let path = dir + "/" + name
                var st = stat()
                guard lstat(path, &st) == 0 else { continue }
                if (st.st_mode & S_IFMT) == S_IFDIR {
                    stack.append(path)
                } else if (st.st_mode & S_IFMT) == S_IFREG, !isSidecar(name) {
                    out.append((path, Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9, Int64(st.st_size)))
                }
            }
        }
        return out
    }

    /// Label and note files that travel with research datasets are not slices (ingest's own list); they stay
    /// where they are.
    static func isSidecar(_ name: String) -> Bool {
        SliceFile.sidecarExtensions.contains((name as NSString).pathExtension.lowercased())
    }

    private func pollOnce() {
        var present: Set<String> = []
        let now = Date().timeIntervalSince1970
        for (path, mtime, size) in Self.candidates(under: folder) {
            present.insert(path)
            let now2 = (size: size, mtime: mtime)
            defer { pollSeen[path] = now2 }
            guard !pollReported.contains(path) else {
                // A reported file that changed was rewritten (a duplicate sent again): report it again.
                if let before = pollSeen[path], before != now2 { pollReported.remove(path) }
                continue
            }
            if let before = pollSeen[path], before == now2, now - mtime >= pollInterval {
                pollReported.insert(path)
                onArrival(Arrival(path: path, closedAt: Date(timeIntervalSince1970: mtime)))
            }
        }
        pollSeen = pollSeen.filter { present.contains($0.key) }
        pollReported.formIntersection(present)
    }

    // MARK: - inotify

    private static let fileMask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

    private func resetWatches() {
        for wd in watches.keys { inotify_rm_watch(inotifyFD, wd) }
        watches = [:]
        addWatchTree(folder)
    }

    /// Watches `dir` and every folder below it.
    private func addWatchTree(_ dir: String) {
        var stack = [dir]
        while let d = stack.popLast() {
            let wd = inotify_add_watch(inotifyFD, d, Self.fileMask)
            if wd >= 0 { watches[wd] = d }
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: d) else { continue }
            for name in names where !name.hasPrefix(".") {
                var st = stat()
                if lstat(d + "/" + name, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR { stack.append(d + "/" + name) }
            }
        }
    }

    /// Reads what arrived within `timeout`. Returns false when the root watch is gone.
    private func readEvents(timeout: TimeInterval) -> Bool {
        var fds = [pollfd(fd: inotifyFD, events: Int16(POLLIN), revents: 0)]
        let ready = poll(&fds, 1, Int32(timeout * 1000))
        guard ready > 0 else { return true }
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(inotifyFD, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            var offset = 0
            let now = Date()
            while offset + 16 <= n {
                let (wd, mask, length): (Int32, UInt32, Int) = buffer.withUnsafeBytes { raw in
                    (raw.loadUnaligned(fromByteOffset: offset, as: Int32.self),
                     raw.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self),
                     Int(raw.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self)))
                }
                let nameBytes = buffer[(offset + 16)..<min(n, offset + 16 + length)].prefix { $0 != 0 }
                let name = String(decoding: nameBytes, as: UTF8.self)
                offset += 16 + length
                if mask & UInt32(IN_Q_OVERFLOW) != 0 {
                    rescan()
                    continue
                }
                if mask & UInt32(IN_IGNORED) != 0 || mask & UInt32(IN_DELETE_SELF | IN_MOVE_SELF) != 0 {
                    let gone = watches.removeValue(forKey: wd)
                    if gone == folder { return false }
                    continue
                }
                guard let dir = watches[wd], !name.isEmpty else { continue }
                let path = dir + "/" + name
                if mask & UInt32(IN_ISDIR) != 0 {
                    if mask & UInt32(IN_CREATE | IN_MOVED_TO) != 0, !name.hasPrefix(".") {
                        addWatchTree(path)
                        report(Self.candidates(under: path))
                    }
                    continue
                }
                guard mask & UInt32(IN_CLOSE_WRITE | IN_MOVED_TO) != 0, !Self.isInProgressName(name), !Self.isSidecar(name) else { continue }
                young[path] = nil
                onArrival(Arrival(path: path, closedAt: now))
            }
        }
        return true
    }
}
