import Foundation
import ICHIngest
import ICHPhantom
import ICHTestSupport
import Testing

/// Runs the built `ichd` the way a user does and checks output, files and exit codes.
@Suite struct CLITests {
    func ichd(_ arguments: String...) throws -> ICHDRun { try runICHD(arguments) }

    let dir = TemporaryDirectory()

    static let stableKeys: Set<String> = [
        "file", "sop_instance_uid", "series_instance_uid", "study_instance_uid", "modality", "rows", "columns",
        "transfer_syntax", "hu_min", "hu_max", "hu_mean", "brain_coverage", "verdict", "reason",
    ]

    @Test func inspectJSONCoversScoreSkipAndReject() throws {
        let good = try Fixtures.writeSlice(Fixtures.head(size: 64, bleed: true), to: dir.file("good.dcm"))
        let wrapped = try Fixtures.writeSlice(Fixtures.head(size: 64), to: dir.file("wrapped.dcm"), storage: .rsnaWrappedUnsigned12,
                                              identity: Fixtures.identity(2))
        let blank = try Fixtures.writeSlice(HounsfieldImage(width: 32, height: 32, pixels: .init(repeating: -1000, count: 1024)),
                                            to: dir.file("blank.dcm"), identity: Fixtures.identity(3))
        try "not an image".write(toFile: dir.file("notes.txt"), atomically: true, encoding: .utf8)

        let run = try ichd("inspect", "--json", good, wrapped, blank, dir.file("notes.txt"))
        #expect(run.status == 1, "a rejected file makes the exit status 1")
        #expect(run.stderr.contains("notes.txt") && run.stderr.contains("not a DICOM file"))
        let objects = try run.stdout.split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        #expect(objects.count == 4)
        for object in objects { #expect(Self.stableKeys.isSubset(of: Set(object.keys))) }
        #expect(objects.map { $0["verdict"] as? String } == ["score", "score", "skip", "reject"])

        // HU statistics are those of the slice after slope/intercept and the wrap fix.
        let expected = try DicomSliceReader(path: good).readFrame(0).image.statistics
        #expect(objects[0]["hu_min"] as? Double == Double(expected.min))
        #expect(objects[0]["hu_max"] as? Double == Double(expected.max))
        #expect(abs((objects[0]["hu_mean"] as? Double ?? 0) - expected.mean) < 1e-9)
        #expect(objects[1]["wrap_fix_applied"] as? Bool == true)
        #expect(objects[1]["hu_min"] as? Double == -1000)
        #expect(objects[2]["brain_coverage"] as? Double == 0)
        #expect((objects[2]["reason"] as? String)?.contains("brain coverage") == true)
        #expect(objects[3]["reason_code"] as? String == "not_dicom")
        #expect(objects[3]["sop_instance_uid"] is NSNull)

        // The accession number and patient fields never appear.
        for secret in ["PHANTOM0001", "PHANTOM-0001", "Phantom^Synthetic"] {
            #expect(!run.stdout.contains(secret) && !run.stderr.contains(secret))
        }
        let text = try ichd("inspect", good)
        #expect(text.status == 0)
        #expect(text.stdout.contains("score") && !text.stdout.contains("PHANTOM0001"))
    }

    @Test func usageErrorsExitWithTwo() throws {
        #expect(try ichd("inspect").status == 2)
        #expect(try ichd("inspect", "--no-such-flag", "x").status == 2)
        #expect(try ichd("preprocess", "x.dcm").status == 2)
        #expect(try ichd("frobnicate").status == 2)
        #expect(try ichd("--help").status == 0)
    }

    @Test func preprocessWritesTheExactTensorAndAPreview() throws {
        let image = Fixtures.head(size: 128, bleed: true)
        let path = try Fixtures.writeSlice(image, to: dir.file("slice.dcm"), storage: CTStorage(transferSyntax: TransferSyntax.rleLossless))
        let run = try ichd("preprocess", path, "--out", dir.file("preview.jpg"), "--tensor", dir.file("input.f32"))
        #expect(run.status == 0, "\(run.stderr)")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: dir.file("input.f32")))
        #expect(bytes.count == 3 * 256 * 256 * 4)
        let floats = bytes.withUnsafeBytes { raw in (0..<(bytes.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) } }
        let reference = try Self.referenceTensor(image: image)
        #expect(floats == reference, "the file must hold exactly the in-process preprocessing result")
        let preview = try JPEGCodec.decode([UInt8](Data(contentsOf: URL(fileURLWithPath: dir.file("preview.jpg")))))
        #expect(preview.width == 256 && preview.height == 256 && preview.channels == 3)
    }

    static func referenceTensor(image: HounsfieldImage) throws -> [Float] {
        // Same path as the CLI, in process.
        let pipelineImage = image
        return ICHPreprocessingBridge.tensor(pipelineImage)
    }

    @Test func preprocessOfARejectedFileWritesNothing() throws {
        try "plain text".write(toFile: dir.file("bad.dcm"), atomically: true, encoding: .utf8)
        let run = try ichd("preprocess", dir.file("bad.dcm"), "--tensor", dir.file("out.f32"))
        #expect(run.status == 1)
        #expect(run.stderr.contains("not a DICOM file"))
        #expect(!FileManager.default.fileExists(atPath: dir.file("out.f32")))
    }

    @Test func benchReportsJSON() throws {
        let run = try ichd("bench", "--stage", "preprocess", "--runs", "2", "--warmup", "0", "--json")
        #expect(run.status == 0, "\(run.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        #expect((object["median_ms"] as? Double ?? 0) > 0)
        #expect(object["threads"] as? Int == 1)
    }
}
