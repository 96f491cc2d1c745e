import Foundation
import ICHModel
import ICHTestSupport
import Testing

/// `ichd convert` and `ichd infer` the way an ML engineer runs them.
@Suite struct ConvertCLITests {
    let dir = TemporaryDirectory()

    func ichd(_ arguments: String...) throws -> ICHDRun { try runICHD(arguments) }

    func weights(_ layout: WeightLayout, classes: Int, seed: UInt64, edit: (inout [String: NamedTensor]) -> Void = { _ in }) throws -> String {
        var dict = RandomResNet18.stateDict(layout: layout, numClasses: classes, seed: seed)
        edit(&dict)
        let path = dir.file("\(layout.rawValue)-\(classes)-\(seed).safetensors")
        try Safetensors.write(dict, to: path)
        return path
    }

    @Test func convertsAndInfersBothLayouts() throws {
        #expect(try ichd("phantom", "--out", dir.file("cal"), "--series", "2", "--seed", "300").status == 0)
        for layout in WeightLayout.allCases {
            let w = try weights(layout, classes: 2, seed: 21)
            let model = dir.file("\(layout.rawValue).ichm"), report = dir.file("\(layout.rawValue).json")
            let run = try ichd("convert", w, "--out", model, "--calibrate", dir.file("cal"), "--calibration-samples", "6",
                               "--input-size", "64", "--classes", "any,other", "--report", report)
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stdout.contains("per-layer SQNR") && run.stdout.contains("held-out"))
            let r = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report))) as? [String: Any])
            #expect((r["layers"] as? [Any])?.count ?? 0 >= 20)
            // The per-tensor refinement ran and is recorded (possibly empty: nothing beat the global method) when
            // the model kept bytes; 12-bit activations take min-max ranges throughout.
            let bits = (r["calibration"] as? [String: Any])?["activation_bits"] as? Int
            #expect(bits == 8 || bits == 12)
            #expect(((r["calibration"] as? [String: Any])?["per_tensor_methods"] is [String: String]) == (bits == 8))
            #expect(run.stdout.contains("per-tensor refinement") == (bits == 8))
            #expect(run.stdout.contains("ranges for 12-bit activations") == (bits == 12))
            // A class that misses the accuracy aim on the held-out slices is warned about, and only such a class.
            let heldOut = try #require(r["held_out_set"] as? [String: Any])
            for c in try #require(heldOut["classes"] as? [[String: Any]]) {
                let missed = (c["max_abs_probability_difference"] as? Double ?? 1) > 0.02 || (c["decision_agreement"] as? Double ?? 0) < 1
                #expect(run.stdout.contains("WARNING: \(c["name"] as? String ?? "?"): int8 differs") == missed)
            }
            if layout == .torchvision {
                // With no tolerance every class is warned about, in the summary and the JSON report; the model is
                // still written.
                let strictModel = dir.file("strict.ichm"), strictReport = dir.file("strict.json")
                let strict = try ichd("convert", w, "--out", strictModel, "--calibrate", dir.file("cal"), "--calibration-samples", "6",
                                      "--weight-rounding", "nearest", "--equalize", "off",
                                      "--input-size", "64", "--classes", "any,other", "--tolerance", "0", "--report", strictReport)
                #expect(strict.status == 0, "\(strict.stderr)")
                #expect(strict.stdout.contains("WARNING: any: int8 differs from float by up to")
                        && strict.stdout.contains("WARNING: other: int8 differs from float by up to"))
                let sr = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: strictReport))) as? [String: Any])
                #expect((sr["warnings"] as? [String])?.filter { $0.contains("int8 differs from float") }.count == 2)
                #expect(FileManager.default.fileExists(atPath: strictModel))
                // Bytes miss a zero tolerance, so 12-bit activations were built too and the closer of the two kept
                // (a format version 3 file when 12 bits won); it loads and scores.
                let sm = try ModelFile.load(path: strictModel)
                let bitErrors = try #require(sm.metadata.calibration.activationBitErrors)
                #expect(bitErrors.keys.sorted() == ["12", "8"])
                #expect(sm.network.activationBits == (bitErrors["12"]! < bitErrors["8"]! ? 12 : 8))
                #expect(sm.metadata.calibration.activationBits == sm.network.activationBits)
                #expect(strict.stdout.contains("activations: \(sm.network.activationBits) bits"))
                let fine = try ichd("infer", "--model", strictModel, "--image", dir.file("cal/series-001/012.dcm"), "--json")
                #expect(fine.status == 0, "\(fine.stderr)")
            }
            let loaded = try ModelFile.load(path: model)
            #expect(loaded.metadata.head == layout && loaded.metadata.classNames == ["any", "other"])
            #expect(loaded.metadata.preprocessing.outputSize == 64 && !loaded.metadata.calibration.synthetic)
            // By default all four weight candidates (nearest or GPTQ, equalised or not) are measured, and the file
            // says which one was kept and what each measured.
            let calibration = loaded.metadata.calibration
            #expect(calibration.weightCandidateErrors?.keys.sorted() == ["gptq", "gptq, equalised", "nearest", "nearest, equalised"])
            #expect(["nearest", "gptq"].contains(calibration.weightRounding ?? "") && calibration.channelEqualization != nil)
            let chosenError = calibration.weightCandidateErrors?["\(calibration.weightRounding ?? "")\(calibration.channelEqualization == true ? ", equalised" : "")"]
            #expect(chosenError == calibration.weightCandidateErrors?.values.min())
            #expect(run.stdout.contains("weights: \(calibration.weightRounding ?? "?")"))
            // 12-bit activations are built only when bytes miss the aim (0.02) on the held-out slices.
            let bitErrors = try #require(calibration.activationBitErrors)
            #expect((bitErrors["12"] == nil) == (bitErrors["8"]! <= 0.02))

            // int8 and float on one real slice through each model's preprocessing; CAM files written.
            let slice = dir.file("cal/series-001/012.dcm")
            let q = try ichd("infer", "--model", model, "--image", slice, "--json", "--cam", dir.file("cam.jpg"))
            #expect(q.status == 0, "\(q.stderr)")
            let qj = try #require(try JSONSerialization.jsonObject(with: Data(q.stdout.utf8)) as? [String: Any])
            #expect(qj["engine"] as? String == "int8")
            let probabilities = try #require(qj["probabilities"] as? [Double])
            #expect(probabilities.count == 2 && probabilities.allSatisfy { (0...1).contains($0) })
            for file in try #require(qj["cam_files"] as? [String]) { #expect(FileManager.default.fileExists(atPath: file)) }
            #expect((qj["cam_files"] as? [String])?.isEmpty == false)
        }
    }

    @Test func refusesWithoutCalibrationAndWritesNothing() throws {
        let w = try weights(.torchvision, classes: 1, seed: 22)
        let out = dir.file("m.ichm")
        #expect(try ichd("convert", w, "--out", out).status == 2)
        try FileManager.default.createDirectory(atPath: dir.file("empty"), withIntermediateDirectories: true)
        let empty = try ichd("convert", w, "--out", out, "--calibrate", dir.file("empty"))
        #expect(empty.status == 1 && empty.stderr.contains("holds no slices"))
        try FileManager.default.createDirectory(atPath: dir.file("mixed"), withIntermediateDirectories: true)
        #expect(try ichd("phantom", "--out", dir.file("mixed"), "--series", "1", "--seed", "301").status == 0)
        try Data("not an image".utf8).write(to: URL(fileURLWithPath: dir.file("mixed/series-001/notes.bin")))
        let mixed = try ichd("convert", w, "--out", out, "--calibrate", dir.file("mixed"), "--input-size", "64")
        #expect(mixed.status == 1 && mixed.stderr.contains("notes.bin") && mixed.stderr.contains("not a DICOM file"))
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test func badWeightsAreNamed() throws {
        let out = dir.file("m.ichm")
        let nan = try weights(.fastai, classes: 2, seed: 23) { dict in
            var t = dict["1.4.weight"]!
            t.values[7] = .infinity
            dict["1.4.weight"] = t
        }
        let r1 = try ichd("convert", nan, "--out", out, "--allow-synthetic-calibration")
        #expect(r1.status == 1 && r1.stderr.contains("1.4.weight holds NaN or infinite"))
        let shapes = try weights(.torchvision, classes: 2, seed: 24) { dict in
            dict["layer2.0.conv1.weight"] = NamedTensor(shape: [128, 64, 1, 1], values: .init(repeating: 0, count: 8192))
            dict["bn1.running_mean"] = nil
        }
        let r2 = try ichd("convert", shapes, "--out", out, "--allow-synthetic-calibration")
        #expect(r2.status == 1 && r2.stderr.contains("layer2.0.conv1.weight: expected [128, 64, 3, 3]") && r2.stderr.contains("bn1.running_mean"))
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: dir.file("junk.safetensors")))
        #expect(try ichd("convert", dir.file("junk.safetensors"), "--out", out, "--allow-synthetic-calibration").status == 1)
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test func evalCountsEverySliceAndLabel() throws {
        #expect(try ichd("phantom", "--out", dir.file("eval"), "--series", "2", "--seed", "310", "--positive-rate", "0.5").status == 0)
        let w = try weights(.torchvision, classes: 6, seed: 26)
        let model = dir.file("eval.ichm")
        #expect(try ichd("convert", w, "--out", model, "--calibrate", dir.file("eval"), "--calibration-samples", "4", "--input-size", "64",
                         "--weight-rounding", "nearest", "--equalize", "off").status == 0)
        // Damage the labels the ways people do: a duplicate row, a row for a slice that does not exist, a slice
        // without labels; and drop a non-image among the slices.
        var rows = try String(contentsOfFile: dir.file("eval/labels.csv"), encoding: .utf8).split(separator: "\n").map(String.init)
        let removedUID = rows[1].split(separator: "_")[1]
        rows.removeAll { $0.contains("_\(removedUID)_") }
        rows.append(rows[1])
        rows.append("ID_9.9.9_any,1")
        try (rows.joined(separator: "\n") + "\n").write(toFile: dir.file("labels.csv"), atomically: true, encoding: .utf8)
        try Data("not an image".utf8).write(to: URL(fileURLWithPath: dir.file("eval/series-001/stray.bin")))
        let run = try ichd("eval", "--model", model, "--images", dir.file("eval"), "--labels", dir.file("labels.csv"), "--reference", w, "--json",
                           "--plot", dir.file("roc.png"))
        #expect(run.status == 0, "\(run.stderr)")
        let png = try [UInt8](Data(contentsOf: URL(fileURLWithPath: dir.file("roc.png"))))
        #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + [0, 0, 0, 13] + Array("IHDR".utf8)))
        let r = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        let slices = try FileManager.default.subpathsOfDirectory(atPath: dir.file("eval")).filter { $0.hasSuffix(".dcm") }.count
        let scored = r["slices_scored"] as? Int ?? -1, skipped = r["slices_skipped"] as? Int ?? -1
        #expect(scored + skipped == slices)
        #expect((r["rejected"] as? [String: Int])?["not_dicom"] == 1)
        #expect(r["slices_unlabelled"] as? Int == 1)
        #expect(r["labels_without_slice"] as? Int == 1)
        #expect(r["duplicate_label_rows"] as? Int == 1)
        #expect(r["series_count"] as? Int == 2)
        #expect((r["weighted_log_loss"] as? Double ?? .nan).isFinite)
        #expect((r["classes"] as? [Any])?.count == 6)
        let reference = try #require(r["reference"] as? [[String: Any]])
        #expect(reference.count == 6)
        for c in reference {
            // The spread of int8-float differences: mean <= 99th percentile <= largest, shares within [0, 1].
            let mean = c["mean_abs_probability_difference"] as? Double ?? -1, p99 = c["p99_abs_probability_difference"] as? Double ?? -1
            let largest = c["max_abs_probability_difference"] as? Double ?? -1, within = c["share_within_0_02"] as? Double ?? -1
            #expect(0 <= mean && mean <= largest && 0 <= p99 && p99 <= largest && mean > 0, "\(c)")
            #expect((0...1).contains(within) && (within == 1) == (largest <= 0.02), "\(c)")
            #expect((0...1).contains(c["decision_agreement"] as? Double ?? -1))
        }
    }

    /// The commissioning self-test fails loudly when the chain would miss the known-positive series or alarm on
    /// the known-negative one (thresholds forced to "always" and "never" here); the shipped model passes.
    @Test func selftestFailsWhenTheAlarmIsWrongAndPassesWithTheShippedModel() throws {
        #expect(try ichd("phantom", "--out", dir.file("cal"), "--series", "1", "--seed", "320").status == 0)
        let w = try weights(.torchvision, classes: 6, seed: 27)
        for (thresholds, failing) in [("0,0,0,0,0,0", "FAIL known-negative"), ("1,1,1,1,1,1", "FAIL known-positive")] {
            let model = dir.file("t\(thresholds.prefix(1)).ichm")
            #expect(try ichd("convert", w, "--out", model, "--calibrate", dir.file("cal"), "--calibration-samples", "4",
                             "--input-size", "64", "--thresholds", thresholds, "--weight-rounding", "nearest", "--equalize", "off").status == 0)
            let run = try ichd("selftest", "--model", model, "--work", dir.file("selftest"))
            #expect(run.status == 1)
            #expect(run.stdout.contains(failing) && run.stdout.contains("selftest FAILED"), "\(run.stdout)")
        }
        let slices = try FileManager.default.contentsOfDirectory(atPath: dir.file("selftest/known-positive")).filter { $0.hasSuffix(".dcm") }
        #expect(slices.count >= 20, "the series stays on disk for inspection")

        let shipped = PublicDicomFiles.packageRoot.appendingPathComponent("models/ichd-phantom-resnet18.ichm").path
        let run = try ichd("selftest", "--model", shipped, "--work", dir.file("selftest-shipped"))
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
        #expect(run.stdout.contains("PASS known-positive: ALERT") && run.stdout.contains("PASS known-negative: no alert"))
    }

    @Test func inferRejectsWrongTensorSizes() throws {
        let w = try weights(.torchvision, classes: 1, seed: 25)
        try Data(count: 100).write(to: URL(fileURLWithPath: dir.file("t.f32")))
        let r = try ichd("infer", "--model", w, "--tensor", dir.file("t.f32"))
        #expect(r.status == 1 && r.stderr.contains("1x3x256x256"))
    }
}
