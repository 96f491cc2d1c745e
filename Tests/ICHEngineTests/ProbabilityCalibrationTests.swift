import Foundation
import ICHConverter
import ICHEngine
import ICHModel
import ICHPhantom
import Testing

/// Temperature calibration: its fit, its bounds, its place in the model file, and that it changes no decision.
@Suite struct ProbabilityCalibrationTests {
    static func calibration(classes: Int, t: Float, max: Float = 5, min: Float = -7) -> ProbabilityCalibration {
        ProbabilityCalibration(temperatures: [Float](repeating: t, count: classes), logitMax: [Float](repeating: max, count: classes),
                               logitMin: [Float](repeating: min, count: classes), samples: 10, source: "test",
                               eceBefore: [Double](repeating: 0, count: classes), eceAfter: [Double](repeating: 0, count: classes),
                               lossBefore: [Double](repeating: 0, count: classes), lossAfter: [Double](repeating: 0, count: classes))
    }

    @Test func logitsAreScaledAndBounded() {
        let c = Self.calibration(classes: 1, t: 2)
        #expect(c.logit(4, class: 0) == 2)
        #expect(c.logit(33, class: 0) == 5, "the issue's +33: no more than the validation set supports")
        #expect(c.logit(-40, class: 0) == -7)
        // Thresholds move with the probabilities: p >= t before iff p' >= t' after, on both sides of it.
        let t: Float = 0.3, mapped = c.threshold(t, class: 0)
        for z in stride(from: Float(-3), through: 3, by: 0.05) {
            let before = 1 / (1 + exp(-z)) >= t, after = 1 / (1 + exp(-c.logit(z, class: 0))) >= mapped
            #expect(before == after, "logit \(z)")
        }
        #expect(c.thresholdWithinBounds(0.3, class: 0) && !c.thresholdWithinBounds(0.99999, class: 0))
    }

    @Test func expectedCalibrationError() {
        // Two bins used: 0.9 predicted for four slices of which two are positive (|0.9 - 0.5| = 0.4), 0.1 for four
        // negatives (0.1): (4 x 0.4 + 4 x 0.1) / 8 = 0.25.
        let p = [0.9, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1]
        let y = [true, true, false, false, false, false, false, false]
        #expect(abs(ProbabilityCalibration.expectedCalibrationError(probabilities: p, labels: y) - 0.25) < 1e-12)
        #expect(ProbabilityCalibration.expectedCalibrationError(probabilities: [0.5, 0.5], labels: [true, false]) == 0)
    }

    @Test func fitRecoversAKnownTemperature() throws {
        // Labels drawn from sigmoid(z); the model reports 3 z (over-confident): the fit finds T near 3 and lowers
        // the error. The test can fail: a fit that ignored the labels would not land there.
        var g = SeededGenerator(seed: 11)
        var logits: [[Float]] = [], labels: [[Bool]] = []
        for _ in 0..<4000 {
            let z = Float(g.gaussian() * 2)
            logits.append([3 * z])
            labels.append([g.unit() < 1 / (1 + exp(-Double(z)))])
        }
        let c = try TemperatureFit.fit(logits: logits, labels: labels, source: "test")
        #expect(abs(c.temperatures[0] - 3) < 0.3, "T \(c.temperatures[0])")
        #expect(c.eceAfter[0] < c.eceBefore[0] && c.lossAfter[0] < c.lossBefore[0])
        // Under-confident logits (z / 2) would need T = 0.5: the fit keeps T = 1, it never sharpens.
        let soft = try TemperatureFit.fit(logits: logits.map { [$0[0] / 6] }, labels: labels, source: "test")
        #expect(soft.temperatures[0] == 1)
        let positives = labels.filter { $0[0] }.count
        #expect(abs(Double(c.logitMax[0]) - log(Double(positives + 1))) < 1e-4)
        #expect(abs(Double(c.logitMin[0]) + log(Double(4000 - positives + 1))) < 1e-4)
    }

    @Test func modelFileAndScorer() throws {
        var m = try ModelFileTests.model(wide: true)
        m.metadata.preprocessing.outputSize = 64
        let x = Networks.inputs[2]
        let plain = SliceScorer(model: m).score(x)
        m.metadata.probabilityCalibration = Self.calibration(classes: 2, t: 4, max: 1.5, min: -1.5)
        let data = try m.encode()
        let back = try ModelFile.decode(data)
        #expect(back.metadata.probabilityCalibration == m.metadata.probabilityCalibration)
        let scorer = SliceScorer(model: back)
        let calibrated = scorer.score(x)
        // Same network, same logits, same decisions; probabilities through T and the bounds.
        #expect(calibrated.logits == plain.logits && calibrated.positives == plain.positives)
        for c in 0..<2 {
            let expected = 1 / (1 + exp(-Swift.min(1.5, Swift.max(-1.5, plain.logits[c] / 4))))
            #expect(abs(calibrated.probabilities[c] - expected) < 1e-6)
        }
        #expect(scorer.uncalibratedThresholds == [0.5, 0.3] && abs(scorer.thresholds[1] - 1 / (1 + exp(-log(0.3 / 0.7) / 4))) < 1e-6)
        // A file without it loads as before; one whose threshold lies beyond a bound, or with a bad temperature,
        // is refused.
        #expect(try ModelFile.decode(try ModelFileTests.model(wide: true).encode()).metadata.probabilityCalibration == nil)
        var beyond = m
        beyond.metadata.probabilityCalibration = Self.calibration(classes: 2, t: 0.1, max: 1.5, min: -1.5)
        #expect(ModelFileTests.reason(try beyond.encode())?.contains("beyond") == true)
        var bad = m
        bad.metadata.probabilityCalibration?.temperatures[0] = 0
        #expect(ModelFileTests.reason(try bad.encode())?.contains("temperature") == true)
    }
}
