import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import ICHConsole
import ICHDaemon
import ICHDecision
import ICHEngine
import ICHIngest
import ICHPhantom
import ICHTestSupport
import Logging
import NIOCore
import Testing

/// Every route of the console through HummingbirdTesting, with the bundled model scoring real DCMTK-written
/// phantom slices (`ichd serve`'s backend): pages, JSON, metrics, the token, the limits and bad uploads.
@Suite(.serialized) struct ConsoleHTTPTests {
    static let model = PublicDicomFiles.packageRoot.appendingPathComponent("models/ichd-phantom-resnet18.ichm").path
    static let scorer = try! SliceScorer(path: model)

    /// A positive phantom series written once (DCMTK); slices 12 and 13 lie in its bleed.
    static let series: (dir: TemporaryDirectory, files: [String]) = {
        let dir = TemporaryDirectory("ichd-console-series")
        _ = try! PhantomSeries(seed: 5, positive: true).write(to: dir.file("pos"))
        let files = try! FileManager.default.contentsOfDirectory(atPath: dir.file("pos")).filter { $0.hasSuffix(".dcm") }.sorted()
        return (dir, files.map { dir.file("pos/" + $0) })
    }()

    struct Harness {
        let server: ConsoleServer
        let uploads: TemporaryDirectory
    }

    static func harness(_ settings: ConsoleSettings = ConsoleSettings(enabled: true), metrics: ConsoleMetrics = ConsoleMetrics()) throws -> Harness {
        let uploads = TemporaryDirectory("ichd-console-uploads")
        let backend = StandaloneConsoleBackend(scorer: scorer, modelID: Daemon.modelID(path: model), modelSHA: Daemon.modelSHA(path: model),
                                               adjacentSlices: 2, uploadParent: uploads.file("u"), metrics: metrics.appliance)
        return Harness(server: try ConsoleServer(settings: settings, backend: backend, metrics: metrics, logger: Logger(label: "test")),
                       uploads: uploads)
    }

    static func multipart(_ parts: [(filename: String, bytes: [UInt8])], boundary: String = "ichdTestBoundary7d1") -> (HTTPFields, ByteBuffer) {
        var body: [UInt8] = []
        for p in parts {
            body += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"files\"; filename=\"\(p.filename)\"\r\nContent-Type: application/octet-stream\r\n\r\n".utf8)
            body += p.bytes + Array("\r\n".utf8)
        }
        body += Array("--\(boundary)--\r\n".utf8)
        return ([.contentType: "multipart/form-data; boundary=\(boundary)"], ByteBuffer(bytes: body))
    }

    static func bytes(_ path: String) -> [UInt8] { [UInt8](FileManager.default.contents(atPath: path)!) }

    static func object(_ r: TestResponse) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(buffer: r.body)) as? [String: Any])
    }

    static func slices(_ r: TestResponse) throws -> [[String: Any]] {
        let o = try object(r)
        return try #require(o["slices"] as? [[String: Any]])
    }

    static func text(_ r: TestResponse) -> String { String(buffer: r.body) }

    @Test func statusPageAndJSONShowTheModelHealthAndLatencyAgainstTheBudget() async throws {
        let h = try Self.harness()
        try await h.server.application().test(.router) { client in
            try await client.execute(uri: "/", method: .get) { r in
                #expect(r.status == .ok && r.headers[.contentType]?.hasPrefix("text/html") == true)
                let page = Self.text(r)
                #expect(page.contains("id=\"health\"") && page.contains(">OK<") && page.contains("ichd-phantom-resnet18"))
                #expect(page.contains("No pending alerts") && page.contains("synthetic phantoms"))
                #expect(!page.contains("http://") && !page.contains("https://"), "no external assets")
                #expect(r.headers[.contentSecurityPolicy]?.contains("default-src 'none'") == true)
            }
            try await client.execute(uri: "/api/status", method: .get) { r in
                let o = try Self.object(r)
                #expect(o["health"] as? String == "OK" && o["mode"] as? String == "serve")
                let model = try #require(o["model"] as? [String: Any])
                #expect(model["id"] as? String == "ichd-phantom-resnet18" && (model["sha"] as? String)?.count == 12)
                #expect((o["latency_ms"] as? [String: Any])?["budget"] as? Int == 1000)
                #expect((o["pending_alerts"] as? [Any])?.isEmpty == true)
            }
            for (uri, type) in [("/console.css", "text/css"), ("/console.js", "text/javascript"), ("/upload", "text/html"), ("/login", "text/html")] {
                try await client.execute(uri: uri, method: .get) { r in
                    #expect(r.status == .ok && r.headers[.contentType]?.hasPrefix(type) == true, "\(uri)")
                }
            }
        }
    }

    @Test func oneSliceGivesProbabilitiesTheVerdictAndImagesSeveralGiveTheSeriesDecision() async throws {
        let h = try Self.harness()
        let files = Self.series.files
        try await h.server.application().test(.router) { client in
            let (headers, body) = Self.multipart([("013.dcm", Self.bytes(files[12]))])
            try await client.execute(uri: "/api/score?images=1", method: .post, headers: headers, body: body) { r in
                #expect(r.status == .ok)
                let o = try Self.object(r)
                let slices = try #require(o["slices"] as? [[String: Any]])
                #expect(slices.count == 1)
                let s = slices[0]
                #expect(s["outcome"] as? String == "scored" && s["file"] as? String == "013.dcm")
                let p = try #require(s["probabilities"] as? [String: Double])
                #expect(Set(p.keys) == ["any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"])
                #expect(p.values.allSatisfy { (0...1).contains($0) })
                #expect((s["positive"] as? [String])?.contains("any") == true, "a slice in the phantom's bleed: \(p)")
                let base64 = try #require(s["preview_jpeg"] as? String)
                let preview = try #require(Data(base64Encoded: base64))
                #expect(preview.prefix(3) == Data([0xFF, 0xD8, 0xFF]))
                let maps = try #require(s["heatmaps_jpeg"] as? [String: String])
                #expect(maps["any"] != nil, "a heatmap for each positive class")
                #expect(s["identifiers"] == nil, "no identifying value unless show_identifiers")
            }
            let several = Self.multipart(files[10..<16].map { (($0 as NSString).lastPathComponent, Self.bytes($0)) })
            try await client.execute(uri: "/upload", method: .post, headers: several.0, body: several.1) { r in
                #expect(r.status == .ok)
                let page = Self.text(r)
                #expect(page.contains("Series decision: URGENT"))
                #expect(page.components(separatedBy: "<article class=\"slice\"").count - 1 == 6)
                #expect(page.contains("class=\"overlay\"") && page.contains("src=\"data:image/jpeg;base64,"))
                #expect(!page.contains(PhantomSeries(seed: 5, positive: true).slices()[0].identity.seriesInstanceUID), "no UIDs shown")
            }
        }
        #expect((try? FileManager.default.contentsOfDirectory(atPath: h.uploads.file("u")))?.isEmpty ?? true, "uploads removed after scoring")
    }

    @Test func identifiersAppearOnlyWithShowIdentifiers() async throws {
        let h = try Self.harness(ConsoleSettings(enabled: true, showIdentifiers: true))
        let file = Self.series.files[12]
        let uid = try #require(DicomIdentity.read(path: file)).seriesInstanceUID
        try await h.server.application().test(.router) { client in
            let (headers, body) = Self.multipart([("a.dcm", Self.bytes(file))])
            try await client.execute(uri: "/api/score", method: .post, headers: headers, body: body) { r in
                let s = try Self.slices(r).first
                #expect((s?["identifiers"] as? [String: String])?["series_uid"] == uid)
            }
            try await client.execute(uri: "/upload", method: .post, headers: headers, body: body) { r in
                #expect(Self.text(r).contains(uid))
            }
        }
    }

    @Test func badUploadsAreRefusedWithAReasonAndNothingLeavesThePrivateFolder() async throws {
        let h = try Self.harness(ConsoleSettings(enabled: true, maxUploadMB: 1))
        let dicom = Self.bytes(Self.series.files[3])
        try await h.server.application().test(.router) { client in
            // Not DICOM or JPEG: 415, naming the file.
            let text = Self.multipart([("notes.txt", Array("hello, not a slice".utf8))])
            try await client.execute(uri: "/api/score", method: .post, headers: text.0, body: text.1) { r in
                #expect(r.status == .unsupportedMediaType)
                let o = try Self.object(r)
                #expect(o["error"] as? String == "notes.txt is neither DICOM nor JPEG (only DICOM or JPEG slices are accepted)")
            }
            // Not multipart at all: 415.
            try await client.execute(uri: "/api/score", method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(string: "{}")) { r in
                #expect(r.status == .unsupportedMediaType)
            }
            // No file: 400.
            let none = Self.multipart([])
            try await client.execute(uri: "/api/score", method: .post, headers: none.0, body: none.1) { r in #expect(r.status == .badRequest) }
            // Over max_upload_mb (1 MB): 413, on the JSON API and the page.
            let big = Self.multipart((0..<(2 << 20) / dicom.count + 1).map { ("\($0).dcm", dicom) })
            #expect(big.1.readableBytes > 1 << 20)
            try await client.execute(uri: "/api/score", method: .post, headers: big.0, body: big.1) { r in #expect(r.status == .contentTooLarge) }
            try await client.execute(uri: "/upload", method: .post, headers: big.0, body: big.1) { r in
                #expect(r.status == .contentTooLarge && Self.text(r).contains("max_upload_mb"))
            }
            // A DICOM preamble and nothing usable after it: scored as refused, with ingest's code.
            let broken = Self.multipart([("broken.dcm", [UInt8](repeating: 0, count: 128) + Array("DICM".utf8) + [UInt8](repeating: 0x41, count: 64))])
            try await client.execute(uri: "/api/score", method: .post, headers: broken.0, body: broken.1) { r in
                #expect(r.status == .ok)
                let s = try Self.slices(r).first
                #expect(s?["outcome"] as? String == "rejected" && (s?["code"] as? String)?.isEmpty == false && (s?["reason"] as? String)?.isEmpty == false)
            }
            // A client name that climbs out of folders is a display name, never a path.
            let escape = Self.multipart([("../../../../tmp/ichd-escape-\(getpid()).dcm", dicom)])
            try await client.execute(uri: "/api/score", method: .post, headers: escape.0, body: escape.1) { r in
                #expect(r.status == .ok)
                let s = try Self.slices(r).first
                #expect(s?["file"] as? String == "ichd-escape-\(getpid()).dcm")
            }
            // Paths with dot segments do not reach anything but the routes.
            try await client.execute(uri: "/../../etc/passwd", method: .get) { r in #expect(r.status == .notFound) }
        }
        #expect(!FileManager.default.fileExists(atPath: "/tmp/ichd-escape-\(getpid()).dcm"))
        #expect((try? FileManager.default.contentsOfDirectory(atPath: h.uploads.file("u")))?.isEmpty ?? true)
    }

    @Test func aJPEGSliceIsScored() async throws {
        let h = try Self.harness()
        // A research-format slice: the three windows of a phantom slice, as the RSNA JPEG datasets store them.
        let reporter = SliceReporter(scorer: Self.scorer)
        let preview = try #require(reporter.report(path: Self.series.files[12], name: "x").first?.preview)
        let jpeg = try JPEGCodec.encode(preview, quality: 95)
        try await h.server.application().test(.router) { client in
            let (headers, body) = Self.multipart([("slice.jpg", jpeg)])
            try await client.execute(uri: "/api/score", method: .post, headers: headers, body: body) { r in
                let s = try Self.slices(r).first
                #expect(s?["outcome"] as? String == "scored", "\(String(describing: s))")
            }
        }
    }

    /// Public real head CT (pydicom-data's CQ500 slices) is unlike the phantoms the model learnt: the console
    /// flags it on the slice and the series, in the JSON and on the page, while the phantom stays unflagged.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: PublicDicomFiles.path("693_UNCR.dcm")), "run scripts/fetch-test-data.sh (make test does)"))
    func realCTIsFlaggedOutOfDistributionPhantomsAreNot() async throws {
        let h = try Self.harness()
        try await h.server.application().test(.router) { client in
            let real = Self.multipart([("693_UNCR.dcm", Self.bytes(PublicDicomFiles.path("693_UNCR.dcm"))),
                                       ("693_UNCI.dcm", Self.bytes(PublicDicomFiles.path("693_UNCI.dcm")))])
            try await client.execute(uri: "/api/score", method: .post, headers: real.0, body: real.1) { r in
                let o = try Self.object(r)
                let slices = try Self.slices(r)
                #expect(slices.allSatisfy { $0["out_of_distribution"] as? Bool == true && ($0["ood"] as? Double ?? 0) >= 1 }, "\(slices)")
                let series = try #require(o["series"] as? [String: Any])
                #expect(series["out_of_distribution"] as? Bool == true)
                let any = try #require((slices.first?["probabilities"] as? [String: Double])?["any"])
                #expect(any < 0.999, "calibrated: no certainty the evidence cannot carry (\(any))")
            }
            try await client.execute(uri: "/upload", method: .post, headers: real.0, body: real.1) { r in
                #expect(Self.text(r).contains("OUT OF DISTRIBUTION"))
            }
            let phantom = Self.multipart([("013.dcm", Self.bytes(Self.series.files[12]))])
            try await client.execute(uri: "/api/score", method: .post, headers: phantom.0, body: phantom.1) { r in
                let slices = try Self.slices(r)
                #expect(slices.first?["out_of_distribution"] as? Bool == false)
            }
        }
    }

    @Test func withATokenEveryRequestNeedsItTheLoginFormSetsAStrictHttpOnlyCookie() async throws {
        let dir = TemporaryDirectory("ichd-console-token")
        let token = "s3cret-token-for-the-console-42"
        try token.write(toFile: dir.file("token"), atomically: true, encoding: .utf8)
        chmod(dir.file("token"), 0o600)
        let h = try Self.harness(ConsoleSettings(enabled: true, bind: "0.0.0.0", tokenFile: dir.file("token")))
        try await h.server.application().test(.router) { client in
            for (uri, method) in [("/", HTTPRequest.Method.get), ("/api/status", .get), ("/metrics", .get), ("/upload", .get),
                                  ("/api/score", .post), ("/api/alerts/A123/ack", .post), ("/console.js", .get)] {
                try await client.execute(uri: uri, method: method) { r in
                    #expect(r.status == .unauthorized, "\(method) \(uri)")
                    #expect(r.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
                }
            }
            try await client.execute(uri: "/", method: .get) { r in #expect(Self.text(r).contains("id=\"login\"")) }
            try await client.execute(uri: "/api/status", method: .get, headers: [.authorization: "Bearer wrong-token-wrong-token"]) { r in
                #expect(r.status == .unauthorized)
            }
            try await client.execute(uri: "/api/status", method: .get, headers: [.authorization: "Bearer \(token)"]) { r in
                #expect(r.status == .ok)
            }
            try await client.execute(uri: "/login", method: .post, headers: [.contentType: "application/x-www-form-urlencoded"],
                                     body: ByteBuffer(string: "token=nope")) { r in #expect(r.status == .unauthorized) }
            let cookie: String = try await client.execute(uri: "/login", method: .post, headers: [.contentType: "application/x-www-form-urlencoded"],
                                                          body: ByteBuffer(string: "token=\(token)")) { r in
                #expect(r.status == .seeOther && r.headers[.location] == "/")
                let set = try #require(r.headers[.setCookie])
                #expect(set.contains("HttpOnly") && set.contains("SameSite=Strict"))
                #expect(!set.contains(token), "the token itself never goes to the browser")
                return String(set.split(separator: ";")[0])
            }
            try await client.execute(uri: "/", method: .get, headers: [.cookie: cookie]) { r in
                #expect(r.status == .ok && Self.text(r).contains("id=\"health\""))
            }
            try await client.execute(uri: "/", method: .get, headers: [.cookie: "ichd_session=0000"]) { r in #expect(r.status == .unauthorized) }
        }
    }

    @Test func settingsThatWouldExposeTheConsoleAreRefused() throws {
        let dir = TemporaryDirectory("ichd-console-settings")
        #expect(throws: ConfigError.self) { try ConsoleSettings(enabled: true, bind: "0.0.0.0").accessToken() }
        try "short".write(toFile: dir.file("short"), atomically: true, encoding: .utf8)
        chmod(dir.file("short"), 0o600)
        #expect(throws: ConfigError.self) { try ConsoleSettings(enabled: true, bind: "0.0.0.0", tokenFile: dir.file("short")).accessToken() }
        try "a-long-enough-token-0123456789".write(toFile: dir.file("open"), atomically: true, encoding: .utf8)
        chmod(dir.file("open"), 0o644)
        #expect(throws: ConfigError.self) { try ConsoleSettings(enabled: true, bind: "0.0.0.0", tokenFile: dir.file("open")).accessToken() }
        chmod(dir.file("open"), 0o600)
        #expect(try ConsoleSettings(enabled: true, bind: "0.0.0.0", tokenFile: dir.file("open")).accessToken() == "a-long-enough-token-0123456789")
        #expect(try ConsoleSettings(enabled: true).accessToken() == nil, "loopback needs no token")
    }

    @Test func aCrossSitePostIsRefusedAndAnUnknownAlertIsNotFound() async throws {
        let h = try Self.harness()
        try await h.server.application().test(.router) { client in
            try await client.execute(uri: "/api/alerts/A0123456789ab/ack", method: .post,
                                     headers: [.origin: "http://evil.example"]) { r in #expect(r.status == .forbidden) }
            try await client.execute(uri: "/api/alerts/A0123456789ab/ack", method: .post) { r in #expect(r.status == .notFound) }
            try await client.execute(uri: "/alerts/A0123456789ab/ack", method: .post) { r in #expect(r.status == .notFound) }
        }
    }

    @Test func metricsCountScoredSkippedAndRejectedSlicesWithTheLatencyHistogram() async throws {
        let h = try Self.harness()
        let files = Self.series.files
        try await h.server.application().test(.router) { client in
            try await client.execute(uri: "/metrics", method: .get) { r in
                #expect(r.status == .ok && Self.text(r).contains("ichd_slices_scored_total{source=\"console\"} 0"))
            }
            // Two brain slices, one blank slice above the vertex (skipped), one refused file.
            let (headers, body) = Self.multipart([("a.dcm", Self.bytes(files[12])), ("b.dcm", Self.bytes(files[13])),
                                                  ("top.dcm", Self.bytes(files.last!)),
                                                  ("bad.dcm", [UInt8](repeating: 0, count: 128) + Array("DICM".utf8))])
            let outcomes: [String] = try await client.execute(uri: "/api/score", method: .post, headers: headers, body: body) { r in
                try Self.slices(r).compactMap { $0["outcome"] as? String }
            }
            let scored = outcomes.filter { $0 == "scored" }.count, skipped = outcomes.filter { $0 == "skipped" }.count
            #expect(scored >= 2 && outcomes.contains("rejected"), "\(outcomes)")
            try await client.execute(uri: "/metrics", method: .get) { r in
                let m = Self.text(r)
                #expect(m.contains("ichd_slices_scored_total{source=\"console\"} \(scored)"), "\(m)")
                #expect(m.contains("ichd_slices_skipped_total{source=\"console\"} \(skipped)"))
                #expect(m.contains("ichd_slices_rejected_total{source=\"console\"} 1"))
                #expect(m.contains("ichd_slice_latency_seconds_count{source=\"console\"} \(scored)"))
                #expect(m.contains("ichd_slice_latency_seconds_bucket{source=\"console\",le=\"+Inf\"} \(scored)"))
                #expect(m.contains("ichd_health_state{state=\"OK\"} 1") && m.contains("ichd_queue_depth 0"))
                #expect(m.contains("ichd_alerts_raised_total 0"))
            }
        }
    }
}
