import Foundation
import ICHDaemon
import ICHTestSupport
import Testing

@Suite struct DaemonConfigTests {
    static let model = PublicDicomFiles.packageRoot.appendingPathComponent("models/ichd-phantom-resnet18.ichm").path

    static func parse(_ text: String, in folder: TemporaryDirectory) throws(ConfigError) -> DaemonConfig {
        try DaemonConfig.parse(text, baseFolder: folder.path)
    }

    @Test func theIssueExampleParsesAndRelativePathsResolveAgainstTheConfigFolder() throws {
        let dir = TemporaryDirectory()
        let c = try Self.parse("""
            board = "sim"
            [folders]
            drop = "drop"
            archive = "archive"
            quarantine = "quarantine"
            state = "state"
            [model]
            path = "\(Self.model)"
            threads = 2
            scorers = 3
            [budget]
            slice_ms = 1000
            [decision]
            adjacent_slices = 2
            series_quiet_s = 10
            [serial]
            device = "pty:state/ttyICHD"
            baud = 115200
            heartbeat_s = 10
            resend_s = 30
            send_accession = false
            [lamp]
            backend = "sim"
            chip = "gpiochip0"
            alert_line = 17
            ready_line = 27
            button_line = 22
            active_low = false
            """, in: dir)
        let base = dir.url.standardizedFileURL.path
        #expect(c.dropFolder == base + "/drop" && c.stateFolder == base + "/state")
        #expect(FileManager.default.fileExists(atPath: base + "/archive"), "missing folders are created")
        #expect(c.threads == 2 && c.scorers == 3 && c.adjacentSlices == 2 && c.seriesQuietSeconds == 10 && c.sliceBudgetMs == 1000)
        #expect(c.serial?.device == "pty:" + base + "/state/ttyICHD" && c.serial?.baud == 115200 && c.serial?.resendSeconds == 30)
        #expect(c.lamp.alertLine == 17 && c.lamp.readyLine == 27 && c.lamp.buttonLine == 22 && c.lamp.buzzerLine == nil)
    }

    @Test(arguments: [
        ("[folders]\ndrops = \"x\"", "folders.drops", "unknown key"),
        ("colour = 1", "colour", "unknown key"),
        ("[model]\nthreads = \"two\"", "model.threads", "must be an integer"),
        ("[model]\nthreads = 0", "model.threads", "out of range"),
        ("[serial]\ndevice = \"pty:x\"\nbaud = 12345", "serial.baud", "one of"),
        ("[lamp]\nbackend = \"spi\"", "lamp.backend", "one of sim, gpiod"),
        ("[lamp]\nalert_line = 4\nready_line = 4", "lamp.ready_line", "the same line"),
        ("[decision]\nseries_quiet_s = true", "decision.series_quiet_s", "must be a number"),
        ("[folders]\narchive = \"drop/archive\"", "folders.archive", "inside the drop folder"),
        ("[console]\nenabled = true\nbind = \"0.0.0.0\"", "console.bind", "needs token_file"),
        ("[console]\nenabled = true\nbind = \"0.0.0.0\"\ntoken_file = \"none.token\"", "console.token_file", "cannot read"),
        ("[console]\nport = 70000", "console.port", "out of range"),
        ("[console]\nmax_upload_mb = 0", "console.max_upload_mb", "out of range"),
        ("[console]\nshow_identifiers = 1", "console.show_identifiers", "must be true or false"),
        ("[console]\ntoken = \"x\"", "console.token", "unknown key"),
    ])
    func everyBadValueNamesTheKeyAndTheReason(snippet: String, key: String, reason: String) {
        let dir = TemporaryDirectory()
        let text = snippet.contains("[model]") ? snippet.replacingOccurrences(of: "[model]", with: "[model]\npath = \"\(Self.model)\"")
                                                : snippet + "\n[model]\npath = \"\(Self.model)\"\n"
        do {
            _ = try Self.parse(text, in: dir)
            Issue.record("accepted \(snippet)")
        } catch {
            #expect(error.key == key, "\(error)")
            #expect(error.reason.contains(reason), "\(error)")
            #expect(error.description.contains(key))
        }
    }

    @Test func anUnreadableModelAndAFolderThatCannotBeCreatedAreRefused() throws {
        let dir = TemporaryDirectory()
        #expect(throws: ConfigError(key: "model.path", value: "\"\(dir.path)/none.ichm\"", reason: "no readable file there")) {
            _ = try Self.parse("[model]\npath = \"\(dir.path)/none.ichm\"", in: dir)
        }
        FileManager.default.createFile(atPath: dir.file("blocker"), contents: Data("x".utf8))
        do {
            _ = try Self.parse("[model]\npath = \"\(Self.model)\"\n[folders]\ndrop = \"blocker/drop\"", in: dir)
            Issue.record("a drop folder under a file was accepted")
        } catch {
            #expect(error.key == "folders.drop" && error.reason.contains("cannot create"))
        }
    }
}

@Suite struct BoardConfigTests {
    /// Every shipped board config is accepted key for key by the daemon's parser (installers copy them as
    /// they are). The box's absolute folders and model path are redirected into a temp folder.
    @Test(arguments: ["sim", "raspberrypi4", "raspberrypi5"])
    func theShippedBoardConfigParses(board: String) throws {
        let dir = TemporaryDirectory()
        let path = PublicDicomFiles.packageRoot.appendingPathComponent("board/\(board)/ichd.toml").path
        let text = try String(contentsOfFile: path, encoding: .utf8)
            .replacingOccurrences(of: "/usr/share/ichd/models/ichd-phantom-resnet18.ichm", with: DaemonConfigTests.model)
            .replacingOccurrences(of: "../../models/ichd-phantom-resnet18.ichm", with: DaemonConfigTests.model)
            .replacingOccurrences(of: "/var/lib/ichd", with: dir.path)
        let c = try DaemonConfig.parse(text, baseFolder: dir.path)
        #expect(c.board == board)
        #expect(c.dropFolder.hasPrefix(dir.url.standardizedFileURL.path) || c.dropFolder.hasPrefix(dir.path))
        #expect(c.lamp.backend == (board == "sim" ? "sim" : "gpiod"))
        #expect(c.serial != nil)
        #expect(c.console.enabled && c.console.isLoopback && c.console.tokenFile == nil && c.console.port == 8080,
                "the console ships on loopback, where it needs no token")
    }
}
