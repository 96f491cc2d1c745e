import Foundation
import Glibc
import ICHDaemon
import ICHPhantom
import ICHTestSupport
import Testing

/// `ichd run` as the service runs it: a real process on real folders, killed with SIGKILL, restarted.
@Suite(.serialized) struct DaemonCLITests {
    static let model = PublicDicomFiles.packageRoot.appendingPathComponent("models/ichd-phantom-resnet18.ichm").path

    /// A board folder like board/sim: config, drop, archive, quarantine, state.
    struct Board {
        let dir = TemporaryDirectory("ichd-daemon")
        var config: String { dir.file("ichd.toml") }
        var drop: String { dir.file("drop") }

        init(quiet: Double = 1, extra: String = "") throws {
            try DaemonCLITests.configText(quiet: quiet, extra: extra).write(toFile: config, atomically: true, encoding: .utf8)
        }

        func journal() throws -> Journal { try Journal(folder: dir.file("state")) }

        /// Every regular file under `folder`, relative, sorted.
        func files(_ folder: String) -> [String] {
            let root = dir.file(folder)
            return (FileManager.default.enumerator(atPath: root)?.allObjects as? [String] ?? []).filter {
                var isDirectory: ObjCBool = false
                return FileManager.default.fileExists(atPath: root + "/" + $0, isDirectory: &isDirectory) && !isDirectory.boolValue
            }.sorted()
        }
    }

    /// A board's ichd.toml: local folders, the bundled model, the sim lamp; `serial` adds a pseudo-terminal
    /// at state/ttyICHD with 1 s heartbeats and resends; `extra` is appended (keys of [lamp], or more tables).
    static func configText(quiet: Double, threads: Int = 1, serial: Bool = false, extra: String = "") -> String {
        """
        board = "test"
        [folders]
        drop = "drop"
        archive = "archive"
        quarantine = "quarantine"
        state = "state"
        [model]
        path = "\(model)"
        threads = \(threads)
        [budget]
        slice_ms = 5000
        [decision]
        adjacent_slices = 2
        series_quiet_s = \(quiet)
        """ + (serial ? "\n[serial]\ndevice = \"pty:state/ttyICHD\"\nheartbeat_s = 1\nresend_s = 1" : "") + """

        [lamp]
        backend = "sim"
        \(extra)
        """
    }

    /// Phantom series written once per test run (DCMTK), copied into drop folders as needed.
    static func writeSeries(_ seeds: [(UInt64, Bool)], to folder: String) throws -> [String] {
        var names: [String] = []
        for (seed, positive) in seeds {
            let name = "series-\(seed)"
            _ = try PhantomSeries(seed: seed, positive: positive).write(to: folder + "/" + name)
            names.append(name)
        }
        return names
    }

    static func start(_ arguments: [String]) throws -> Process {
        let p = Process()
        p.executableURL = ichdBinary
        p.arguments = arguments
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }

    static func copyTree(_ from: String, _ to: String) throws {
        try FileManager.default.createDirectory(atPath: (to as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: from, toPath: to)
    }

    /// Alerted series of a finished board, from its journal.
    static func alertedSeries(_ board: Board) throws -> Set<String> {
        Set(try board.journal().pendingAlerts().map(\.seriesUID))
    }

    @Test func aBadConfigurationExitsWithStatusTwoNamingTheKey() throws {
        let board = try Board(extra: "colour = \"red\"")
        let run = try runICHD(["run", "--config", board.config, "--until-idle", "1"])
        #expect(run.status == 2)
        #expect(run.stderr.contains("lamp.colour") && run.stderr.contains("unknown key"), "\(run.stderr)")
    }

    @Test func killedWithSIGKILLAtRandomMomentsItScoresAndAlertsExactlyOnceAndLosesNoFile() throws {
        let source = TemporaryDirectory("ichd-series")
        let seeds: [(UInt64, Bool)] = [(900_001, true), (41, false), (42, true), (43, false), (44, true)]
        let names = try Self.writeSeries(seeds, to: source.path)
        try "not a slice at all".write(toFile: source.file("junk.dcm"), atomically: true, encoding: .utf8)
        let sliceCount = names.map { (try? FileManager.default.contentsOfDirectory(atPath: source.file($0)))?.filter { $0.hasSuffix(".dcm") }.count ?? 0 }.reduce(0, +)

        // Reference: the same files, one uninterrupted run.
        let reference = try Board()
        for n in names { try Self.copyTree(source.file(n), reference.drop + "/" + n) }
        let refRun = try runICHD(["run", "--config", reference.config, "--until-idle", "1"])
        #expect(refRun.status == 0, "\(refRun.stderr)")
        let expectedAlerts = try Self.alertedSeries(reference)
        #expect(!expectedAlerts.isEmpty, "the known-positive commissioning series alarms")

        // The same burst, with SIGKILL at random moments while files land and while they are scored.
        var rng = SystemRandomNumberGenerator()
        let seed = UInt64.random(in: 0...UInt64.max, using: &rng)
        var generator = SplitMix(seed)
        print("kill test seed \(seed)")
        let board = try Board()
        var pending = names.map { (source.file($0), board.drop + "/" + $0) } + [(source.file("junk.dcm"), board.drop + "/junk.dcm")]
        for round in 0..<5 {
            let p = try Self.start(["run", "--config", board.config])
            // Land part of the burst while it runs.
            let landing = min(pending.count, 1 + Int(generator.next() % 2))
            for (from, to) in pending.prefix(landing) { try Self.copyTree(from, to) }
            pending.removeFirst(landing)
            usleep(UInt32(200_000 + generator.next() % 1_500_000))
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            #expect(p.terminationReason == .uncaughtSignal, "round \(round): killed, not exited")
        }
        for (from, to) in pending { try Self.copyTree(from, to) }
        let last = try runICHD(["run", "--config", board.config, "--until-idle", "1"])
        #expect(last.status == 0, "\(last.stderr)")

        let c = try board.journal().counts()
        #expect(c.scorings == c.scoredSlices, "no slice scored twice (seed \(seed))")
        #expect(c.instances == sliceCount + 1, "every file recorded once (seed \(seed))")
        #expect(c.rejected == 1 && c.duplicates == 0)
        #expect(try Self.alertedSeries(board) == expectedAlerts, "the same alerts as the uninterrupted run, once each (seed \(seed))")
        #expect(c.alerts == expectedAlerts.count)
        #expect(c.seriesFinal == names.count)
        #expect(board.files("drop").isEmpty, "nothing left in the drop folder: \(board.files("drop"))")
        #expect(board.files("archive").filter { $0.hasSuffix(".dcm") }.count == sliceCount, "every slice archived (seed \(seed))")
        #expect(board.files("quarantine") == ["junk.dcm", "junk.dcm.reason.txt"])
        let reason = try String(contentsOfFile: board.dir.file("quarantine/junk.dcm.reason.txt"), encoding: .utf8)
        #expect(reason.contains("code: not_dicom"))
    }

    @Test func aDuplicateInstanceIsArchivedAndNeverScoredIntoASecondAlert() throws {
        let source = TemporaryDirectory("ichd-series")
        let names = try Self.writeSeries([(900_001, true)], to: source.path)
        let board = try Board()
        try Self.copyTree(source.file(names[0]), board.drop + "/first")
        #expect(try runICHD(["run", "--config", board.config, "--until-idle", "1"]).status == 0)
        let before = try board.journal().counts()
        #expect(before.alerts == 1)
        // The scanner sends the series again (another folder, same SOP Instance UIDs).
        try Self.copyTree(source.file(names[0]), board.drop + "/again")
        #expect(try runICHD(["run", "--config", board.config, "--until-idle", "1"]).status == 0)
        let after = try board.journal().counts()
        #expect(after.scorings == before.scorings && after.alerts == 1)
        #expect(after.duplicates == before.instances)
        #expect(board.files("drop").isEmpty)
        #expect(board.files("archive").filter { $0.hasSuffix(".duplicate") }.count == before.instances)
    }
}

/// A small deterministic generator, so a failing kill schedule can be replayed from its printed seed.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
