import Foundation
import GRDB
import Glibc
@testable import ICHDaemon
import ICHTestSupport
import Testing

@Suite struct IntakeQueueTests {
    static func item(_ path: String, _ series: String, _ t: Double = 0) -> IntakeQueue.Item {
        IntakeQueue.Item(arrival: Arrival(path: path, closedAt: Date(timeIntervalSince1970: t)), series: series)
    }

    @Test func aNewSeriesIsServedBetweenTheFilesOfABacklog() {
        let q = IntakeQueue()
        for i in 0..<5 { q.add(Self.item("/d/a\(i)", "A")) }
        q.add(Self.item("/d/b0", "B"))
        q.add(Self.item("/d/b1", "B"))
        var order: [String] = []
        while let next = q.next(timeout: 0) {
            order.append(next.arrival.path)
            q.finished(next.arrival.path)
        }
        #expect(order == ["/d/a0", "/d/b0", "/d/a1", "/d/b1", "/d/a2", "/d/a3", "/d/a4"])
    }

    @Test func aPathIsQueuedOnceAndAReportDuringProcessingIsServedAgainAfterIt() {
        let q = IntakeQueue()
        q.add(Self.item("/d/x", "A", 1))
        q.add(Self.item("/d/x", "A", 2))
        #expect(q.count == 1)
        let first = q.next(timeout: 0)
        #expect(first?.arrival.closedAt == Date(timeIntervalSince1970: 2), "the latest close time wins")
        q.add(Self.item("/d/x", "A", 3))  // rewritten while being processed
        #expect(q.next(timeout: 0) == nil, "not served twice at once")
        #expect(q.activeCount(series: "A") == 1)
        q.finished("/d/x")
        #expect(q.next(timeout: 0)?.arrival.closedAt == Date(timeIntervalSince1970: 3))
    }
}

@Suite struct LatencyTrackerTests {
    @Test func percentilesOverBudgetCountAndSustainedOverrun() {
        var t = LatencyTracker(budgetMs: 100, window: 10)
        for ms in stride(from: 10.0, through: 100, by: 10) {
            let changed = t.record(ms)
            #expect(!changed)
        }
        #expect(t.percentile(50) == 60 && t.percentile(99) == 100 && t.overBudget == 0)
        let slow = t.record(500)
        #expect(!slow, "one slow slice is not sustained")
        var changed = false
        for _ in 0..<5 { changed = t.record(300) || changed }
        #expect(changed && t.degraded && t.overBudget == 6)
        for _ in 0..<4 { _ = t.record(20) }
        #expect(t.degraded, "clears only after window/2 slices within budget")
        let cleared = t.record(20)
        #expect(cleared && !t.degraded)
    }
}

@Suite struct FileMoverTests {
    @Test func archiveLayoutAndNamesThatAreNeverOverwritten() throws {
        let dir = TemporaryDirectory()
        let mover = FileMover(archiveFolder: dir.file("archive"), quarantineFolder: dir.file("q"))
        let day = Date(timeIntervalSince1970: 1_796_000_000)  // 2026-11-30 UTC
        let d = mover.archiveDestination(study: "1.2.3", series: "1.2.3.4", name: "CT.1", at: day)
        #expect(d == dir.file("archive") + "/2026-11-30/1.2.3/1.2.3.4/CT.1")
        #expect(mover.archiveDestination(study: "../../etc", series: "a/b", name: "x", at: day).hasSuffix("/.._.._etc/a_b/x"),
                "a hostile UID cannot leave the archive")
        for i in 0..<3 {
            FileManager.default.createFile(atPath: dir.file("src\(i)"), contents: Data("\(i)".utf8))
            try FileMover.move(dir.file("src\(i)"), to: FileMover.freeName(d))
        }
        #expect(try String(contentsOfFile: d, encoding: .utf8) == "0")
        #expect(try String(contentsOfFile: d + ".1", encoding: .utf8) == "1")
        #expect(try String(contentsOfFile: d + ".2", encoding: .utf8) == "2")
        #expect(!FileManager.default.fileExists(atPath: dir.file("src0")))
    }

    @Test func acrossFilesystemsTheMoveCopiesSyncsAndRenames() throws {
        // /dev/shm is a tmpfs: rename(2) from there to the temp folder fails with EXDEV.
        let dir = TemporaryDirectory()
        let source = "/dev/shm/ichd-move-test-\(UUID().uuidString)"
        let payload = Data((0..<200_000).map { UInt8($0 % 251) })
        guard FileManager.default.createFile(atPath: source, contents: payload) else { return }
        try FileMover.move(source, to: dir.file("sub/moved"))
        #expect(FileManager.default.contents(atPath: dir.file("sub/moved")) == payload)
        #expect(!FileManager.default.fileExists(atPath: source))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.file("sub")) == ["moved"], "no temporary left behind")
    }

    @Test func anUnwritableFolderIsAnErrorWithTheReasonNotACrash() throws {
        guard getuid() != 0 else {
            // root ignores permissions; a read-only bind is not available here: check a missing parent instead.
            FileManager.default.createFile(atPath: "/tmp/ichd-blocker-\(getpid())", contents: Data())
            defer { unlink("/tmp/ichd-blocker-\(getpid())") }
            let dir = TemporaryDirectory()
            FileManager.default.createFile(atPath: dir.file("f"), contents: Data("x".utf8))
            #expect(throws: MoveError.self) { try FileMover.move(dir.file("f"), to: "/tmp/ichd-blocker-\(getpid())/sub/f") }
            #expect(FileManager.default.fileExists(atPath: dir.file("f")), "the source stays")
            return
        }
    }
}

@Suite struct JournalTests {
    static func outcome(_ sop: String, series: String = "S1", scored: Bool = true) -> Journal.InstanceOutcome {
        Journal.InstanceOutcome(sopUID: sop, studyUID: "ST", seriesUID: series, source: "drop/\(sop)", receivedAt: Date(),
                                outcome: scored ? "scored" : "skipped", reason: nil, destination: "/archive/\(sop)",
                                slices: [.init(frame: 0, sortKey: 1, instance: 1, probabilities: scored ? [0.9, 0.1] : nil, latencyMs: 12)])
    }

    static func alert(_ series: String = "S1") -> Journal.AlertRecord {
        Journal.AlertRecord(id: Daemon.alertID(series: series), seriesUID: series, studyUID: "ST", slice: 3,
                            probabilities: [0.9, nil, 0.2, nil, nil, 0.7], latencyMs: 40, raisedAt: Date(), accession: nil)
    }

    @Test func oneAlertPerSeriesSurvivesReopeningAndAcknowledgementsStick() throws {
        let dir = TemporaryDirectory()
        do {
            let j = try Journal(folder: dir.path)
            #expect(try j.commit(Self.outcome("1"), alert: Self.alert()))
            #expect(try !j.commit(Self.outcome("2"), alert: Self.alert()), "the series already has its alert")
            #expect(throws: (any Error).self) { try j.commit(Self.outcome("1")) }  // an instance is recorded once
            #expect(try j.instance("1")?.moved == false)
            try j.confirmMove("1")
        }
        let j = try Journal(folder: dir.path)  // as after a restart
        #expect(try j.instance("1")?.moved == true && j.unmovedInstances().map(\.sopUID) == ["2"])
        let pending = try j.pendingAlerts()
        #expect(pending.count == 1 && pending[0].probabilities == [0.9, nil, 0.2, nil, nil, 0.7] && pending[0].slice == 3)
        #expect(try j.acknowledge(pending[0].id, by: "serial"))
        #expect(try !j.acknowledge(pending[0].id, by: "button"), "already acknowledged")
        #expect(try Journal(folder: dir.path).pendingAlerts().isEmpty)
        let c = try j.counts()
        #expect(c.instances == 2 && c.scorings == 2 && c.alerts == 1 && c.acknowledged == 1)
        #expect(try j.openSeries().first?.slices.count == 2)
        try j.finalizeSeries("S1", result: "POS")
        #expect(try j.openSeries().isEmpty)
    }

    /// A slice's `ood` score is kept (a series' ood survives a restart), and a journal written by the firmware
    /// before the column existed (migration v1 only) opens, migrates and keeps its rows.
    @Test func sliceOODIsKeptAndAVersion1JournalMigrates() throws {
        let dir = TemporaryDirectory()
        do {
            // The v1 schema as the previous firmware created it, with one slice.
            let old = try DatabaseQueue(path: dir.file("journal.sqlite"))
            try old.write { db in
                try db.execute(sql: """
                    CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);
                    INSERT INTO grdb_migrations VALUES ('v1');
                    CREATE TABLE instances (sop_uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL, series_uid TEXT NOT NULL, source TEXT NOT NULL,
                        received_at REAL NOT NULL, done_at REAL NOT NULL, outcome TEXT NOT NULL, reason TEXT, destination TEXT NOT NULL,
                        moved INTEGER NOT NULL DEFAULT 0);
                    CREATE TABLE slices (sop_uid TEXT NOT NULL, frame INTEGER NOT NULL, series_uid TEXT NOT NULL, sort_key REAL NOT NULL,
                        instance INTEGER, scored INTEGER NOT NULL, probabilities TEXT, latency_ms INTEGER, PRIMARY KEY (sop_uid, frame));
                    CREATE TABLE scorings (id INTEGER PRIMARY KEY AUTOINCREMENT, sop_uid TEXT NOT NULL, frame INTEGER NOT NULL, at REAL NOT NULL);
                    CREATE TABLE series (series_uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL, rejected INTEGER NOT NULL DEFAULT 0,
                        final INTEGER NOT NULL DEFAULT 0, result TEXT, results_sent INTEGER NOT NULL DEFAULT 0, final_at REAL);
                    CREATE TABLE alerts (id TEXT PRIMARY KEY, series_uid TEXT NOT NULL UNIQUE, study_uid TEXT NOT NULL, slice INTEGER,
                        probabilities TEXT NOT NULL, latency_ms INTEGER NOT NULL, raised_at REAL NOT NULL, accession TEXT, acked_at REAL, acked_by TEXT);
                    CREATE TABLE duplicates (id INTEGER PRIMARY KEY AUTOINCREMENT, sop_uid TEXT NOT NULL, at REAL NOT NULL, destination TEXT NOT NULL,
                        moved INTEGER NOT NULL DEFAULT 0);
                    INSERT INTO series (series_uid, study_uid) VALUES ('S1', 'ST');
                    INSERT INTO slices VALUES ('0', 0, 'S1', 0.5, 1, 1, '0.5,0.5', 10);
                    """)
            }
        }
        let j = try Journal(folder: dir.path)
        var o = Self.outcome("1")
        o.slices[0].ood = 1.75
        #expect(try !j.commit(o))
        let slices = try #require(try j.openSeries().first { $0.seriesUID == "S1" }).slices
        #expect(slices.count == 2 && slices.map(\.ood) == [nil, 1.75], "the old row reads as unknown, the new one keeps its ood")
    }

    @Test func alertIDsAreStableAndDifferPerSeries() {
        #expect(Daemon.alertID(series: "1.2.3") == Daemon.alertID(series: "1.2.3"))
        #expect(Daemon.alertID(series: "1.2.3") != Daemon.alertID(series: "1.2.4"))
        #expect(Daemon.alertID(series: "1.2.3").count == 13)
    }
}

@Suite struct DropFolderWatcherTests {
    final class Seen: @unchecked Sendable {
        let lock = NSLock()
        var paths: [String] = []
        func add(_ p: String) { lock.withLock { paths.append(p) } }
        func has(_ suffix: String) -> Bool { lock.withLock { paths.contains { $0.hasSuffix(suffix) } } }
        func count(_ suffix: String) -> Int { lock.withLock { paths.filter { $0.hasSuffix(suffix) }.count } }
    }

    static func waitFor(_ seconds: Double = 10, _ condition: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }

    @Test(arguments: [DaemonConfig.WatchMode.inotify, .poll])
    func filesInNewSubfoldersRenamesAndTheStartupScanAreSeenInProgressNamesAreNot(mode: DaemonConfig.WatchMode) throws {
        let dir = TemporaryDirectory()
        FileManager.default.createFile(atPath: dir.file("before.dcm"), contents: Data("a".utf8))
        let seen = Seen()
        let watcher = DropFolderWatcher(folder: dir.path, mode: mode, pollInterval: 0.1, onArrival: { seen.add($0.path) }, onProblem: { _ in })
        watcher.start()
        defer { watcher.stop() }
        #expect(Self.waitFor { seen.has("/before.dcm") }, "the start-up scan finds what arrived while down")
        try FileManager.default.createDirectory(atPath: dir.file("study/series"), withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: dir.file("study/series/CT.1"), contents: Data("b".utf8))
        FileManager.default.createFile(atPath: dir.file("study/series/CT.2.part"), contents: Data("c".utf8))
        FileManager.default.createFile(atPath: dir.file(".hidden"), contents: Data("c".utf8))
        FileManager.default.createFile(atPath: dir.file("labels.csv"), contents: Data("c".utf8))
        #expect(Self.waitFor { seen.has("/study/series/CT.1") }, "a file in a new subfolder")
        try FileManager.default.moveItem(atPath: dir.file("study/series/CT.2.part"), toPath: dir.file("study/series/CT.2"))
        #expect(Self.waitFor { seen.has("/study/series/CT.2") }, "a producer that renames when done")
        usleep(300_000)
        #expect(!seen.has(".part") && !seen.has(".hidden") && !seen.has("labels.csv"))
        #expect(watcher.mode.rawValue == mode.rawValue)
    }

    @Test func theDropFolderVanishingIsReportedAndWatchingResumesWhenItReturns() throws {
        let parent = TemporaryDirectory()
        let drop = parent.file("drop")
        try FileManager.default.createDirectory(atPath: drop, withIntermediateDirectories: true)
        let seen = Seen()
        let problems = Seen()
        let watcher = DropFolderWatcher(folder: drop, mode: .inotify, pollInterval: 0.1, onArrival: { seen.add($0.path) },
                                        onProblem: { problems.add($0 ?? "ok") })
        watcher.start()
        defer { watcher.stop() }
        #expect(Self.waitFor { problems.count("ok") == 1 })
        try FileManager.default.removeItem(atPath: drop)
        #expect(Self.waitFor { problems.has("missing or unreadable") })
        try FileManager.default.createDirectory(atPath: drop, withIntermediateDirectories: true)
        #expect(Self.waitFor { problems.count("ok") == 2 })
        FileManager.default.createFile(atPath: drop + "/CT.9", contents: Data("x".utf8))
        #expect(Self.waitFor { seen.has("/CT.9") })
    }
}

@Suite struct SystemdNotifierTests {
    @Test func readyAndWatchdogReachTheNotifySocketAsDatagrams() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("notify.sock")
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"])
        #expect(notifier.watchdogInterval == 2)
        #expect(notifier.notify("READY=1\nSTATUS=watching"))
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = recv(fd, &buffer, buffer.count, 0)
        #expect(String(decoding: buffer[0..<max(n, 0)], as: UTF8.self) == "READY=1\nSTATUS=watching")
        #expect(!SystemdNotifier(environment: [:]).notify("READY=1"), "silent without NOTIFY_SOCKET")
    }
}

@Suite struct ConsoleUploadTurnTests {
    /// A console upload is a series of its own in the intake: a 40-file upload queued first still lets a scan's
    /// slices through one per turn, so the scan's first k slices (its alert) wait behind k upload files, not 40.
    @Test func anUploadTakesTurnsWithTheDropFoldersSeries() {
        let q = IntakeQueue()
        for i in 0..<40 { q.add(IntakeQueueTests.item("/u/\(i).dcm", "console:1", Double(i))) }
        for i in 0..<3 { q.add(IntakeQueueTests.item("/drop/s/\(i).dcm", "1.2.3", 100 + Double(i))) }
        let order = (0..<8).compactMap { _ in q.next(timeout: 0)?.series }
        #expect(order == ["console:1", "1.2.3", "console:1", "1.2.3", "console:1", "1.2.3", "console:1", "console:1"])
    }
}
