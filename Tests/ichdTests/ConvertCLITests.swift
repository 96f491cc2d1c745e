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
            let loaded = try ModelFile.load(path: model)
            #expect(loaded.metadata.head == layout && loaded.metadata.classNames == ["any", "other"])
            #expect(loaded.metadata.preprocessing.outputSize == 64 && !loaded.metadata.calibration.synthetic)

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

    @Test func inferRejectsWrongTensorSizes() throws {
        let w = try weights(.torchvision, classes: 1, seed: 25)
        try Data(count: 100).write(to: URL(fileURLWithPath: dir.file("t.f32")))
        let r = try ichd("infer", "--model", w, "--tensor", dir.file("t.f32"))
        #expect(r.status == 1 && r.stderr.contains("1x3x256x256"))
    }
}
