import Foundation
import ICHConverter
import ICHDecision
import ICHEngine
import ICHModel
import ICHPhantom
import Testing

/// The out-of-distribution summary: its statistics, its place in the model file, the scorer's per-slice score.
@Suite struct OODTests {
    /// A summary of dimension `d` with identity precision around `mean`, threshold `t`.
    static func identitySummary(mean: [Float], threshold: Double = 1) -> OODSummary {
        let d = mean.count
        var p = [Float](repeating: 0, count: d * d)
        for i in 0..<d { p[i * d + i] = 1 }
        return OODSummary(features: "test", mean: mean, precision: p, shrinkage: 0, threshold: threshold, thresholdRule: "test",
                          fitSamples: 2, fitSource: "test", validationSamples: 1, validationSource: "test", validationDistances: ["max": 1])
    }

    @Test func distanceIsMahalanobis() {
        // Identity precision: the Euclidean distance; a diagonal precision weighs each axis by its inverse variance.
        let s = Self.identitySummary(mean: [Float](repeating: 1, count: 13), threshold: 2)
        var x = [Float](repeating: 1, count: 13)
        x[0] = 4; x[12] = 5  // 3 and 4 away: distance 5, a remainder lane past the 8-wide loop included
        #expect(abs(s.distance(x) - 5) < 1e-5)
        #expect(abs(s.score(x) - 2.5) < 1e-5)
        var diagonal = s
        diagonal.precision[0] = 1.0 / 9  // variance 9 on axis 0: 3 away is one standard deviation
        #expect(abs(diagonal.distance(x) - (1 + 16.0).squareRoot()) < 1e-5)
    }

    @Test func ledoitWolfAndInverse() throws {
        // Four 3-d samples; the shrinkage lies in [0, 1], the covariance keeps the sample covariance's trace, and
        // the inverse times the matrix is the identity.
        let x: [[Double]] = [[1, 2, 0], [2, 1, 1], [0, 0, 3], [3, 3, 0.5]]
        let (mean, cov, shrinkage) = OODFit.ledoitWolf(x, dimension: 3)
        #expect(abs(mean[0] - 1.5) < 1e-12 && abs(mean[2] - 1.125) < 1e-12)
        #expect((0...1).contains(shrinkage))
        var sampleTrace = 0.0
        for row in x {
            for j in 0..<3 {
                let c: Double = row[j] - mean[j]
                sampleTrace += c * c / 4
            }
        }
        #expect(abs((cov[0] + cov[4] + cov[8]) - sampleTrace) < 1e-9)
        let inv = try #require(OODFit.inverseSPD(cov, dimension: 3))
        for i in 0..<3 {
            for j in 0..<3 {
                var v = 0.0
                for k in 0..<3 { v += cov[i * 3 + k] * inv[k * 3 + j] }
                #expect(abs(v - (i == j ? 1 : 0)) < 1e-9)
            }
        }
        // Not positive definite: refused.
        #expect(OODFit.inverseSPD([1, 2, 2, 1], dimension: 2) == nil)
    }

    @Test func summaryThresholdComesFromValidation() throws {
        // Fit on points around 0, validate on others: the threshold is the chosen quantile of the validation
        // distances, and a point far away scores far above 1.
        var g = SeededGenerator(seed: 5)
        let fit = (0..<200).map { _ in (0..<4).map { _ in Float.random(in: -1...1, using: &g) } }
        let validation = (0..<100).map { _ in (0..<4).map { _ in Float.random(in: -1...1, using: &g) } }
        let s = try OODFit.summary(fit: fit, validation: validation, quantile: 1, fitSource: "fit", validationSource: "val")
        let maxValidation = validation.map(s.distance).max()!
        #expect(abs(s.threshold - maxValidation) < 1e-9)
        #expect(validation.allSatisfy { s.score($0) <= 1 + 1e-9 })
        #expect(s.score([40, -40, 40, -40]) > 10)
        #expect(s.validationDistances["max"] == maxValidation && s.fitSamples == 200 && s.validationSamples == 100)
    }

    @Test func modelFileCarriesTheSummaryAndOlderFilesLoadWithout() throws {
        let plain = try ModelFileTests.model(wide: true)
        let plainData = try plain.encode()
        // Without a summary the metadata has no `ood` key: the file is what this format always was.
        #expect(!String(decoding: plainData, as: UTF8.self).contains("\"ood\""))
        #expect(try ModelFile.decode(plainData).metadata.ood == nil)

        var m = plain
        var mean = [Float](repeating: 0, count: 512)
        mean[3] = 0.25
        m.metadata.ood = Self.identitySummary(mean: mean, threshold: 7.5)
        let data = try m.encode()
        let back = try ModelFile.decode(data)
        #expect(back.metadata.ood == m.metadata.ood)
        // The version is that of the network (2 here): readers before the key ignore it and run the model.
        let version: UInt32 = data.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self) }
        #expect(version == 2)
        let plainNames = try ModelFile.decode(plainData).metadata.tensors.map(\.name)
        #expect(back.metadata.tensors.map(\.name) == plainNames)

        // A summary of the wrong size or with a bad threshold is refused at load.
        var wrong = plain
        wrong.metadata.ood = Self.identitySummary(mean: [0, 0, 0])
        #expect(ModelFileTests.reason(try wrong.encode())?.contains("512") == true)
        var bad = m
        bad.metadata.ood?.threshold = 0
        #expect(ModelFileTests.reason(try bad.encode())?.contains("threshold") == true)
    }

    @Test func scorerReportsOOD() throws {
        var plain = try ModelFileTests.model(wide: true)
        plain.metadata.preprocessing.outputSize = 64  // the test inputs' side
        let x = Networks.inputs[0]
        // No summary: no score.
        let none = SliceScorer(model: plain)
        #expect(none.score(x).ood == nil)
        // A summary centred on this very slice's features: 0; another slice's features lie some way off.
        guard case .int8(let engine) = SliceScorer(model: plain).engine else {
            Issue.record("int8 engine expected")
            return
        }
        let features = SliceScorer.pooledFeatures(engine.run(x).features)
        #expect(features.count == 512)
        var m = plain
        m.metadata.ood = Self.identitySummary(mean: features, threshold: 1e-3)
        let scorer = SliceScorer(model: m)
        let same = scorer.score(x)
        #expect(try #require(same.ood) < 1e-3 && !same.isOutOfDistribution)
        let other = scorer.score(Networks.inputs[5])
        #expect(try #require(other.ood) >= 1 && other.isOutOfDistribution)
        // The probabilities do not change with the summary.
        #expect(same.probabilities == none.score(x).probabilities)
    }

    /// The int8 engine's channel statistics (integer sums of the codes) are those of the dequantised maps it
    /// hands an observer, for a byte view (the stem), the int16 view of block outputs and layer4.
    @Test func engineChannelStatisticsMatchTheDequantisedMaps() throws {
        var plain = try ModelFileTests.model(wide: true)
        plain.metadata.preprocessing.outputSize = 64
        guard case .int8(let engine) = SliceScorer(model: plain).engine else {
            Issue.record("int8 engine expected")
            return
        }
        let names: Set<String> = ["stem", "maxpool", "layer1.1", "layer3.0", "layer4.1"]
        var observed: [String: FeatureMap] = [:]
        let out = engine.run(Networks.inputs[2], observe: { name, map in if names.contains(name) { observed[name] = map } },
                             statistics: names)
        #expect(Set(out.channelStatistics.keys) == names)
        for name in names {
            let mine = try #require(out.channelStatistics[name]), map = try #require(observed[name])
            // Block outputs: the observer sees the byte view, the statistics read the int16 one (finer, and not
            // clipped where the bytes are), so those are compared with what the pool reads instead.
            let reference = name.hasPrefix("layer") ? nil : map.channelStatistics
            #expect(mine.means.count == map.channels && mine.deviations.count == map.channels)
            if let reference {
                for c in 0..<map.channels {
                    #expect(abs(mine.means[c] - reference.means[c]) <= 1e-4 * max(1, abs(reference.means[c])), "\(name) \(c)")
                    #expect(abs(mine.deviations[c] - reference.deviations[c]) <= 1e-3 * max(1, reference.deviations[c]), "\(name) \(c)")
                }
            } else {
                // (The int16 view's values are checked through layer4 against the pool below.)
                #expect((mine.means + mine.deviations).allSatisfy { $0.isFinite } && mine.deviations.allSatisfy { $0 >= 0 })
            }
        }
        // layer4's means are the pooled features the layer4 summary reads.
        let pooled = SliceScorer.pooledFeatures(out.features), means = out.channelStatistics["layer4.1"]!.means
        #expect(zip(pooled, means).allSatisfy { abs($0 - $1) <= 1e-4 * max(1, abs($0)) })
        // Asked for nothing, it computes nothing.
        #expect(engine.run(Networks.inputs[2]).channelStatistics.isEmpty)
    }

    /// The ensemble: each component normalised by its own validation threshold, the combined threshold from the
    /// validation slices' largest ratios; a slice far off in one layer only is out, whatever the others say.
    @Test func ensembleReadsTheLargestNormalisedDistance() throws {
        var g = SeededGenerator(seed: 9)
        func sample(_ shift: Float = 0, layer: String? = nil) -> OODFit.Sample {
            var stats: [String: ChannelStatistics] = [:]
            for name in ["stem", "layer4.1"] {
                let d = name == "stem" ? 3 : 5
                let means = (0..<d).map { _ in Float.random(in: -1...1, using: &g) + (name == layer ? shift : 0) }
                stats[name] = ChannelStatistics(means: means, deviations: (0..<d).map { _ in Float.random(in: 0.5...1.5, using: &g) })
            }
            return OODFit.Sample(features: [], statistics: stats, logits: [], key: "")
        }
        let fit = (0..<300).map { _ in sample() }, validation = (0..<200).map { _ in sample() }
        let e = try OODFit.ensemble(fit: fit, validation: validation, components: [("stem", "mean+sd"), ("layer4.1", "mean")],
                                    quantile: 0.99, fitSource: "fit", validationSource: "val")
        #expect(e.components.map(\.dimension) == [6, 5] && e.layers == ["stem", "layer4.1"])
        func score(_ s: OODFit.Sample) -> Double { e.score { s.statistics[$0.layer]!.vector($0.statistic) } }
        let out = validation.filter { score($0) >= 1 }.count
        #expect(out >= 1 && out <= 3, "1% of 200 validation slices at the 99th percentile, got \(out)")
        #expect(score(sample(30, layer: "stem")) > 5 && score(sample(30, layer: "layer4.1")) > 5)
        #expect(e.problem == nil && (e.validationScores["share_over.stem.mean+sd"] ?? 1) <= 0.02)
        // An unknown layer is an error naming it.
        #expect(throws: ConversionError.self) {
            try OODFit.ensemble(fit: fit, validation: validation, components: [("layer2.1", "mean")], quantile: 0.99,
                                fitSource: "fit", validationSource: "val")
        }
    }

    /// A model with an ensemble stores it under `ood_layers` beside `ood`, which is stored exactly as before (no
    /// layer or statistic keys for layer4's means); the scorer's `ood` is then the ensemble's.
    @Test func modelFileCarriesTheEnsemble() throws {
        var m = try ModelFileTests.model(wide: true)
        m.metadata.preprocessing.outputSize = 64
        let layer4 = Self.identitySummary(mean: [Float](repeating: 0, count: 512), threshold: 7.5)
        m.metadata.ood = layer4
        let before = String(decoding: try m.encode(), as: UTF8.self)
        #expect(!before.contains("\"statistic\"") && !before.contains("\"layer\"") && !before.contains("ood_layers"))
        var stem = Self.identitySummary(mean: [Float](repeating: 0, count: 128), threshold: 2)
        stem.layer = "stem"
        stem.statistic = "mean+sd"
        m.metadata.oodLayers = OODEnsemble(components: [stem, layer4], threshold: 1.5, thresholdRule: "test", validationScores: [:])
        let back = try ModelFile.decode(try m.encode())
        #expect(back.metadata.oodLayers == m.metadata.oodLayers && back.metadata.ood == layer4)

        let x = Networks.inputs[1]
        let scorer = SliceScorer(model: back)
        guard case .int8(let engine) = scorer.engine else { return }
        let stats = engine.run(x, statistics: ["stem", "layer4.1"]).channelStatistics
        let expected = max(stem.score(stats["stem"]!.vector("mean+sd")), layer4.score(stats["layer4.1"]!.means)) / 1.5
        let got = try #require(scorer.score(x).ood)
        #expect(abs(Double(got) - expected) <= 1e-4 * expected)

        // A component whose size does not fit its layer, or a layer ResNet18 lacks, is refused at load.
        var wrong = m
        wrong.metadata.oodLayers?.components[0].statistic = "mean"
        #expect(ModelFileTests.reason(try wrong.encode())?.contains("stem mean has 128 features; 64 channels give 64") == true)
        var unknown = m
        unknown.metadata.oodLayers?.components[0].layer = "layer9.0"
        #expect(ModelFileTests.reason(try unknown.encode())?.contains("no activation layer9.0") == true)
    }

    @Test func seriesOODIsTheUpperMedian() {
        func score(_ ood: Float?) -> SliceScore {
            SliceScore(classNames: ["any"], logits: [0], probabilities: [0.5], thresholds: [0.6], heatmaps: [], ood: ood)
        }
        var f = SeriesFinding(classNames: ["any"], thresholds: [0.6])
        #expect(f.ood == nil && !f.isOutOfDistribution)
        f.add(score(nil), slice: 0)  // a slice without a score (scored before a restart) does not count
        #expect(f.ood == nil)
        f.add(score(0.2), slice: 1)
        f.add(score(3), slice: 2)
        // Two slices, one out: half of them, so the series is out.
        let two = f.ood
        #expect(two == 3 && f.isOutOfDistribution)
        f.add(score(0.4), slice: 3)
        // Three slices, one out (the vertex, say): the series stays in.
        let three = f.ood
        #expect(three == 0.4 && !f.isOutOfDistribution)
    }
}
