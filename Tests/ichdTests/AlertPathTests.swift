import Foundation
import Glibc
import ICHAlerts
import ICHDaemon
import ICHPhantom
import ICHTestSupport
import Testing

/// The integrator's end of the serial cable, in the test process: the far end of the daemon's pseudo-terminal
/// (the `pty:` link), read on a thread, every line checked by the protocol's own decoder.
final class SerialReader: @unchecked Sendable {
    let lock = NSLock()
    private var lines: [InspectedLine] = []
    private var port: SerialPort?
    private var stopped = false

    init(link: String) throws {
        let deadline = Date().addingTimeInterval(30)
        while port == nil, Date() < deadline {
            port = try? SerialPort.open(SerialDevice(link), baud: 115_200, rtscts: false)
            if port == nil { usleep(50_000) }
        }
        guard port != nil else { throw SerialError(operation: "open \(link)", code: ENOENT) }
        let t = Thread { [self] in run() }
        t.start()
    }

    private func run() {
        var assembler = LineAssembler()
        while !lock.withLock({ stopped }) {
            guard let port = lock.withLock({ port }) else { return }
            var pfd = pollfd(fd: port.fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&pfd, 1, 50)
            var buffer: [UInt8] = []
            if case .gone = port.read(into: &buffer) {
                usleep(50_000)
                continue
            }
            for line in assembler.append(buffer) {
                guard let line else { continue }
                let inspected = LineDecoder.inspect(line)
                lock.withLock { lines.append(inspected) }
            }
        }
    }

    var received: [InspectedLine] { lock.withLock { lines } }
    func of(_ type: String) -> [ProtocolLine] { received.compactMap(\.line).filter { $0.type == type } }

    func send(_ line: ProtocolLine) throws {
        let bytes = Array(line.framed.utf8)
        _ = try lock.withLock { port }!.write(bytes[...])
    }

    @discardableResult
    func waitFor(_ seconds: Double = 60, _ condition: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if condition() { return true }
            usleep(50_000)
        }
        return condition()
    }

    func stop() {
        lock.withLock { stopped = true }
        usleep(100_000)
        lock.withLock { port?.close(); port = nil }
    }
}

@Suite(.serialized) struct AlertPathTests {
    static func board(_ dir: TemporaryDirectory) throws -> String {
        let config = dir.file("ichd.toml")
        try DaemonCLITests.configText(quiet: 3, threads: 2, serial: true).replacingOccurrences(of: "board = \"test\"", with: "board = \"e2e\"")
            .write(toFile: config, atomically: true, encoding: .utf8)
        return config
    }

    /// A positive phantom series gives exactly one ALERT id (resent until acknowledged) and a POS RESULT, a
    /// negative one a NEG RESULT and no ALERT; ACK clears it (CLEAR by=serial, lamp OFF in the next HB);
    /// after kill -9 and a restart an unacknowledged alert is announced again with its id, an acknowledged one
    /// is not.
    @Test func alertsResultsAcknowledgementAndRestartOverARealPseudoTerminal() throws {
        let dir = TemporaryDirectory("ichd-e2e")
        let config = try Self.board(dir)
        let source = TemporaryDirectory("ichd-series")
        _ = try PhantomSeries(seed: 900_001, positive: true).write(to: source.file("pos"))
        _ = try PhantomSeries(seed: 900_002, positive: false).write(to: source.file("neg"))
        _ = try PhantomSeries(seed: 42, positive: true).write(to: source.file("pos2"))

        var daemon = try DaemonCLITests.start(["run", "--config", config])
        var reader = try SerialReader(link: dir.file("state/ttyICHD"))
        #expect(reader.waitFor(20) { !reader.of("HELLO").isEmpty }, "HELLO at start")
        let hello = try #require(reader.of("HELLO").first)
        #expect(hello.seq == 1 && hello["board"] == "e2e" && hello["model"] == "ichd-phantom-resnet18" && hello["model_sha"]?.count == 12)

        try DaemonCLITests.copyTree(source.file("pos"), dir.file("drop/pos"))
        try DaemonCLITests.copyTree(source.file("neg"), dir.file("drop/neg"))
        #expect(reader.waitFor(90) { Set(reader.of("RESULT").compactMap { $0["result"] }) == ["POS", "NEG"] },
                "both series finish: \(reader.received.map(\.raw))")
        let alerts = reader.of("ALERT")
        let ids = Set(alerts.compactMap { $0["id"] })
        #expect(ids.count == 1, "one alert id for the positive series: \(ids)")
        let id = try #require(ids.first)
        #expect(reader.waitFor(10) { reader.of("ALERT").count >= 2 }, "resent every resend_s with the same id")
        let results = reader.of("RESULT")
        let pos = try #require(results.first { $0["result"] == "POS" })
        let neg = try #require(results.first { $0["result"] == "NEG" })
        #expect(pos["alert"] == id && neg["alert"] == "-" && pos["series"] == alerts.first?["series"])
        #expect(Int(pos["scored"] ?? "") ?? 0 >= 20)
        // The daemon carries each series' out-of-distribution score: the shipped model's own phantoms are in.
        for r in [pos, neg] { #expect((Double(r["ood"] ?? "") ?? 9) < 1, "ood of a phantom series: \(r.fields)") }
        let invalid = reader.received.filter { !$0.isValid }.map(\.raw)
        #expect(invalid.isEmpty, "every line valid: \(invalid)")
        let seqs = reader.received.compactMap(\.seq)
        #expect(seqs == Array(1...seqs.count), "SEQ +1 per line from the HELLO")
        #expect(reader.of("HB").last?["lamp"] == "ON" && reader.of("HB").last?["pending"] == "1")

        // The integrator acknowledges: CLEAR by=serial, nothing pending, the lamp off.
        try reader.send(ProtocolLine(seq: 1, type: "ACK", fields: [ProtocolField("id", id)]))
        #expect(reader.waitFor(10) { reader.of("CLEAR").contains { $0["id"] == id && $0["by"] == "serial" } })
        #expect(reader.waitFor(10) { reader.of("HB").last.map { $0["pending"] == "0" && $0["lamp"] == "OFF" } ?? false })

        // A second positive series, left unacknowledged, then kill -9 and a restart.
        try DaemonCLITests.copyTree(source.file("pos2"), dir.file("drop/pos2"))
        #expect(reader.waitFor { reader.of("ALERT").contains { $0["id"] != id } }, "the second series alerts")
        let second = try #require(reader.of("ALERT").first { $0["id"] != id }?["id"])
        kill(daemon.processIdentifier, SIGKILL)
        daemon.waitUntilExit()
        reader.stop()
        daemon = try DaemonCLITests.start(["run", "--config", config])
        defer {
            daemon.terminate()
            daemon.waitUntilExit()
        }
        reader = try SerialReader(link: dir.file("state/ttyICHD"))
        #expect(reader.waitFor(30) { reader.of("ALERT").contains { $0["id"] == second } }, "the unacknowledged alert again, same id")
        usleep(1_500_000)
        #expect(!reader.of("ALERT").contains { $0["id"] == id }, "the acknowledged alert stays acknowledged")
        #expect(reader.of("HELLO").count == 1 && reader.received.first?.line?.type == "HELLO")
        reader.stop()
    }
}

/// A scanner's DICOM send: DCMTK's storescu over loopback to storescp (run by `ichd receive` from the same
/// config), into the drop folder the daemon watches.
@Suite(.serialized) struct NetworkReceiveTests {
    static func which(_ tool: String) -> String? {
        for dir in ["/usr/bin", "/usr/local/bin", "/bin"] where FileManager.default.isExecutableFile(atPath: dir + "/" + tool) {
            return dir + "/" + tool
        }
        return nil
    }

    @Test func seriesSentWithStorescuAreReceivedByStorescpAndScored() throws {
        guard let storescu = Self.which("storescu"), Self.which("storescp") != nil else {
            Issue.record("DCMTK's storescp/storescu are missing (Debian package dcmtk; make deps installs it)")
            return
        }
        let dir = TemporaryDirectory("ichd-net")
        let port = Int.random(in: 20_000...40_000)
        let config = dir.file("ichd.toml")
        try DaemonCLITests.configText(quiet: 1, threads: 2, extra: "[receiver]\nae_title = \"ICHDTEST\"\nport = \(port)")
            .write(toFile: config, atomically: true, encoding: .utf8)
        let dry = try runICHD(["receive", "--config", config, "--dry-run"])
        #expect(dry.stdout.contains("storescp +xa --aetitle ICHDTEST") && dry.stdout.contains("--output-directory \(dir.url.standardizedFileURL.path)/drop \(port)"))

        let receiver = try DaemonCLITests.start(["receive", "--config", config])
        // storescp does not stop on SIGTERM (DCMTK 3.6.7, measured): the unit's TimeoutStopSec kills it, so does this.
        defer { kill(receiver.processIdentifier, SIGKILL); receiver.waitUntilExit() }
        let daemon = try DaemonCLITests.start(["run", "--config", config])
        defer { daemon.terminate(); daemon.waitUntilExit() }
        let source = TemporaryDirectory("ichd-series")
        // Stored as the scanner's own native objects (explicit little endian) so that storescu needs no
        // compressed presentation context; ichd receive's storescp accepts compressed ones too (+xa).
        let slices = try PhantomSeries(seed: 900_001, positive: true).write(to: source.file("pos"), storage: CTStorage())
        let files = try FileManager.default.contentsOfDirectory(atPath: source.file("pos")).filter { $0.hasSuffix(".dcm") }.sorted()
            .map { source.file("pos/" + $0) }
        usleep(500_000)  // storescp listening
        let send = Process()
        send.executableURL = URL(fileURLWithPath: storescu)
        send.arguments = ["-aec", "ICHDTEST", "localhost", "\(port)"] + files
        send.standardOutput = FileHandle.nullDevice
        send.standardError = FileHandle.nullDevice
        try send.run()
        send.waitUntilExit()
        #expect(send.terminationStatus == 0, "storescu sent every slice")

        let journal = try Journal(folder: dir.file("state"))
        let end = Date().addingTimeInterval(60)
        while Date() < end, (try journal.counts()).seriesFinal < 1 { usleep(100_000) }
        let c = try journal.counts()
        #expect(c.instances == slices.count && c.seriesFinal == 1 && c.alerts == 1, "\(c)")
        #expect(c.scorings == c.scoredSlices)
        let archived = FileManager.default.enumerator(atPath: dir.file("archive"))?.allObjects as? [String] ?? []
        #expect(archived.filter { ($0 as NSString).lastPathComponent.hasPrefix("CT.") }.count == slices.count,
                "storescp's CT.<SOPInstanceUID> files, archived")
    }
}

/// Running as firmware: signals, and a board whose GPIO chip is missing.
@Suite(.serialized) struct FirmwareBehaviourTests {
    static func start(_ arguments: [String], log: String) throws -> Process {
        FileManager.default.createFile(atPath: log, contents: nil)
        let p = Process()
        p.executableURL = ichdBinary
        p.arguments = arguments
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        return p
    }

    static func waitFor(_ seconds: Double, _ condition: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if condition() { return true }
            usleep(50_000)
        }
        return condition()
    }

    @Test func sighupRefusesABadModelAndKeepsRunningSigtermStopsWithTheLampOff() throws {
        let dir = TemporaryDirectory("ichd-signals")
        let config = try AlertPathTests.board(dir)
        let log = dir.file("daemon.log")
        let daemon = try Self.start(["run", "--config", config], log: log)
        func text() -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        #expect(Self.waitFor(30) { text().contains("watching") })
        let source = TemporaryDirectory("ichd-series")
        _ = try PhantomSeries(seed: 900_001, positive: true).write(to: source.file("pos"))
        try DaemonCLITests.copyTree(source.file("pos"), dir.file("drop/pos"))
        #expect(Self.waitFor(60) { text().contains("lamp: ON") }, "the simulated lamp lights on the console")

        // A broken model in place of the configured one: the reload is refused, the old model keeps scoring.
        let broken = dir.file("broken.ichm")
        try Data("not a model".utf8).write(to: URL(fileURLWithPath: broken))
        try (try String(contentsOfFile: config, encoding: .utf8)).replacingOccurrences(of: DaemonCLITests.model, with: broken)
            .write(toFile: config, atomically: true, encoding: .utf8)
        kill(daemon.processIdentifier, SIGHUP)
        #expect(Self.waitFor(10) { text().contains("reload refused") }, "\(text())")
        _ = try PhantomSeries(seed: 900_002, positive: false).write(to: source.file("neg"))
        try DaemonCLITests.copyTree(source.file("neg"), dir.file("drop/neg"))
        let journal = try Journal(folder: dir.file("state"))
        #expect(Self.waitFor(60) { ((try? journal.counts())?.seriesFinal ?? 0) == 2 }, "still scoring after the refused reload")

        kill(daemon.processIdentifier, SIGTERM)
        daemon.waitUntilExit()
        #expect(daemon.terminationReason == .exit && daemon.terminationStatus == 0)
        let lines = text().split(separator: "\n").filter { $0.hasPrefix("lamp:") }
        #expect(lines.last == "lamp: OFF", "the lamp line driven to its off state on exit: \(lines)")
        #expect(text().contains("stopped"))
        #expect(!text().lowercased().contains("patient"))
    }

    @Test func withoutAGPIOChipTheDaemonReportsAGPIOFaultAndKeepsScoringAndAlerting() throws {
        let dir = TemporaryDirectory("ichd-nogpio")
        let config = try AlertPathTests.board(dir)
        try (try String(contentsOfFile: config, encoding: .utf8))
            .replacingOccurrences(of: "backend = \"sim\"", with: "backend = \"gpiod\"\nchip = \"ichd-no-such-chip\"")
            .write(toFile: config, atomically: true, encoding: .utf8)
        let daemon = try DaemonCLITests.start(["run", "--config", config])
        defer { daemon.terminate(); daemon.waitUntilExit() }
        let reader = try SerialReader(link: dir.file("state/ttyICHD"))
        defer { reader.stop() }
        #expect(reader.waitFor(20) { reader.of("FAULT").contains { $0["code"] == "GPIO" } }, "\(reader.received.map(\.raw))")
        #expect(reader.waitFor(10) { reader.of("HB").last?["state"] == "FAULT" })
        let source = TemporaryDirectory("ichd-series")
        _ = try PhantomSeries(seed: 900_001, positive: true).write(to: source.file("pos"))
        try DaemonCLITests.copyTree(source.file("pos"), dir.file("drop/pos"))
        #expect(reader.waitFor { reader.of("RESULT").first?["result"] == "POS" }, "scoring and the serial alert go on")
        #expect(reader.of("ALERT").count >= 1)
    }
}

/// A full disk is a DISK fault, never a crash or a lost file: the archive on a small tmpfs, filled up.
@Suite(.serialized) struct FullDiskTests {
    static func run(_ tool: String, _ arguments: [String]) -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = arguments
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return -1 }
        p.waitUntilExit()
        return p.terminationStatus
    }

    @Test func aFullArchiveIsADiskFaultTheFilesWaitAndAreArchivedOnceThereIsRoom() throws {
        let dir = TemporaryDirectory("ichd-full")
        let archive = dir.file("archive")
        try FileManager.default.createDirectory(atPath: archive, withIntermediateDirectories: true)
        guard getuid() == 0, Self.run("/bin/mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", archive]) == 0 else {
            print("FullDiskTests: skipped (mounting a small tmpfs needs root and a kernel that allows it)")
            return
        }
        defer { _ = Self.run("/bin/umount", ["-l", archive]) }
        // Fill the archive's filesystem.
        let filler = archive + "/filler"
        FileManager.default.createFile(atPath: filler, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: filler))
        let block = Data(count: 64 * 1024)
        while (try? handle.write(contentsOf: block)) != nil {}
        try? handle.close()

        let config = try AlertPathTests.board(dir)
        let daemon = try DaemonCLITests.start(["run", "--config", config])
        defer { daemon.terminate(); daemon.waitUntilExit() }
        let reader = try SerialReader(link: dir.file("state/ttyICHD"))
        defer { reader.stop() }
        let source = TemporaryDirectory("ichd-series")
        let slices = try PhantomSeries(seed: 900_001, positive: true).write(to: source.file("pos"))
        try DaemonCLITests.copyTree(source.file("pos"), dir.file("drop/pos"))
        #expect(reader.waitFor(60) { reader.of("FAULT").contains { $0["code"] == "DISK" } }, "\(reader.received.map(\.raw))")
        #expect(reader.waitFor(10) { reader.of("HB").last?["state"] == "FAULT" })
        #expect(reader.waitFor(30) { !reader.of("ALERT").isEmpty }, "the alert does not wait for the disk")
        let waiting = (FileManager.default.enumerator(atPath: dir.file("drop"))?.allObjects as? [String] ?? []).filter { $0.hasSuffix(".dcm") }
        #expect(!waiting.isEmpty, "files that could not be archived stay in the drop folder")
        #expect(daemon.isRunning)

        try FileManager.default.removeItem(atPath: filler)
        let journal = try Journal(folder: dir.file("state"))
        #expect(reader.waitFor(60) {
            let left = (FileManager.default.enumerator(atPath: dir.file("drop"))?.allObjects as? [String] ?? []).filter { $0.hasSuffix(".dcm") }
            return left.isEmpty && ((try? journal.counts())?.seriesFinal ?? 0) == 1
        }, "archived once there is room")
        let c = try journal.counts()
        #expect(c.instances == slices.count && c.scorings == c.scoredSlices && c.alerts == 1)
        #expect(reader.waitFor(10) { reader.of("HB").last?["state"] == "OK" }, "the fault clears")
    }
}
