import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Glibc
import ICHAlerts
import ICHDaemon
import ICHPhantom
import ICHTestSupport
import Testing

/// The console as people use it: `ichd serve` and `ichd run` with `[console]`, real processes on real ports,
/// a real headless Chromium (Tests/browser/console_browser.py over the DevTools protocol) and, for the
/// acknowledgement, the serial line's CLEAR. Screenshots stay in `test-artefacts/` as the tests' artefacts.
@Suite(.serialized) struct ConsoleCLITests {
    static let root = PublicDicomFiles.packageRoot
    static let artefacts = root.appendingPathComponent("test-artefacts").path

    /// The venv `make test` prepares (bench/requirements.txt has websocket-client).
    static var python: String {
        let venv = root.appendingPathComponent(".cache/venv/bin/python").path
        return FileManager.default.isExecutableFile(atPath: venv) ? venv : "/usr/bin/python3"
    }

    /// Starts `ichd ARGS` with its output in `log`; returns once the console says where it listens.
    static func startListening(_ arguments: [String], log: String) throws -> (Process, String) {
        let p = try FirmwareBehaviourTests.start(arguments, log: log)
        var url: String?
        _ = FirmwareBehaviourTests.waitFor(60) {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first(where: { $0.contains("console listening") }),
               let range = line.range(of: #"url=http://[^ ]+/"#, options: .regularExpression) {
                url = String(line[range].dropFirst(4).dropLast())
            }
            return url != nil || !p.isRunning
        }
        guard let url else {
            p.terminate()
            p.waitUntilExit()
            throw ConsoleTestError("the console did not start: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
        return (p, url)
    }

    struct ConsoleTestError: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    /// Runs the browser script; its JSON report.
    static func browser(_ arguments: [String]) throws -> (status: Int32, report: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = [root.appendingPathComponent("Tests/browser/console_browser.py").path] + arguments
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// A plain HTTP request from the test process.
    static func request(_ url: String, method: String = "GET", token: String? = nil) throws -> (Int, [String: Any]) {
        var r = URLRequest(url: URL(string: url)!)
        r.httpMethod = method
        if let token { r.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result: (Int, Data)?
        URLSession.shared.dataTask(with: r) { data, response, _ in
            result = ((response as? HTTPURLResponse)?.statusCode ?? 0, data ?? Data())
            done.signal()
        }.resume()
        _ = done.wait(timeout: .now() + 30)
        guard let (status, data) = result else { throw ConsoleTestError("no answer from \(url)") }
        return (status, (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:])
    }

    @Test func serveInABrowserSignsInWithTheTokenUploadsAPhantomSliceAndShowsProbabilitiesAndTheOverlay() throws {
        let dir = TemporaryDirectory("ichd-serve")
        _ = try PhantomSeries(seed: 5, positive: true).write(to: dir.file("pos"))
        let token = "browser-test-token-\(UUID().uuidString.prefix(8))"
        try token.write(toFile: dir.file("token"), atomically: true, encoding: .utf8)
        chmod(dir.file("token"), 0o600)
        let (server, url) = try Self.startListening(["serve", "--model", DaemonCLITests.model, "--port", "0", "--token-file", dir.file("token")],
                                                    log: dir.file("serve.log"))
        defer {
            server.terminate()
            server.waitUntilExit()
        }
        #expect(try Self.request(url + "/api/status").0 == 401, "the token is required")
        let shot = Self.artefacts + "/console-upload.png"
        try? FileManager.default.removeItem(atPath: shot)
        let run = try Self.browser(["upload", "--url", url, "--token", token, "--file", dir.file("pos/013.dcm"), "--file", dir.file("pos/014.dcm"),
                                    "--screenshot", shot])
        #expect(run.status == 0, "\(run.report)")
        #expect(run.report.contains("\"probabilities\": {\"any\""), "\(run.report)")
        #expect(run.report.contains("URGENT"), "two adjacent positive slices make the series urgent: \(run.report)")
        let png = FileManager.default.contents(atPath: shot) ?? Data()
        #expect(png.prefix(8) == Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) && png.count > 20_000, "the screenshot is kept")
        let (status, metrics) = try Self.request(url + "/api/status", token: token)
        #expect(status == 200 && metrics["slices"] as? Int == 2)
        server.terminate()
        server.waitUntilExit()
        #expect(server.terminationStatus == 0, "SIGTERM stops ichd serve cleanly")
    }

    @Test func theDaemonsConsoleAcknowledgesAnAlertInABrowserClearByWebFollowsOnTheSerialLine() throws {
        let dir = TemporaryDirectory("ichd-console-ack")
        let config = dir.file("ichd.toml")
        try DaemonCLITests.configText(quiet: 2, serial: true, extra: "\n[console]\nenabled = true\nport = 0\n")
            .write(toFile: config, atomically: true, encoding: .utf8)
        let source = TemporaryDirectory("ichd-console-series")
        _ = try PhantomSeries(seed: 900_001, positive: true).write(to: source.file("pos"))
        _ = try PhantomSeries(seed: 77, positive: true).write(to: source.file("upload"))

        let (daemon, url) = try Self.startListening(["run", "--config", config], log: dir.file("daemon.log"))
        defer {
            daemon.terminate()
            daemon.waitUntilExit()
        }
        let reader = try SerialReader(link: dir.file("state/ttyICHD"))
        defer { reader.stop() }
        try DaemonCLITests.copyTree(source.file("pos"), dir.file("drop/pos"))
        #expect(reader.waitFor(90) { !reader.of("ALERT").isEmpty }, "the drop folder's positive series alerts")
        let id = try #require(reader.of("ALERT").first?["id"])
        let (_, status) = try Self.request(url + "/api/status")
        #expect((status["pending_alerts"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == [id])
        #expect(status["lamp"] as? String == "ON" && status["mode"] as? String == "daemon")

        // An upload of another positive series through the daemon's own engines: answered, but no alert, no
        // journal row, nothing archived.
        let upload = try FileManager.default.contentsOfDirectory(atPath: source.file("upload")).filter { $0.hasSuffix(".dcm") }.sorted()
        let shotUpload = Self.artefacts + "/console-daemon-upload.png"
        let up = try Self.browser(["upload", "--url", url, "--screenshot", shotUpload] + upload[10..<14].flatMap { ["--file", source.file("upload/" + $0)] })
        #expect(up.status == 0, "\(up.report)")

        let shot = Self.artefacts + "/console-acknowledge.png"
        let run = try Self.browser(["ack", "--url", url, "--alert", id, "--screenshot", shot])
        #expect(run.status == 0, "\(run.report)")
        #expect(run.report.contains("No pending alerts"), "\(run.report)")
        #expect(reader.waitFor(10) { reader.of("CLEAR").contains { $0["id"] == id && $0["by"] == "web" } }, "CLEAR by=web on the line")
        #expect(reader.waitFor(10) { reader.of("HB").last.map { $0["pending"] == "0" && $0["lamp"] == "OFF" } ?? false })
        #expect(FileManager.default.fileExists(atPath: shot))

        #expect(reader.waitFor(30) { !reader.of("RESULT").isEmpty })
        usleep(2_500_000)  // a quiet period: an upload's series would have finished by now
        #expect(reader.of("ALERT").allSatisfy { $0["id"] == id }, "uploads never raise an alert")
        #expect(reader.of("RESULT").count == 1, "uploads make no series RESULT")
        let journal = try Journal(folder: dir.file("state"))
        let counts = try journal.counts()
        #expect(counts.instances == (try FileManager.default.contentsOfDirectory(atPath: source.file("pos")).filter { $0.hasSuffix(".dcm") }.count),
                "only the drop folder's files are journalled: \(counts)")
        let archived = FileManager.default.enumerator(atPath: dir.file("archive"))?.allObjects as? [String] ?? []
        #expect(!archived.contains { upload.contains(($0 as NSString).lastPathComponent) && $0.contains("upload") })
        #expect((try? FileManager.default.contentsOfDirectory(atPath: dir.file("state/console-uploads")))?.isEmpty ?? true, "upload files removed")
        let (_, after) = try Self.request(url + "/api/status")
        #expect((after["pending_alerts"] as? [Any])?.isEmpty == true)
    }
}
