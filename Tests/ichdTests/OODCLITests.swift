import Foundation
import ICHModel
import ICHTestSupport
import Testing

/// Out-of-distribution awareness the way a user meets it: `ichd infer` and `ichd eval` with the shipped model on
/// its own kind of phantom and on public real head CT, and `ichd convert --ood-fit`.
@Suite struct OODCLITests {
    let dir = TemporaryDirectory()
    static let shipped = PublicDicomFiles.packageRoot.appendingPathComponent("models/ichd-phantom-resnet18.ichm").path
    static let realCTAvailable = FileManager.default.fileExists(atPath: PublicDicomFiles.path("693_UNCR.dcm"))

    func ichd(_ arguments: String...) throws -> ICHDRun { try runICHD(arguments) }

    func inferJSON(_ model: String, _ image: String) throws -> [String: Any] {
        let run = try ichd("infer", "--model", model, "--image", image, "--json")
        #expect(run.status == 0, "\(run.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
    }

    /// The finding: the phantom-trained model gives the public CQ500 head-CT slice (pydicom-data's
    /// 693_*) `any` at full confidence. The appliance must say it is out of distribution.
    @Test(.enabled(if: realCTAvailable, "run scripts/fetch-test-data.sh (make test does)"))
    func realHeadCTIsOutOfDistribution() throws {
        for name in ["693_UNCR.dcm", "693_UNCI.dcm"] {
            let r = try inferJSON(Self.shipped, PublicDicomFiles.path(name))
            let ood = try #require(r["ood"] as? Double, "the shipped model carries an out-of-distribution summary")
            #expect(ood >= 1.5, "\(name): ood \(ood), out of distribution by a clear margin")
            #expect(r["out_of_distribution"] as? Bool == true)
            // The raw any logit is +33 or more; the calibrated probability stays within the bound the validation
            // set supports (ln(n + 1) for its n positive slices): no 1.000.
            let p = try #require((r["probabilities"] as? [Double])?.first)
            #expect(p < 0.999, "\(name): any \(p)")
        }
        let text = try ichd("infer", "--model", Self.shipped, "--image", PublicDicomFiles.path("693_UNCR.dcm"))
        #expect(text.stdout.contains("OUT OF DISTRIBUTION"), "\(text.stdout)")
    }

    /// The shipped model's own kind of phantom (seeds no set of the model card uses) stays in distribution, slice
    /// by slice and as a series in `ichd eval`.
    @Test func ownPhantomsAreInDistribution() throws {
        #expect(try ichd("phantom", "--out", dir.file("ph"), "--series", "2", "--seed", "950000").status == 0)
        let r = try inferJSON(Self.shipped, dir.file("ph/series-001/012.dcm"))
        let ood = try #require(r["ood"] as? Double)
        #expect(ood < 1 && r["out_of_distribution"] as? Bool == false, "ood \(ood)")

        let eval = try ichd("eval", "--model", Self.shipped, "--images", dir.file("ph"), "--labels", dir.file("ph/labels.csv"), "--json")
        #expect(eval.status == 0, "\(eval.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(eval.stdout.utf8)) as? [String: Any])
        let o = try #require(report["ood"] as? [String: Any])
        #expect(o["series"] as? Int == 2 && o["series_out"] as? Int == 0, "\(o)")
        #expect((o["share_out"] as? Double ?? 1) < 0.1 && (o["slices"] as? Int ?? 0) >= 30, "\(o)")
        let text = try ichd("eval", "--model", Self.shipped, "--images", dir.file("ph"), "--labels", dir.file("ph/labels.csv"))
        #expect(text.stdout.contains("out of distribution (ood >= 1):") && text.stdout.contains("0 of 2 series"), "\(text.stdout)")
    }

    /// `--ood-fit` puts a summary into the model (report and metadata say how it was made); without it the
    /// model has none and infer says so.
    @Test func convertFitsTheSummary() throws {
        #expect(try ichd("phantom", "--out", dir.file("fit"), "--series", "2", "--seed", "960000").status == 0)
        #expect(try ichd("phantom", "--out", dir.file("val"), "--series", "1", "--seed", "970000").status == 0)
        let w = dir.file("w.safetensors")
        try Safetensors.write(RandomResNet18.stateDict(layout: .torchvision, numClasses: 6, seed: 31), to: w)
        let common = ["convert", w, "--calibrate", dir.file("val"), "--calibration-samples", "4", "--input-size", "64",
                      "--weight-rounding", "nearest", "--equalize", "off", "--activation-bits", "8"]
        let plain = try runICHD(common + ["--out", dir.file("plain.ichm")])
        #expect(plain.status == 0, "\(plain.stderr)")
        #expect(try ModelFile.load(path: dir.file("plain.ichm")).metadata.ood == nil)
        let none = try inferJSON(dir.file("plain.ichm"), dir.file("val/series-001/012.dcm"))
        #expect(none["ood"] is NSNull && none["out_of_distribution"] is NSNull)

        let run = try runICHD(common + ["--out", dir.file("ood.ichm"), "--ood-fit", dir.file("fit"), "--ood-quantile", "0.99",
                                        "--report", dir.file("report.json")])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("out-of-distribution summary: Mahalanobis"), "\(run.stdout)")
        let summary = try #require(try ModelFile.load(path: dir.file("ood.ichm")).metadata.ood)
        #expect(summary.dimension == 512 && summary.fitSamples >= 30 && summary.validationSource == dir.file("val"))
        #expect(summary.thresholdRule.hasPrefix("99th percentile") && (0...1).contains(summary.shrinkage))
        let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.file("report.json")))) as? [String: Any])
        #expect((report["ood"] as? [String: Any])?["threshold"] as? Double == summary.threshold)
        let r = try inferJSON(dir.file("ood.ichm"), dir.file("val/series-001/012.dcm"))
        #expect(r["ood"] is Double)
        // The same network either way: the summary changes nothing else.
        #expect(r["logits"] as? [Double] == none["logits"] as? [Double])

        // --ood-layers: one summary per layer beside layer4's, read together; the score is the ensemble's.
        let layered = try runICHD(common + ["--out", dir.file("layers.ichm"), "--ood-fit", dir.file("fit"), "--ood-quantile", "0.99",
                                            "--ood-layers", "stem,layer2.1,layer4.1", "--ood-statistic", "mean+sd",
                                            "--report", dir.file("layers.json")])
        #expect(layered.status == 0, "\(layered.stderr)")
        #expect(layered.stdout.contains("out-of-distribution layers (max of normalised mahalanobis)"), "\(layered.stdout)")
        let metadata = try ModelFile.load(path: dir.file("layers.ichm")).metadata
        let ensemble = try #require(metadata.oodLayers)
        #expect(ensemble.components.map(\.layer) == ["stem", "layer2.1", "layer4.1"])
        #expect(ensemble.components.map(\.dimension) == [128, 256, 1024] && ensemble.components.allSatisfy { $0.statistic == "mean+sd" })
        #expect(ensemble.threshold > 0 && ensemble.thresholdRule.hasPrefix("99th percentile of the largest component ratio"))
        #expect(metadata.ood?.dimension == 512, "layer4's summary stays for readers before the ensemble")
        let layeredReport = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.file("layers.json")))) as? [String: Any])
        #expect(((layeredReport["ood_layers"] as? [String: Any])?["components"] as? [Any])?.count == 3)
        let l = try inferJSON(dir.file("layers.ichm"), dir.file("val/series-001/012.dcm"))
        let layeredOOD = try #require(l["ood"] as? Double)
        #expect(layeredOOD != r["ood"] as? Double && l["logits"] as? [Double] == none["logits"] as? [Double])

        // Names the engine does not have, and the flag without a fit set, are refused before any work.
        let badName = try runICHD(common + ["--out", dir.file("x.ichm"), "--ood-fit", dir.file("fit"), "--ood-layers", "layer5.1"])
        #expect(badName.status != 0 && badName.stderr.contains("layer5.1 is not one of stem, maxpool, layer1.0"), "\(badName.stderr)")
        let noFit = try runICHD(common + ["--out", dir.file("x.ichm"), "--ood-layers", "stem"])
        #expect(noFit.status != 0 && noFit.stderr.contains("--ood-layers needs --ood-fit"), "\(noFit.stderr)")
    }
}
