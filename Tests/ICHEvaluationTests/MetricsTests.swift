import Foundation
import ICHEvaluation
import Testing

@Suite struct MetricsTests {
    @Test func aucByHand() {
        // Positives 0.9, 0.4; negatives 0.5, 0.1: pairs (0.9>0.5, 0.9>0.1, 0.4<0.5, 0.4>0.1) -> 3/4.
        #expect(Metrics.auc(scores: [0.9, 0.5, 0.4, 0.1], labels: [true, false, true, false]) == 0.75)
        // A tie between a positive and a negative counts half.
        #expect(Metrics.auc(scores: [0.5, 0.5], labels: [true, false]) == 0.5)
        #expect(Metrics.auc(scores: [0.2, 0.9], labels: [false, true]) == 1)
        #expect(Metrics.auc(scores: [0.2, 0.9], labels: [true, true]) == nil)
    }

    @Test func rocCurveByHand() {
        let curve = Metrics.roc(scores: [0.9, 0.5, 0.4, 0.1], labels: [true, false, true, false])
        #expect(curve == [[0, 0], [0, 0.5], [0.5, 0.5], [0.5, 1], [1, 1]])
        let many = Metrics.roc(scores: (0..<1000).map { Double($0) }, labels: (0..<1000).map { $0 % 3 == 0 }, maxPoints: 11)
        #expect(many?.count == 11 && many?.first == [0, 0] && many?.last == [1, 1])
    }

    @Test func weightedLogLossByHand() {
        // One slice, two classes with weights 2 and 1: p = 0.8 (y = 1), 0.3 (y = 0).
        let expected = (2 * -log(0.8) + 1 * -log(0.7)) / 3
        let got = Metrics.weightedLogLoss(probabilities: [[0.8, 0.3]], labels: [[true, false]], weights: [2, 1])
        #expect(abs(got - expected) < 1e-12)
        // Certainty that is wrong is clipped, not infinite.
        #expect(Metrics.weightedLogLoss(probabilities: [[0]], labels: [[true]], weights: [1]).isFinite)
    }

    @Test func ratesAtThreshold() {
        let r = Metrics.rates(scores: [0.9, 0.6, 0.4, 0.2, 0.7], labels: [true, true, true, false, false], threshold: 0.5)
        #expect(r.truePositives == 2 && r.falseNegatives == 1 && r.trueNegatives == 1 && r.falsePositives == 1)
        #expect(r.sensitivity == 2.0 / 3 && r.specificity == 0.5)
    }

    @Test func labelFileCountsProblems() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("labels-\(UUID().uuidString).csv").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try """
            ID,Label
            ID_1.2.3_any,1
            ID_1.2.3_subdural,1
            ID_1.2.3_any,0
            ID_4.5_any,0
            ID_4.5_nonsense,1
            garbage
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let file = try RSNALabelFile(path: path)
        #expect(file.labels["1.2.3"] == ["any": true, "subdural": true])
        #expect(file.labels["4.5"] == ["any": false])
        #expect(file.duplicates == ["ID_1.2.3_any"])
        #expect(file.malformed.count == 2)
    }
}
